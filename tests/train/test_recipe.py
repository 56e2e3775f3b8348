"""The one recipe: dataset statistics and the rules that turn them into settings."""
import math

import numpy as np
import pytest

from configs import recipe as recipe_config
from mpformer_jax.data.stats import DatasetStats
from mpformer_jax.train import recipe


def _stats(lengths, num_items=100, objectives=("watch",)):
  lengths = np.asarray(lengths)
  p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
  return DatasetStats(name="toy", objectives=objectives, num_users=len(lengths),
                      num_items=num_items, num_events=int(lengths.sum()), length_p50=p50,
                      length_p90=p90, length_p99=p99, train_end=np.maximum(lengths - 2, 0))


def test_valid_targets_by_hand():
  stats = _stats([5, 10, 3])   # train_end 3, 8, 1: training positions 1..2, 1..7, none
  # user sampling: min(2, 4), min(7, 4) = 2, 4
  assert stats.valid_targets("user", 4) == pytest.approx((3.0, 1.0))
  # event sampling: min(p, 4) over p = 1, 2 and p = 1..7: 1 2 | 1 2 3 4 4 4 4
  v = np.array([1, 2, 1, 2, 3, 4, 4, 4, 4], float)
  assert stats.valid_targets("event", 4) == pytest.approx((v.mean(), v.std()))
  assert stats.num_examples("event") == 9 and stats.num_examples("user") == 2


def test_compression_schedule_rule():
  assert recipe.compression_schedule(200, 72) == ((32, 2), (16, 4))   # 128 older events
  assert recipe.compression_schedule(136, 72) == ((32, 1), (16, 2))
  assert recipe.compression_schedule(100, 72) == ()                   # 28 older: none
  assert recipe.compression_schedule(48, 72) == ()


def test_next_item_budget_rule():
  stats = _stats([5, 10, 3])
  mean, std = 4.5, 2.5                     # user sampling, window 8: min(2, 8), min(7, 8)
  expected = 128 * math.ceil((200 * mean + 4 * math.sqrt(200) * std) / 128)
  assert recipe.next_item_budget(stats, "user", 8, 200) == expected == 1152   # of 1,600
  assert recipe.next_item_budget(stats, "user", 4, 200) == 0   # 768 of 800: dense instead


def _config(**recipe_overrides):
  c = recipe_config.get_config()
  c.recipe.update(recipe_overrides)
  return c


def test_derive_from_statistics():
  sparse = _stats([6] * 90 + [50] * 10, num_items=2_000)        # 1,040 events: 0.5 per item
  d = recipe.derive(_config(sparse_dropout=0.5), sparse)
  assert d["data.max_len"][0] == 56                 # p99 = 50 rounded up to 8
  assert d["model.compression.schedule"][0] == ()
  assert d["model.dropout"][0] == 0.5               # sparse
  assert d["loss.negatives"][0] == "catalogue" and d["loss.kind"][0] == "softmax"
  assert d["model.objectives"][0] == ("watch",) and d["loss.objective_weights"][0] == (1.0,)
  # 90 users x 3 + 10 x 47 = 740 examples: 6 steps a pass, 2 passes, raised to min_steps
  assert d["train.num_steps"][0] == 1_000
  dense = _stats([600] * 300, num_items=100)         # 1,800 events per item
  d = recipe.derive(_config(min_steps=1, max_steps=5), dense)
  assert d["data.max_len"][0] == 200                 # capped
  assert d["model.compression.schedule"][0] == ((32, 2), (16, 4))
  assert d["model.dropout"][0] == 0.0
  assert d["loss.negatives"][0] == "in_batch" and d["loss.kind"][0] == "smooth_logq"
  assert d["train.num_steps"][0] == 5                # max_steps
  # Sparse but over the catalogue cap: in-batch negatives.
  d = recipe.derive(_config(catalogue_max_items=1_000), sparse)
  assert d["loss.negatives"][0] == "in_batch" and "2000 items (> 1000)" in d["loss.kind"][1]


def test_resolve_fills_only_auto_fields_and_logs():
  c = _config()
  c.data.max_len = 32                                # explicit: the rule is not used
  stats = _stats([6] * 90 + [50] * 10, num_items=2_000)
  recipe.resolve(c, lambda: stats)
  assert c.data.max_len == 32
  assert c.model.compression.schedule == ()          # derived from the explicit 32
  assert c.model.objectives == ("watch",)
  assert recipe.auto_fields(c) == []


def test_resolve_without_auto_fields_reads_no_statistics():
  from configs import base  # pylint: disable=import-outside-toplevel
  c = base.get_config("tiny")
  assert recipe.resolve(c, lambda: pytest.fail("statistics computed")) is c


def test_auto_fields_need_the_recipe_parameters():
  from configs import base  # pylint: disable=import-outside-toplevel
  c = base.get_config("tiny")
  c.train.num_steps = recipe.AUTO
  with pytest.raises(ValueError, match="train.num_steps.*recipe"):
    recipe.resolve(c, lambda: None)


@pytest.mark.slow  # about 50 s; .ci/run runs the slow set after the default one
def test_recipe_trains_untuned_on_ml100k_and_reads_back(tmp_path):
  """configs/recipe.py on a dataset it names nothing about: derived, saved, resumed, read."""
  import json  # pylint: disable=import-outside-toplevel
  from mpformer_jax.train import run_config  # pylint: disable=import-outside-toplevel
  from mpformer_jax.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel

  def config():
    c = recipe_config.get_config("tiny")
    c.data.name = "ml100k"
    c.data.tfds_dir = str(tmp_path / "tfds")
    return c
  workdir = str(tmp_path / "run")
  final = train_and_evaluate(config(), workdir)
  saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
  assert saved["data"]["max_len"] == 32                       # p99 of ML-100K, capped
  assert saved["model"]["compression"]["schedule"] == []       # 16 older events: too few
  assert saved["model"]["objectives"] == ["watch", "like", "love"]
  assert saved["model"]["dropout"] == 0.0                      # sparse (59 per item): 0
  assert saved["train"]["num_steps"] == 40                     # max_steps
  assert 0.0 < final["test/watch/hr@50"] < 1.0
  # The same command again: the fresh config derives the same values, nothing drifts.
  again = train_and_evaluate(config(), workdir)
  assert again["test/watch/hr@50"] == final["test/watch/hr@50"]
  # launch.evaluate with the recipe's --config reads the run's derived values.
  read = run_config.for_reading(workdir, config())
  assert read.data.max_len == 32 and read.train.num_steps == 40
