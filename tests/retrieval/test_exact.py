"""Exact blocked retrieval: hand-computed ranks and brute-force numpy agreement."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpformer_jax.retrieval import exact

# 3 users x (padding row + 5 items), 2 interests, d = 2. Row 0 is huge so leaking it shows.
ITEMS = np.array([[100, 100], [1, 0], [0, 1], [1, 1], [2, 0], [0, 0]], np.float32)
QUERIES = np.array([
    [[1, 0], [0, 1]],     # scores 1..5: 1, 1, 1, 2, 0
    [[0, 1], [0, -1]],    # scores 1..5: 0, 1, 1, 0, 0
    [[-1, 0], [-1, -1]],  # scores 1..5: -1, 0, -1, -2, 0
], np.float32)
TARGETS = np.array([3, 2, 5], np.int32)
EXCLUDE = np.array([[4, 0, 0], [3, 0, 0], [2, 2, 5]], np.int32)


def _brute_scores(queries, items, exclude=None):
  scores = np.einsum("ujd,nd->ujn", queries.astype(np.float64), items).max(axis=1)
  scores[:, 0] = -np.inf
  if exclude is not None:
    for u, row in enumerate(exclude):
      for x in row:
        if x:
          scores[u, x] = -np.inf
  return scores


def _random(num_users=5, num_interests=3, num_items=53, dim=8, seed=0):
  rng = np.random.default_rng(seed)
  queries = rng.normal(size=(num_users, num_interests, dim)).astype(np.float32)
  items = rng.normal(size=(num_items + 1, dim)).astype(np.float32)
  items[0] = 50.0  # Padding row would win every search if it were not masked.
  return queries, items


@pytest.mark.parametrize("block_size", [1, 2, 4, 6, 100])
def test_target_ranks_by_hand(block_size):
  ranks = exact.target_ranks(QUERIES, ITEMS, TARGETS, block_size=block_size)
  # A: items 1, 2, 4 score >= 1 (ties count against the target); B: item 3 ties;
  # C: item 2 ties at 0.
  np.testing.assert_array_equal(ranks, [3, 1, 1])
  ranks = exact.target_ranks(QUERIES, ITEMS, TARGETS, block_size=block_size,
                             exclude_ids=EXCLUDE)
  # A: item 4 removed; B: item 3 removed; C: item 2 removed (listed twice), target 5 kept.
  np.testing.assert_array_equal(ranks, [2, 0, 0])
  assert ranks.dtype == jnp.int32


@pytest.mark.parametrize("block_size", [1, 4, 6])
def test_exact_top_k_by_hand(block_size):
  scores, ids = exact.exact_top_k(QUERIES, ITEMS, 3, block_size=block_size)
  np.testing.assert_allclose(scores, [[2, 1, 1], [1, 1, 0], [0, 0, -1]])
  assert ids[0, 0] == 4 and set(np.asarray(ids[0, 1:])) <= {1, 2, 3}
  assert set(np.asarray(ids[1, :2])) == {2, 3}
  assert set(np.asarray(ids[2, :2])) == {2, 5}
  assert not np.any(np.asarray(ids) == 0)
  scores, ids = exact.exact_top_k(QUERIES, ITEMS, 2, block_size=block_size,
                                  exclude_ids=EXCLUDE)
  # Unlike target_ranks, top-k drops every excluded id, so C loses items 2 and 5.
  np.testing.assert_allclose(scores, [[1, 1], [1, 0], [-1, -1]])
  assert ids[1, 0] == 2 and set(np.asarray(ids[2])) == {1, 3}


def test_fewer_items_than_k_pads_with_zero():
  scores, ids = exact.exact_top_k(QUERIES, ITEMS, 7, block_size=4)
  assert np.all(np.asarray(ids)[:, 5:] == 0)
  assert np.all(np.isneginf(np.asarray(scores)[:, 5:]))
  assert sorted(np.asarray(ids)[0, :5].tolist()) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("block_size", [1, 7, 13, 54, 1000])
@pytest.mark.parametrize("use_exclude", [False, True])
def test_exact_top_k_matches_brute_force(block_size, use_exclude):
  queries, items = _random()
  rng = np.random.default_rng(1)
  exclude = rng.integers(0, 54, size=(5, 9)).astype(np.int32) if use_exclude else None
  k = 10
  scores, ids = exact.exact_top_k(queries, items, k, block_size=block_size,
                                  exclude_ids=exclude)
  brute = _brute_scores(queries, items, exclude)
  order = np.argsort(-brute, axis=1, kind="stable")[:, :k]
  np.testing.assert_array_equal(ids, order)
  np.testing.assert_allclose(scores, np.take_along_axis(brute, order, axis=1), rtol=1e-5)


@pytest.mark.parametrize("block_size", [7, 54])
@pytest.mark.parametrize("use_exclude", [False, True])
def test_target_ranks_match_brute_force_and_top_k(block_size, use_exclude):
  queries, items = _random(seed=2)
  rng = np.random.default_rng(3)
  targets = rng.integers(1, 54, size=5).astype(np.int32)
  exclude = rng.integers(0, 54, size=(5, 6)).astype(np.int32) if use_exclude else None
  ranks = np.asarray(exact.target_ranks(queries, items, targets, block_size=block_size,
                                        exclude_ids=exclude))
  brute = _brute_scores(queries, items, exclude)
  own = np.einsum("ujd,ud->uj", queries, items[targets]).max(axis=1)
  brute[np.arange(5), targets] = -np.inf  # "Other" items only.
  np.testing.assert_array_equal(ranks, (brute >= own[:, None]).sum(axis=1))
  _, ids = exact.exact_top_k(queries, items, 53, block_size=block_size, exclude_ids=exclude)
  ids = np.asarray(ids)
  for u in range(5):
    if use_exclude and targets[u] in exclude[u]:
      continue
    assert ids[u, ranks[u]] == targets[u]


def test_target_ranks_inside_jit():
  queries, items = _random(seed=4)
  targets = jnp.array([1, 2, 3, 4, 5], jnp.int32)
  fn = jax.jit(lambda q, v, t: exact.target_ranks(q, v, t, block_size=10))
  np.testing.assert_array_equal(fn(queries, items, targets),
                                exact.target_ranks(queries, items, targets, block_size=54))


def test_per_interest_top_k():
  queries, items = _random(seed=5)
  scores, ids = exact.per_interest_top_k(queries, items, 4)
  assert ids.shape == (5, 3, 4) and scores.shape == (5, 3, 4)
  per = np.einsum("ujd,nd->ujn", queries, items)
  per[:, :, 0] = -np.inf
  np.testing.assert_array_equal(ids, np.argsort(-per, axis=2)[:, :, :4])
  np.testing.assert_allclose(scores, -np.sort(-per, axis=2)[:, :, :4], rtol=1e-5)
