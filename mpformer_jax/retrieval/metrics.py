"""Leave-one-out ranking metrics from target ranks (DESIGN 3).

Every metric here is a function of the target's 0-based rank among all items (see
`exact.target_ranks`), so one pass over the corpus gives HR and NDCG at every K. With one
relevant item per user, the ideal DCG is 1 and NDCG@K = 1 / log2(rank + 2) when rank < K.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def hit_rate(ranks, k: int) -> np.ndarray:
  """Per-row hit indicator at K: 1.0 where rank < k, else 0.0 (float64 [U])."""
  ranks = np.asarray(ranks)
  return (ranks < k).astype(np.float64)


def ndcg(ranks, k: int) -> np.ndarray:
  """Per-row NDCG@K for a single target: 1 / log2(rank + 2) if rank < k, else 0 ([U])."""
  ranks = np.asarray(ranks).astype(np.float64)
  return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ranking_metrics(ranks, ks: Sequence[int] = (10, 50, 200), prefix: str = "",
                    mask=None) -> dict[str, float]:
  """Mean HR@K and NDCG@K for every K, over the rows where `mask` is true.

  Args:
    ranks: [U] 0-based target ranks.
    ks: cut-offs.
    prefix: prepended to every key (e.g. "like/").
    mask: optional [U] bool; rows to average over (padding rows, or per-objective subsets).

  Returns:
    {prefix + "hr@K": ..., prefix + "ndcg@K": ..., prefix + "count": rows used}. An empty
    selection gives 0.0 for every metric and count 0 (never NaN), so sums over eval shards stay
    finite; weight by "count" when combining.
  """
  ranks = np.asarray(ranks).reshape(-1)
  if mask is None:
    selected = np.ones(ranks.shape, bool)
  else:
    selected = np.asarray(mask).reshape(-1).astype(bool)
    if selected.shape != ranks.shape:
      raise ValueError(f"mask shape {selected.shape} != ranks shape {ranks.shape}")
  count = int(selected.sum())
  chosen = ranks[selected]
  out: dict[str, float] = {}
  for k in ks:
    out[f"{prefix}hr@{k}"] = float(hit_rate(chosen, k).mean()) if count else 0.0
    out[f"{prefix}ndcg@{k}"] = float(ndcg(chosen, k).mean()) if count else 0.0
  out[f"{prefix}count"] = float(count)
  return out


def combine_metrics(parts: Sequence[dict[str, float]], prefix: str = "") -> dict[str, float]:
  """Count-weighted mean of `ranking_metrics` results (e.g. over eval batches or hosts)."""
  count_key = f"{prefix}count"
  total = sum(p[count_key] for p in parts)
  out: dict[str, float] = {}
  for key in (parts[0] if parts else {}):
    if key == count_key:
      continue
    out[key] = (sum(p[key] * p[count_key] for p in parts) / total) if total else 0.0
  out[count_key] = float(total)
  return out


def list_ranks(retrieved_ids, target_ids) -> np.ndarray:
  """Position of each target in a retrieved list, or a huge rank when absent.

  Lets `ranking_metrics` score merged candidate lists (quota merges, ANN results), e.g. the
  merged list's per-objective hit rate ("multi-objective exposure") with an objective mask.

  Args:
    retrieved_ids: [U, n] item ids, best first; 0 = padding (never matches).
    target_ids: [U] target item ids.

  Returns:
    [U] int64: first position of the target, or `np.iinfo(np.int32).max` if it is missing.
  """
  ids = np.asarray(retrieved_ids)
  targets = np.asarray(target_ids).reshape(-1, 1)
  found = (ids == targets) & (ids != 0)
  return np.where(found.any(axis=1), found.argmax(axis=1),
                  np.iinfo(np.int32).max).astype(np.int64)
