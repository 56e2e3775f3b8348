"""The served list for a multi-objective retriever (DESIGN 3).

Each user's list of N items is split into per-objective quotas N_o = round(N * w_o)
(minimum m, summing to N); each quota is filled from that objective's per-interest
retrieval (top ceil(N_o / k) * c per interest, union, dedupe keeping the max score,
truncate to N_o), then the objectives' lists are merged and deduplicated.
"""
from __future__ import annotations

import numpy as np

from mpformer_jax.retrieval.exact import per_interest_top_k
from mpformer_jax.retrieval.merge import (interest_quota, merge_interests,
                                          merge_objectives_batched, objective_quotas)


def merged_lists(interests, items, weights: np.ndarray, n: int, *, minimum: int = 0,
                 c: float = 1.0, block_size: int = 65536) -> np.ndarray:
  """[U, n] merged item ids (0-padded) from interests [U, O, J, d] and weights [U, O]."""
  num_users, num_obj, num_interests = interests.shape[:3]
  fetch = min(interest_quota(n, num_interests, c), items.shape[0] - 1)
  ids = np.zeros((num_users, num_obj, num_interests, fetch), np.int64)
  scores = np.zeros(ids.shape, np.float32)
  for o in range(num_obj):   # one objective at a time: memory ~ U * J * block_size
    s, i = per_interest_top_k(interests[:, o], items, fetch, block_size=block_size)
    scores[:, o], ids[:, o] = np.asarray(s), np.asarray(i)
  return merge_lists(ids, scores, weights, n, minimum=minimum, c=c)


def merge_lists(ids: np.ndarray, scores: np.ndarray, weights: np.ndarray, n: int, *,
                minimum: int = 0, c: float = 1.0) -> np.ndarray:
  """[U, n] merged ids from per-interest ranked lists ids / scores [U, O, J, M] (any search,
  exact or ScaNN; M >= the interest quota of n) and objective weights [U, O]."""
  num_users, num_obj = ids.shape[:2]
  quotas = np.stack([objective_quotas(w, n, minimum) for w in np.asarray(weights, np.float64)])
  lists = np.zeros((num_users, num_obj, n), np.int64)
  for u in range(num_users):
    for o in range(num_obj):
      if quotas[u, o]:
        merged, _ = merge_interests(ids[u, o], scores[u, o], int(quotas[u, o]), c)
        lists[u, o, :len(merged)] = merged
  out, _ = merge_objectives_batched(lists, quotas, n)
  return out
