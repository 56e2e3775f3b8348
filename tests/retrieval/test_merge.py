"""Per-interest and per-objective quota merges (DESIGN 3)."""
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from mpformer_jax.retrieval import merge


def test_interest_quota():
  assert merge.interest_quota(10, 3) == 4
  assert merge.interest_quota(10, 3, c=1.5) == 6
  assert merge.interest_quota(9, 3) == 3


def test_merge_interests_quota_dedupe_and_order():
  ids = np.array([[5, 3, 8, 0], [3, 7, 9, 2], [6, 4, 1, 11]])
  scores = np.array([[0.9, 0.5, 0.4, 0.3], [0.8, 0.7, 0.6, 0.5], [0.2, 0.1, 0.05, 0.01]])
  # n = 4, J = 3 -> quota ceil(4/3) = 2 each: {5, 3}, {3, 7}, {6, 4}; item 3 keeps 0.8.
  out_ids, out_scores = merge.merge_interests(ids, scores, n=4)
  np.testing.assert_array_equal(out_ids, [5, 3, 7, 6])
  np.testing.assert_allclose(out_scores, [0.9, 0.8, 0.7, 0.2])
  # The weak third interest still gets in even though interest 2 has better items left:
  assert 9 not in out_ids
  # c = 2 -> quota 4 each: more candidates from strong interests win on score.
  out_ids, _ = merge.merge_interests(ids, scores, n=4, c=2)
  np.testing.assert_array_equal(out_ids, [5, 3, 7, 9])


def test_merge_interests_unsorted_input_and_padding():
  ids = np.array([[0, 2, 1], [2, 0, 3]])
  scores = np.array([[9.0, 0.1, 0.7], [0.5, 8.0, 0.2]])
  out_ids, out_scores = merge.merge_interests(ids, scores, n=6)
  np.testing.assert_array_equal(out_ids, [1, 2, 3])
  np.testing.assert_allclose(out_scores, [0.7, 0.5, 0.2])


def test_merge_interests_batched_pads():
  ids = np.array([[[1, 2]], [[3, 3]]])
  scores = np.array([[[0.5, 0.4]], [[0.1, 0.9]]])
  out_ids, out_scores = merge.merge_interests_batched(ids, scores, n=3)
  np.testing.assert_array_equal(out_ids, [[1, 2, 0], [3, 0, 0]])
  np.testing.assert_allclose(out_scores, [[0.5, 0.4, -np.inf], [0.9, -np.inf, -np.inf]])


def test_dedupe_max_tie_order():
  ids, scores = merge.dedupe_max([4, 2, 4, 9], [1.0, 1.0, 3.0, 1.0])
  np.testing.assert_array_equal(ids, [4, 2, 9])
  np.testing.assert_allclose(scores, [3.0, 1.0, 1.0])


def test_objective_quotas_by_hand():
  np.testing.assert_array_equal(merge.objective_quotas([0.7, 0.2, 0.1], 10), [7, 2, 1])
  np.testing.assert_array_equal(merge.objective_quotas([0.5, 0.5], 5), [3, 2])
  # Minimum binds: the rest share what is left in proportion.
  np.testing.assert_array_equal(merge.objective_quotas([0.9, 0.05, 0.05], 100, 10),
                                [80, 10, 10])
  np.testing.assert_array_equal(merge.objective_quotas([0.6, 0.3, 0.1], 100, 20),
                                [53, 27, 20])
  np.testing.assert_array_equal(merge.objective_quotas([0, 0, 0], 7, 1), [3, 2, 2])
  np.testing.assert_array_equal(merge.objective_quotas([1.0, 0.0], 4, 2), [2, 2])


def test_objective_quotas_errors():
  with pytest.raises(ValueError):
    merge.objective_quotas([0.5, 0.5], 3, minimum=2)
  with pytest.raises(ValueError):
    merge.objective_quotas([-0.1, 1.1], 3)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    weights=st.lists(st.floats(0, 1), min_size=1, max_size=6),
    n=st.integers(0, 500), minimum=st.integers(0, 40))
def test_objective_quotas_properties(weights, n, minimum):
  if len(weights) * minimum > n:
    with pytest.raises(ValueError):
      merge.objective_quotas(weights, n, minimum)
    return
  quotas = merge.objective_quotas(weights, n, minimum)
  assert quotas.sum() == n
  assert np.all(quotas >= minimum)
  w = np.asarray(weights)
  w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
  if minimum == 0:
    assert np.all(np.abs(quotas - n * w) < 1 + 1e-9)


def test_merge_objectives_round_robin_and_skip_taken():
  lists = [np.array([1, 2, 3, 4]), np.array([2, 5, 6]), np.array([1])]
  ids, src = merge.merge_objectives(lists, [2, 2, 1], n=5)
  # Round 1: o0 takes 1, o1 takes 2, o2's only item is taken. Round 2: 3, 5. Quota phase
  # yields 4; the free slot goes round-robin: o0 takes 4.
  np.testing.assert_array_equal(ids, [1, 2, 3, 5, 4])
  np.testing.assert_array_equal(src, [0, 1, 0, 1, 0])


def test_merge_objectives_respects_quotas_and_runs_out():
  lists = [np.arange(1, 11), np.arange(11, 21)]
  ids, src = merge.merge_objectives(lists, [3, 1], n=4)
  assert sorted(ids.tolist()) == [1, 2, 3, 11] and (src == 0).sum() == 3
  ids, _ = merge.merge_objectives([np.array([1, 2, 0]), np.array([2])], [2, 2], n=4)
  np.testing.assert_array_equal(ids, [1, 2])  # Only 2 distinct items exist.


def test_merge_objectives_batched():
  ids = np.array([[[1, 2, 3], [3, 4, 5]], [[7, 8, 9], [7, 8, 9]]])
  out, src = merge.merge_objectives_batched(ids, [[1, 1], [2, 0]], n=2)
  np.testing.assert_array_equal(out, [[1, 3], [7, 8]])
  np.testing.assert_array_equal(src, [[0, 1], [0, 0]])
  out, src = merge.merge_objectives_batched(ids[:, :, :1], [1, 1], n=3)
  np.testing.assert_array_equal(out, [[1, 3, 0], [7, 0, 0]])
  np.testing.assert_array_equal(src, [[0, 1, -1], [0, -1, -1]])
