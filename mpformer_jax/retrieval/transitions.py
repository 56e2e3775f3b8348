"""Transition baseline: rank items by how often they followed the user's newest item.

Popularity ignores the history; this baseline reads one event of it (a first-order Markov
chain of counts). A sequence model that cannot beat it has not learnt even item-to-item
transitions: on Amazon Beauty, where the median user has 6 events, it is the strong
baseline (benchmarks/README.md, "Quality"). Counts come from the training targets' (previous
item, target) pairs only, as popularity's come from the targets. Items the newest one never
preceded fall back to popularity order; remaining ties are broken pessimistically (rank =
number of OTHER eligible items scoring >= the target), as in popularity.py and exact.py.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse

from mpformer_jax.retrieval.popularity import excluded_ahead

BLOCK_ELEMENTS = 1 << 22  # users x items scored at once (32 MiB of int64 keys)


def transition_counts(prev_ids, next_ids, num_items: int) -> scipy.sparse.csr_matrix:
  """[N + 1, N + 1] int64 counts of (previous item, next item) pairs; ids in 1..N."""
  prev = np.asarray(prev_ids, np.int64).reshape(-1)
  nxt = np.asarray(next_ids, np.int64).reshape(-1)
  if prev.shape != nxt.shape:
    raise ValueError(f"transition_counts: {prev.size} previous ids but {nxt.size} next ids")
  ok = (prev > 0) & (prev <= num_items) & (nxt > 0) & (nxt <= num_items)
  size = num_items + 1
  return scipy.sparse.csr_matrix((np.ones(int(ok.sum()), np.int64), (prev[ok], nxt[ok])),
                                 shape=(size, size))  # duplicates are summed


def transition_ranks(transitions: scipy.sparse.csr_matrix, popularity, last_ids, target_ids,
                     exclude_ids: Optional[np.ndarray] = None) -> np.ndarray:
  """0-based rank of each target among items 1..N ordered by (count after last, popularity).

  Args:
    transitions: [N + 1, N + 1] counts (`transition_counts`); row 0 (no history) is empty,
      so such a user gets popularity's ranks.
    popularity: [N + 1] training-target counts (entry 0 ignored).
    last_ids: [U] each user's newest history item (0 = none).
    target_ids: [U] target ids in 1..N.
    exclude_ids: optional [U, L] item ids not to rank (as popularity_ranks).

  Returns:
    [U] int64 ranks, pessimistic on ties.
  """
  pop = np.asarray(popularity, np.int64)
  num_items = pop.shape[0] - 1
  last = np.asarray(last_ids, np.int64).reshape(-1)
  targets = np.asarray(target_ids, np.int64).reshape(-1)
  ex = None if exclude_ids is None else np.asarray(exclude_ids, np.int64).reshape(
      targets.shape[0], -1)
  block = max(1, BLOCK_ELEMENTS // (num_items + 1))
  ranks = np.empty(targets.shape, np.int64)
  for start in range(0, targets.shape[0], block):
    rows = slice(start, start + block)
    # One integer key per item: transition count first, popularity breaks its ties.
    keys = transitions[last[rows]].toarray() * (int(pop.max()) + 1) + pop[None]
    keys[:, 0] = -1  # padding is never ranked
    target_keys = np.take_along_axis(keys, targets[rows, None], axis=1)
    ranks[rows] = (keys >= target_keys).sum(axis=1) - 1
    if ex is not None:
      ex_keys = np.take_along_axis(keys, np.clip(ex[rows], 0, num_items), axis=1)
      ranks[rows] -= excluded_ahead(ex[rows], targets[rows], ex_keys, target_keys[:, 0],
                                    num_items)
  return ranks
