"""Exact full-corpus retrieval for multi-interest users (DESIGN 2.6, 3).

A user has J interest vectors `u_j`; item x scores `max_j <u_j, v_x>`. The corpus is scanned
in blocks of items (one jitted matmul + `lax.top_k` per block, running top-k merged in a
`lax.scan` carry) so memory stays O(U * block) however large the corpus is.

Conventions: item ids are 1..N and row 0 of `items` is padding, never retrieved nor counted.
`exclude_ids` `[U, L]` lists item ids to drop per user (the "seen items removed" protocol);
entries equal to 0 are ignored. Masked or missing results carry id 0 and score -inf.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

_NEG_INF = -jnp.inf


def _block_plan(num_rows: int, block_size: int) -> tuple[int, int]:
  """Returns (block, num_blocks) with block <= num_rows so dynamic slices never pad."""
  if block_size < 1:
    raise ValueError(f"block_size must be positive, got {block_size}")
  block = min(block_size, num_rows)
  return block, -(-num_rows // block)


def _block_scores(queries: Array, items: Array, i: Array, block: int,
                  precision) -> tuple[Array, Array, Array]:
  """Scores of block `i`: (scores [U, J, B] f32, item ids [B], fresh [B] bool).

  `dynamic_slice` clamps the start of the last block so it fits inside `items`; the rows
  it re-reads from the previous block are flagged not `fresh` so nothing is counted twice.
  Row 0 (padding) is never fresh.
  """
  nominal = i * block
  start = jnp.minimum(nominal, items.shape[0] - block)
  blk = lax.dynamic_slice_in_dim(items, start, block, axis=0)
  ids = start + jnp.arange(block, dtype=jnp.int32)
  fresh = (ids >= nominal) & (ids > 0)
  scores = jnp.einsum("ujd,bd->ujb", queries, blk, precision=precision,
                      preferred_element_type=jnp.float32)
  return scores, ids, fresh


def _excluded(exclude_ids: Optional[Array], ids: Array) -> Optional[Array]:
  """[U, B] mask of block items listed in `exclude_ids` (scatter, O(U * (L + B)))."""
  if exclude_ids is None:
    return None
  block = ids.shape[0]
  ex = exclude_ids.astype(jnp.int32)
  local = ex - ids[0]
  local = jnp.where((ex > 0) & (local >= 0) & (local < block), local, block)
  rows = jnp.broadcast_to(jnp.arange(ex.shape[0])[:, None], ex.shape)
  return jnp.zeros((ex.shape[0], block), bool).at[rows, local].set(True, mode="drop")


def merge_top_k(scores_a: Array, ids_a: Array, scores_b: Array, ids_b: Array,
                k: int) -> tuple[Array, Array]:
  """Merges two [U, *] candidate lists into the top k (e.g. results of item-axis shards)."""
  scores = jnp.concatenate([scores_a, scores_b], axis=-1)
  ids = jnp.concatenate([ids_a, ids_b], axis=-1)
  top, pos = lax.top_k(scores, k)
  return top, jnp.take_along_axis(ids, pos, axis=-1)


@functools.partial(jax.jit, static_argnames=("k", "block_size", "precision"))
def _exact_top_k(queries: Array, items: Array, exclude_ids: Optional[Array], k: int,
                 block_size: int, precision) -> tuple[Array, Array]:
  num_users = queries.shape[0]
  block, num_blocks = _block_plan(items.shape[0], block_size)
  kb = min(k, block)

  def body(carry, i):
    best_scores, best_ids = carry
    scores, ids, fresh = _block_scores(queries, items, i, block, precision)
    scores = scores.max(axis=1)
    valid = fresh[None, :]
    excluded = _excluded(exclude_ids, ids)
    if excluded is not None:
      valid = valid & ~excluded
    scores = jnp.where(valid, scores, _NEG_INF)
    top, pos = lax.top_k(scores, kb)
    carry = merge_top_k(best_scores, best_ids, top, ids[pos], k)
    return carry, None

  init = (jnp.full((num_users, k), _NEG_INF, jnp.float32),
          jnp.zeros((num_users, k), jnp.int32))
  (scores, ids), _ = lax.scan(body, init, jnp.arange(num_blocks))
  ids = jnp.where(scores == _NEG_INF, 0, ids)
  return scores, ids


def exact_top_k(queries: Array, items: Array, k: int, *, block_size: int = 65536,
                exclude_ids: Optional[Array] = None,
                precision=None) -> tuple[Array, Array]:
  """Top-k items by `max_j <u_j, v_x>` over the whole corpus, blocked over items.

  Args:
    queries: [U, J, d] interest vectors (J may be 1).
    items: [N + 1, d] item embeddings; row 0 is padding and never returned.
    k: number of results per user.
    block_size: items scored per step; need not divide N + 1. Peak memory is about
      U * J * block_size * 4 bytes, so lower it for large user batches.
    exclude_ids: optional [U, L] item ids to drop per user (0 entries ignored).
    precision: matmul precision passed to `jnp.einsum` (e.g. `lax.Precision.HIGHEST`).

  Returns:
    (scores [U, k] f32, ids [U, k] int32), best first; id 0 / -inf where fewer than k items
    are eligible.
  """
  return _exact_top_k(queries, items, exclude_ids, k=k, block_size=block_size,
                      precision=precision)


def per_interest_top_k(queries: Array, items: Array, k: int, *, block_size: int = 65536,
                       exclude_ids: Optional[Array] = None,
                       precision=None) -> tuple[Array, Array]:
  """Top-k per interest vector: (scores [U, J, k], ids [U, J, k]), for the quota merge."""
  num_users, num_interests, dim = queries.shape
  flat = queries.reshape(num_users * num_interests, 1, dim)
  if exclude_ids is not None:
    exclude_ids = jnp.repeat(exclude_ids, num_interests, axis=0)
  scores, ids = exact_top_k(flat, items, k, block_size=block_size, exclude_ids=exclude_ids,
                            precision=precision)
  return (scores.reshape(num_users, num_interests, k),
          ids.reshape(num_users, num_interests, k))


def target_scores(queries: Array, items: Array, target_ids: Array, precision=None) -> Array:
  """[U] score `max_j <u_j, v_target>` of each user's target item."""
  targets = jnp.take(items, target_ids, axis=0)
  scores = jnp.einsum("ujd,ud->uj", queries, targets, precision=precision,
                      preferred_element_type=jnp.float32)
  return scores.max(axis=1)


@functools.partial(jax.jit, static_argnames=("block_size", "precision"))
def _target_ranks(queries: Array, items: Array, target_ids: Array,
                  exclude_ids: Optional[Array], block_size: int, precision) -> Array:
  target_ids = target_ids.astype(jnp.int32)
  target = target_scores(queries, items, target_ids, precision)
  block, num_blocks = _block_plan(items.shape[0], block_size)

  def body(count, i):
    scores, ids, fresh = _block_scores(queries, items, i, block, precision)
    beats = (scores.max(axis=1) >= target[:, None]) & fresh[None, :]
    beats &= ids[None, :] != target_ids[:, None]
    excluded = _excluded(exclude_ids, ids)
    if excluded is not None:
      beats &= ~excluded
    return count + beats.sum(axis=1, dtype=jnp.int32), None

  count, _ = lax.scan(body, jnp.zeros(queries.shape[0], jnp.int32), jnp.arange(num_blocks))
  return count


def target_ranks(queries: Array, items: Array, target_ids: Array, *,
                 block_size: int = 65536, exclude_ids: Optional[Array] = None,
                 precision=None) -> Array:
  """0-based rank of each user's target among all items, for HR/NDCG at every K at once.

  Pessimistic on ties: rank = number of OTHER eligible items (ids 1..N, not excluded) whose
  score is >= the target's, so a model that scores everything equal gets no credit. The
  target is ranked even if it appears in `exclude_ids`.

  Args:
    queries: [U, J, d] interest vectors.
    items: [N + 1, d] item embeddings; row 0 is padding.
    target_ids: [U] target item ids in 1..N (rows with other ids give meaningless ranks;
      mask them out in `metrics.ranking_metrics`).
    block_size: items scored per step; need not divide N + 1.
    exclude_ids: optional [U, L] item ids not to count (0 entries ignored).
    precision: matmul precision passed to `jnp.einsum`.

  Returns:
    [U] int32 ranks; the target is a hit at K iff rank < K.
  """
  return _target_ranks(queries, items, target_ids, exclude_ids, block_size=block_size,
                       precision=precision)
