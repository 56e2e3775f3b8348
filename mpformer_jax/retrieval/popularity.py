"""Most-popular baseline: rank every item by its count among training targets.

A model that cannot beat this is not using the user's history; the ranks feed the same
`metrics.ranking_metrics` as the learned retrievers. Ties are broken pessimistically (rank =
number of OTHER eligible items with count >= the target's), exactly as `exact.target_ranks`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def target_counts(target_ids, num_items: int) -> np.ndarray:
  """[N + 1] int64 counts of each item id among training targets (row 0 = padding)."""
  ids = np.asarray(target_ids).reshape(-1)
  ids = ids[(ids > 0) & (ids <= num_items)]
  return np.bincount(ids, minlength=num_items + 1).astype(np.int64)


def popularity_ranks(counts, target_ids, exclude_ids: Optional[np.ndarray] = None
                     ) -> np.ndarray:
  """0-based rank of each target when items 1..N are ordered by training-target count.

  Args:
    counts: [N + 1] item counts; entry 0 (padding) is ignored.
    target_ids: [U] target ids in 1..N.
    exclude_ids: optional [U, L] item ids not to count (0 entries and duplicates ignored;
      the target itself is always ranked).

  Returns:
    [U] int64 ranks, pessimistic on ties.
  """
  counts = np.asarray(counts)
  targets = np.asarray(target_ids).reshape(-1).astype(np.int64)
  num_items = counts.shape[0] - 1
  target_count = counts[targets]
  ordered = np.sort(counts[1:])
  # Items (target included) with count >= the target's, minus the target itself.
  ranks = num_items - np.searchsorted(ordered, target_count, side="left") - 1
  if exclude_ids is None:
    return ranks.astype(np.int64)
  ex = np.asarray(exclude_ids).astype(np.int64).reshape(targets.shape[0], -1)
  ahead = excluded_ahead(ex, targets, counts[np.clip(ex, 0, num_items)], target_count,
                         num_items)
  return (ranks - ahead).astype(np.int64)


def excluded_ahead(exclude_ids: np.ndarray, targets: np.ndarray, exclude_scores: np.ndarray,
                   target_scores: np.ndarray, num_items: int) -> np.ndarray:
  """[U] how many distinct excluded items (ids in 1..N, not the target) score >= the target.

  A baseline's pessimistic rank over every item minus this is its rank with those items
  removed. exclude_ids [U, L] (0 = padding), exclude_scores [U, L] their scores.
  """
  order = np.argsort(exclude_ids, axis=1, kind="stable")
  ex = np.take_along_axis(exclude_ids, order, axis=1)
  scores = np.take_along_axis(exclude_scores, order, axis=1)
  first = np.ones(ex.shape, bool)
  first[:, 1:] = ex[:, 1:] != ex[:, :-1]  # Count each distinct id once.
  eligible = first & (ex > 0) & (ex <= num_items) & (ex != targets[:, None])
  return (eligible & (scores >= target_scores[:, None])).sum(axis=1)
