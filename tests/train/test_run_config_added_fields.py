"""A config field added after a run was saved: at its behaviour-preserving value it is no
change (old workdirs stay readable and resumable); at any other value it is a ConfigDrift."""
import pytest

from configs import base
from configs import recipe as recipe_config
from mpformer_jax.train import run_config


def _saved_without(field: str) -> dict:
  saved = run_config.plain(base.get_config("tiny"))
  *sections, key = field.split(".")
  parent = saved
  for section in sections:
    parent = parent[section]
  del parent[key]
  return saved


@pytest.mark.parametrize("field", sorted(run_config.ADDED_FIELDS))
def test_added_field_at_its_old_behaviour_is_no_change(field):
  config = base.get_config("tiny")
  *sections, key = field.split(".")
  parent = config
  for section in sections:
    parent = parent[section]
  parent[key] = run_config.ADDED_FIELDS[field]
  assert run_config.diff(_saved_without(field), config) == []


def test_added_field_at_another_value_is_drift():
  config = base.get_config("tiny")
  config.model.param_dtype = "bfloat16"
  record = dict(config=_saved_without("model.param_dtype"))
  assert run_config.diff(record["config"], config) == [
      ("model.param_dtype", "<absent>", "bfloat16")]
  with pytest.raises(run_config.ConfigDrift, match="model.param_dtype: '<absent>'"):
    run_config.check(record, config, None)


def test_recipe_parameters_are_free_but_what_they_derive_is_checked():
  """A run saved before a recipe parameter existed resumes; a changed derived value does not."""
  config = recipe_config.get_config()
  saved = run_config.plain(config)
  del saved["recipe"]["evaluations"]                 # an older version's rules
  saved["recipe"]["min_steps"] = 500                 # a rule's parameter changed since
  changes = run_config.check(dict(config=saved), config, None)
  assert [c["field"] for c in changes] == ["recipe.evaluations", "recipe.min_steps"]
  assert {c["kind"] for c in changes} == {"free"}
  config.train.num_steps = 1_000                     # a value a rule derives: checked
  with pytest.raises(run_config.ConfigDrift, match="train.num_steps: -1"):
    run_config.check(dict(config=saved), config, None)
