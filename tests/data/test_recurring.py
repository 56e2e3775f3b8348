"""The recurring-interests workload: bursts where the story puts them, returns at the rate."""
import numpy as np
import pytest

from configs import base, recurring
from mpformer_jax.data import schema
from mpformer_jax.data.recurring import RecurringInterests
from mpformer_jax.data.registry import make_source
from mpformer_jax.data.synthetic import SyntheticPlatform


def small_source(**overrides):
  kw = dict(items=4, period=64, burst=4, quiet=100, return_prob=0.5)
  kw.update(overrides)
  base_source = SyntheticPlatform(num_users=300, num_items=2_000, min_len=300, max_len=600)
  return base_source, RecurringInterests(base_source, **kw)


def test_bursts_recur_outside_the_quiet_span_and_change_nothing_else():
  plain, source = small_source()
  for u in range(50):
    before, after = plain.user(u), source.user(u)
    ids, n = after[schema.SEQ_ITEM_IDS], len(after[schema.SEQ_ITEM_IDS])
    pos = source.burst_positions(u, n)
    assert len(pos) >= 4 * ((n - 3 - 100) // 64 - 1)          # a burst every period
    assert pos.max() < n - 3 - 100                             # none in the quiet span
    np.testing.assert_array_equal(ids[pos], source.favourites(u)[np.arange(len(pos)) % 4])
    changed = np.flatnonzero(ids != before[schema.SEQ_ITEM_IDS])
    assert set(changed) <= set(pos) | {n - 3, n - 2, n - 1}
    np.testing.assert_array_equal(after[schema.SEQ_EVENT_FEATURES],
                                  before[schema.SEQ_EVENT_FEATURES])
  assert np.array_equal(source.user(7)[schema.SEQ_ITEM_IDS],
                        small_source()[1].user(7)[schema.SEQ_ITEM_IDS])  # deterministic


@pytest.mark.parametrize("prob", [0.0, 0.5, 1.0])
def test_held_out_events_return_to_favourites_at_the_rate(prob):
  _, source = small_source(return_prob=prob)
  for back in (1, 2, 3):  # test, validation and the newest training target
    returns = [source.user(u)[schema.SEQ_ITEM_IDS][-back] in source.favourites(u)
               for u in range(300)]
    assert abs(np.mean(returns) - prob) < 0.08


def test_config_wiring_and_errors():
  assert isinstance(make_source(recurring.get_config().data), RecurringInterests)
  assert isinstance(make_source(base.get_config("tiny").data), SyntheticPlatform)
  c = base.get_config("tiny")
  c.data.name, c.data.recurring.items = "ml1m", 8
  with pytest.raises(ValueError, match="synthetic platform only"):
    make_source(c.data)
  with pytest.raises(ValueError, match="invalid burst"):
    small_source(burst=100)
