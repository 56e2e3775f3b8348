"""HR / NDCG from ranks and the popularity and transition baselines, checked by hand."""
import numpy as np
import pytest

from mpformer_jax.retrieval import metrics, popularity, transitions

RANKS = np.array([0, 1, 9, 10, 60])


def test_per_row_values():
  np.testing.assert_array_equal(metrics.hit_rate(RANKS, 10), [1, 1, 1, 0, 0])
  np.testing.assert_allclose(metrics.ndcg(RANKS, 10),
                             [1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0, 0.0])
  assert metrics.ndcg([0], 1)[0] == 1.0 and metrics.ndcg([1], 1)[0] == 0.0


def test_ranking_metrics_by_hand():
  out = metrics.ranking_metrics(RANKS, ks=(10, 50), prefix="val/")
  assert set(out) == {"val/hr@10", "val/ndcg@10", "val/hr@50", "val/ndcg@50", "val/count"}
  assert out["val/hr@10"] == pytest.approx(0.6)
  assert out["val/hr@50"] == pytest.approx(0.8)
  assert out["val/ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)
  assert out["val/ndcg@50"] == pytest.approx(
      (1 + 1 / np.log2(3) + 1 / np.log2(11) + 1 / np.log2(12)) / 5)
  assert out["val/count"] == 5


def test_default_keys():
  out = metrics.ranking_metrics(RANKS)
  for k in (10, 50, 200):
    assert f"hr@{k}" in out and f"ndcg@{k}" in out


def test_mask_and_empty_mask():
  out = metrics.ranking_metrics(RANKS, ks=(10,), mask=[True, True, False, False, False])
  assert out == {"hr@10": 1.0, "ndcg@10": pytest.approx((1 + 1 / np.log2(3)) / 2),
                 "count": 2.0}
  out = metrics.ranking_metrics(RANKS, ks=(10,), mask=np.zeros(5, bool))
  assert out == {"hr@10": 0.0, "ndcg@10": 0.0, "count": 0.0}
  with pytest.raises(ValueError):
    metrics.ranking_metrics(RANKS, mask=[True])


def test_combine_metrics_is_count_weighted():
  a = metrics.ranking_metrics(RANKS[:2], ks=(10,))
  b = metrics.ranking_metrics(RANKS[2:], ks=(10,))
  empty = metrics.ranking_metrics(RANKS, ks=(10,), mask=np.zeros(5, bool))
  whole = metrics.ranking_metrics(RANKS, ks=(10,))
  combined = metrics.combine_metrics([a, b, empty])
  assert combined == pytest.approx(whole)


def test_list_ranks():
  retrieved = np.array([[4, 7, 9], [0, 0, 0], [1, 2, 3]])
  ranks = metrics.list_ranks(retrieved, [7, 0, 5])
  assert ranks[0] == 1 and ranks[1] >= 3 and ranks[2] >= 3
  assert metrics.ranking_metrics(ranks, ks=(1, 3))["hr@3"] == pytest.approx(1 / 3)


# counts[0] is padding (ignored even though it is the largest); items 1..5.
COUNTS = np.array([99, 5, 3, 5, 0, 1])


def test_popularity_ranks_by_hand():
  ranks = popularity.popularity_ranks(COUNTS, [1, 2, 4, 5, 3])
  # 1: item 3 ties at 5; 2: items 1, 3; 4: everything else; 5: items 1, 2, 3; 3: item 1 ties.
  np.testing.assert_array_equal(ranks, [1, 2, 4, 3, 1])


def test_popularity_ranks_with_exclusion():
  exclude = np.array([[3, 0, 0], [1, 1, 4], [2, 2, 0]])
  ranks = popularity.popularity_ranks(COUNTS, [1, 2, 2], exclude_ids=exclude)
  # Item 3 removed; item 1 once (duplicates count once, 4 scores below); the target itself
  # in the exclusion list is still ranked.
  np.testing.assert_array_equal(ranks, [0, 1, 2])


def test_target_counts():
  np.testing.assert_array_equal(popularity.target_counts([1, 3, 3, 0, 5], 5),
                                [0, 1, 0, 2, 0, 1])


# Training transitions among items 1..5: 2 -> 3 twice, 2 -> 5 once, 4 -> 1 once.
TRANSITIONS = transitions.transition_counts([2, 2, 2, 4, 0], [3, 3, 5, 1, 2], 5)


def test_transition_counts_by_hand():
  dense = TRANSITIONS.toarray()
  assert dense[2, 3] == 2 and dense[2, 5] == 1 and dense[4, 1] == 1
  assert dense.sum() == 4  # the pair with padding (0 -> 2) is not counted


def test_transition_ranks_by_hand():
  # After item 2: 3 (2 counts), 5 (1), then by popularity 1 (5), 2 (3), 4 (0).
  # After item 4: 1 (1 count), then 3 (5), 2 (3), 5 (1), 4 (0).
  # After padding (no history): popularity alone, 1 and 3 tied at 5.
  ranks = transitions.transition_ranks(TRANSITIONS, COUNTS, [2, 2, 2, 4, 4, 0, 0],
                                       [3, 5, 1, 1, 3, 1, 4])
  np.testing.assert_array_equal(ranks, [0, 1, 2, 0, 1, 1, 4])


def test_transition_ranks_with_exclusion_match_popularitys_rule():
  exclude = np.array([[2, 3, 3], [2, 0, 0], [0, 0, 0]])
  ranks = transitions.transition_ranks(TRANSITIONS, COUNTS, [2, 2, 0], [5, 1, 2],
                                       exclude_ids=exclude)
  # 5 after 2 with 3 removed: first; 1 after 2 with only 2 removed (it ranks below 1): 3, 5
  # ahead; no history: popularity's rank, equal to popularity_ranks'.
  np.testing.assert_array_equal(ranks, [0, 2, 2])
  assert ranks[2] == popularity.popularity_ranks(COUNTS, [2])[0]


def test_transition_ranks_in_blocks_equal_one_block(monkeypatch):
  rng = np.random.default_rng(0)
  table = transitions.transition_counts(rng.integers(1, 6, 40), rng.integers(1, 6, 40), 5)
  last, targets = rng.integers(0, 6, 30), rng.integers(1, 6, 30)
  exclude = rng.integers(0, 6, (30, 4))
  whole = transitions.transition_ranks(table, COUNTS, last, targets, exclude)
  monkeypatch.setattr(transitions, "BLOCK_ELEMENTS", 7)  # one user a block
  np.testing.assert_array_equal(transitions.transition_ranks(table, COUNTS, last, targets,
                                                             exclude), whole)
