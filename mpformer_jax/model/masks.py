"""Backbone attention mask and positions (DESIGN 2.4-2.5).

Token order: [user token] [compressed groups] [raw items] [queries of objective 0] ...
[queries of objective O-1]. Context tokens (user, groups, items) are causal among
themselves. A query token of objective o sees every valid context token and the earlier
query tokens of its own objective only, so objectives can be served separately and no
objective sees another's queries. Every token may see itself, so no row is fully masked.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def static_structure(num_context: int, num_objectives: int, num_queries: int) -> np.ndarray:
  """[S, S] bool: which token may attend to which, before the padding mask."""
  c, q = num_context, num_objectives * num_queries
  s = c + q
  allowed = np.zeros((s, s), bool)
  allowed[:c, :c] = np.tril(np.ones((c, c), bool))
  allowed[c:, :c] = True
  for o in range(num_objectives):
    lo = c + o * num_queries
    allowed[lo:lo + num_queries, lo:lo + num_queries] = np.tril(
        np.ones((num_queries, num_queries), bool))
  return allowed


def backbone_mask(context_valid: jax.Array, num_objectives: int,
                  num_queries: int) -> jax.Array:
  """[B, 1, S, S] attention mask from the context tokens' validity [B, C]."""
  b, c = context_valid.shape
  allowed = jnp.asarray(static_structure(c, num_objectives, num_queries))
  s = allowed.shape[0]
  key_valid = jnp.concatenate(
      [context_valid, jnp.ones((b, num_objectives * num_queries), bool)], axis=1)
  mask = allowed[None] & key_valid[:, None, :]
  mask = mask | jnp.eye(s, dtype=bool)[None]
  return mask[:, None]


def backbone_positions(num_context: int, num_objectives: int, num_queries: int) -> np.ndarray:
  """RoPE positions: context tokens 0..C-1; every objective's queries at C..C+k-1."""
  queries = np.tile(np.arange(num_context, num_context + num_queries), num_objectives)
  return np.concatenate([np.arange(num_context), queries]).astype(np.int32)
