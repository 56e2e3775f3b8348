"""A config field added after a run was saved: at its behaviour-preserving value it is no
change (old workdirs stay readable and resumable); at any other value it is a ConfigDrift."""
import pytest

from configs import base
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
