"""ScaNN index: recall against exact search, id mapping, padding never returned."""
import numpy as np
import pytest

from mpformer_jax.retrieval import exact, scann_index


def _clustered(num_items=20_000, num_users=64, num_interests=3, dim=32, seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(64, dim))
  items = centers[rng.integers(0, 64, num_items + 1)] + 0.6 * rng.normal(
      size=(num_items + 1, dim))
  items[0] = 100.0  # Padding row: would top every list if it were indexed.
  queries = centers[rng.integers(0, 64, (num_users, num_interests))] + 0.6 * rng.normal(
      size=(num_users, num_interests, dim))
  return queries.astype(np.float32), items.astype(np.float32)


def test_default_params():
  p = scann_index.default_scann_params(20_000)
  assert p["num_leaves"] == 141 and 7 <= p["num_leaves_to_search"] <= 15
  assert scann_index.default_scann_params(100)["num_leaves"] == 0
  # Small corpus, long list: enough leaves to score ~10x k items, not just 10% of them.
  small = scann_index.default_scann_params(3_416, num_neighbors=200)
  assert small["num_leaves"] == 58 and small["num_leaves_to_search"] == 34
  assert scann_index.leaves_to_search(58, 3_416, 2_000) == 58  # never more than all leaves


def test_recall_at_100_vs_exact():
  queries, items = _clustered()
  _, exact_ids = exact.exact_top_k(queries, items, 100, block_size=8192)
  index = scann_index.build_scann(items, num_neighbors=100)
  ids, scores = scann_index.scann_search(index, queries, 100)
  assert ids.shape == (64, 100) and scores.shape == (64, 100)
  assert ids.min() >= 1 and ids.max() <= 20_000
  assert all(len(set(row)) == 100 for row in ids.tolist())  # Deduplicated across interests.
  assert np.all(np.diff(scores, axis=1) <= 1e-6)
  assert scann_index.recall_at_k(ids, np.asarray(exact_ids), 100) >= 0.9


def test_small_corpus_brute_force_and_padding():
  rng = np.random.default_rng(1)
  items = rng.normal(size=(31, 8)).astype(np.float32)
  items[0] = 100.0
  queries = rng.normal(size=(4, 2, 8)).astype(np.float32)
  index = scann_index.build_scann(items, num_neighbors=10)
  ids, scores = scann_index.scann_search(index, queries, 40)
  assert ids.shape == (4, 40)
  assert np.all(ids[:, :30] >= 1) and np.all(ids[:, 30:] == 0)
  assert np.all(np.isneginf(scores[:, 30:]))
  exact_scores, exact_ids = exact.exact_top_k(queries, items, 10)
  assert scann_index.recall_at_k(ids, np.asarray(exact_ids), 10) >= 0.9
  np.testing.assert_allclose(scores[:, :10], exact_scores, rtol=1e-4, atol=1e-4)


def test_dedupe_top_k_and_recall():
  ids = np.array([[3, 5, 3, 0], [1, 2, 3, 4]])
  scores = np.array([[0.1, 0.5, 0.9, 7.0], [4.0, 3.0, 2.0, 1.0]])
  out_ids, out_scores = scann_index.dedupe_top_k(ids, scores, 3)
  np.testing.assert_array_equal(out_ids, [[3, 5, 0], [1, 2, 3]])
  np.testing.assert_allclose(out_scores, [[0.9, 0.5, -np.inf], [4.0, 3.0, 2.0]])
  assert scann_index.recall_at_k([[1, 2], [9, 8]], [[2, 1], [8, 7]], 2) == pytest.approx(0.75)
  assert scann_index.recall_at_k([[1, 2]], [[1, 0]], 2) == 1.0
