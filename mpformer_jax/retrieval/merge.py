"""Multi-interest and multi-objective merging of retrieved lists (DESIGN 3).

Per-interest quota [paper: KuaiFormer]: each of the J interests contributes its top
`ceil(n / J) * c` items, so one dominant interest cannot crowd out the others; the union is
deduplicated (an item keeps its best score), sorted and cut to n.

Per-objective quota [ours]: objective o gets `N_o = round(n * w_o)` slots (at least a
minimum), filled round-robin from each objective's own ranked list so shared items are not
counted twice. All functions are numpy, per user, with batched wrappers that pad with id 0.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def dedupe_max(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Unique non-zero ids, each with its max score, sorted by score desc (ties: id asc)."""
  ids = np.asarray(ids).reshape(-1)
  scores = np.asarray(scores, dtype=np.float64).reshape(-1)
  keep = ids != 0
  ids, scores = ids[keep], scores[keep]
  order = np.lexsort((-scores, ids))  # By id, then best score first within an id.
  ids, scores = ids[order], scores[order]
  first = np.ones(ids.shape, bool)
  first[1:] = ids[1:] != ids[:-1]
  ids, scores = ids[first], scores[first]
  order = np.lexsort((ids, -scores))
  return ids[order], scores[order]


def interest_quota(n: int, num_interests: int, c: float = 1.0) -> int:
  """Items taken from each interest's list: `ceil(n / J) * c`, rounded up."""
  return int(math.ceil(math.ceil(n / num_interests) * c))


def merge_interests(ids, scores, n: int, c: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """Per-interest quota merge of one user's J ranked lists.

  Args:
    ids: [J, M] item ids per interest (0 = padding, skipped).
    scores: [J, M] matching scores (lists need not be pre-sorted).
    n: final list length.
    c: over-fetch factor; each interest contributes its top `ceil(n / J) * c`.

  Returns:
    (ids [<= n], scores [<= n]): distinct items by max score, best first.
  """
  ids = np.asarray(ids)
  scores = np.asarray(scores, dtype=np.float64)
  if ids.ndim != 2 or ids.shape != scores.shape:
    raise ValueError(f"ids {ids.shape} and scores {scores.shape} must both be [J, M]")
  quota = min(interest_quota(n, ids.shape[0], c), ids.shape[1])
  masked = np.where(ids != 0, scores, -np.inf)
  order = np.argsort(-masked, axis=1, kind="stable")[:, :quota]
  top_ids = np.take_along_axis(ids, order, axis=1)
  top_scores = np.take_along_axis(scores, order, axis=1)
  out_ids, out_scores = dedupe_max(top_ids, top_scores)
  return out_ids[:n], out_scores[:n]


def merge_interests_batched(ids, scores, n: int, c: float = 1.0
                            ) -> tuple[np.ndarray, np.ndarray]:
  """`merge_interests` per user: [U, J, M] -> (ids [U, n] padded with 0, scores -inf)."""
  ids = np.asarray(ids)
  scores = np.asarray(scores)
  out_ids = np.zeros((ids.shape[0], n), ids.dtype)
  out_scores = np.full((ids.shape[0], n), -np.inf)
  for u in range(ids.shape[0]):
    i, s = merge_interests(ids[u], scores[u], n, c)
    out_ids[u, :len(i)] = i
    out_scores[u, :len(s)] = s
  return out_ids, out_scores


def objective_quotas(weights, n: int, minimum: int = 0) -> np.ndarray:
  """Slots per objective: about `n * w_o`, each >= `minimum`, summing exactly to n.

  Objectives whose proportional share falls below `minimum` are pinned to it and the rest
  share what is left in proportion to their weights (repeated until stable); shares are then
  rounded by largest remainder so the total is exact.

  Args:
    weights: [O] non-negative objective weights (normalised here; all zero = uniform).
    n: total list length.
    minimum: per-objective floor.

  Returns:
    [O] int64 quotas.

  Raises:
    ValueError: if `O * minimum > n` or a weight is negative or not finite.
  """
  w = np.asarray(weights, dtype=np.float64).reshape(-1)
  num = w.shape[0]
  if num == 0:
    raise ValueError("weights must be non-empty")
  if not np.all(np.isfinite(w)) or np.any(w < 0):
    raise ValueError(f"weights must be finite and non-negative, got {w}")
  if n < 0 or minimum < 0:
    raise ValueError(f"n and minimum must be non-negative, got {n}, {minimum}")
  if num * minimum > n:
    raise ValueError(f"{num} objectives x minimum {minimum} exceeds n = {n}")
  w = w / w.sum() if w.sum() > 0 else np.full(num, 1.0 / num)
  pinned = np.zeros(num, bool)
  while True:
    free = ~pinned
    left = n - minimum * pinned.sum()
    wf = w[free].sum()
    share = np.where(free, (w / wf if wf > 0 else free / free.sum()) * left, minimum)
    newly = free & (share < minimum)
    if not newly.any():
      break
    pinned |= newly
  quotas = np.floor(share).astype(np.int64)
  quotas = np.maximum(quotas, minimum)
  deficit = n - quotas.sum()
  remainder = np.where(pinned, -np.inf, share - quotas)
  order = np.lexsort((np.arange(num), -w, -remainder))  # Largest remainder, then weight.
  quotas[order[:deficit]] += 1
  return quotas


def merge_objectives(lists: Sequence, quotas, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Fills each objective's quota from its own ranked list, skipping items already taken.

  Objectives take turns one item at a time (round-robin in rank order), so an item wanted
  by several objectives goes to the one that ranks it earliest in the interleaving. If some
  list runs out, the remaining slots go round-robin to the lists that still have items, so the
  result has exactly n items unless fewer distinct items exist.

  Args:
    lists: per objective, a 1-D array of item ids best first (0 = padding, skipped).
    quotas: [O] slots per objective (e.g. from `objective_quotas`).
    n: final list length.

  Returns:
    (ids [<= n], sources [<= n]): distinct items in take order and the objective that took
    each one.
  """
  lists = [np.asarray(x).reshape(-1) for x in lists]
  quotas = np.asarray(quotas).reshape(-1)
  if len(lists) != quotas.shape[0]:
    raise ValueError(f"{len(lists)} lists but {quotas.shape[0]} quotas")
  taken: set[int] = set()
  out_ids: list[int] = []
  out_src: list[int] = []
  pos = [0] * len(lists)
  counts = [0] * len(lists)

  def next_item(o: int) -> Optional[int]:
    lst = lists[o]
    while pos[o] < lst.shape[0]:
      item = int(lst[pos[o]])
      pos[o] += 1
      if item != 0 and item not in taken:
        return item
    return None

  for respect_quota in (True, False):
    active = [o for o in range(len(lists)) if not respect_quota or quotas[o] > 0]
    while active and len(out_ids) < n:
      still = []
      for o in active:
        if len(out_ids) >= n:
          break
        if respect_quota and counts[o] >= quotas[o]:
          continue
        item = next_item(o)
        if item is None:
          continue
        taken.add(item)
        out_ids.append(item)
        out_src.append(o)
        counts[o] += 1
        still.append(o)
      active = still
  return np.asarray(out_ids, np.int64), np.asarray(out_src, np.int64)


def merge_objectives_batched(ids, quotas, n: int) -> tuple[np.ndarray, np.ndarray]:
  """`merge_objectives` per user.

  Args:
    ids: [U, O, M] ranked ids per user and objective (e.g. merged interest lists).
    quotas: [O] shared or [U, O] per-user quotas.
    n: final list length.

  Returns:
    (ids [U, n] padded with 0, sources [U, n] padded with -1).
  """
  ids = np.asarray(ids)
  quotas = np.asarray(quotas)
  if quotas.ndim == 1:
    quotas = np.broadcast_to(quotas, ids.shape[:2])
  out_ids = np.zeros((ids.shape[0], n), np.int64)
  out_src = np.full((ids.shape[0], n), -1, np.int64)
  for u in range(ids.shape[0]):
    i, s = merge_objectives(list(ids[u]), quotas[u], n)
    out_ids[u, :len(i)] = i
    out_src[u, :len(s)] = s
  return out_ids, out_src
