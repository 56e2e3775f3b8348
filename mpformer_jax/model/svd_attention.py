"""SVD-Attention: softmax attention over a long history at O(N r d) (SOLAR, issue 22).

What SOLAR states (Zhang et al., "SOLAR: SVD-Optimized Lifelong Attention for
Recommendation", arXiv 2603.02561, 2026; only the abstract is public to us): an attention
that exploits the low-rank structure of behaviour sequences, is "theoretically lossless on
low-rank matrices", keeps the softmax (unlike linear attention) and costs O(N d r) instead
of O(N^2 d). The construction below is ours, written to have exactly those properties.

Construction. Softmax attention of queries q_i over N valid keys k_j with values v_j is
  out_i = sum_j E_ij v_j / sum_j E_ij,   E = exp(tau Q K^T),  tau = 1 / sqrt(D).
Choose r landmark keys J by farthest-point sampling over the keys and use them as probes:
  P = exp(tau K_J K^T) [r, N],   W = P[:, J] = exp(tau K_J K_J^T) [r, r],
  A = max(W^+ P, 0) [r, N]   (W^+: truncated SVD pseudo-inverse; A: each key's coordinates
                              on the landmarks, clipped at 0),
  S_v = A V [r, Dv],  S_1 = A 1 [r],
and for every query  c_i = exp(tau q_i K_J^T) [r],  out_i = c_i S_v / c_i S_1.
The summary (K_J, S_v, S_1) costs O(N r (r + D)) once per sequence; a query then costs
O(r D), so any number of queries (every backbone layer, every position) reads N keys in
linear time. The softmax is kept: numerator and denominator are reconstructed sums of the
exponentials, not a kernel feature map.

When it is exact (the "low-rank" condition, ours): the valid keys take at most r distinct
values, no two of them so close that their Gaussian kernel matrix W (below) has a singular
value under RTOL of its largest. Farthest-point sampling then takes every distinct key once
(after that the farthest key is at distance 0, and such a landmark is dropped). With G
[r, N] the indicator of which landmark each key repeats, E = C G for C = E[:, J], and
P = W G; W is invertible (exp(tau <k, k'>) is a strictly positive definite kernel on
distinct keys), so W^+ P = G >= 0 (the clip does nothing), A = G and the outputs equal
softmax attention, for any queries and any values. Gradients w.r.t. queries and values are
then exact as well; w.r.t. keys, along every change that keeps repeated keys equal. In a
model whose history tokens are functions of (item, features) with no position term, a
repeated event is the same token, so every parameter gradient is exact. E then has rank
<= r: repeats (re-watches, re-purchases, the same few categories or authors) are the
low-rank structure of behaviour sequences that this exploits. With more distinct keys than
r the summary approximates each key by its non-negative coordinates on the landmarks (a
kernel interpolation; without the clip, negative coordinates could make a denominator
vanish and the error exceed 1); its error against full attention as r varies is measured
in tests/model/test_svd_attention.py and benchmarks/solar.py.

Numerics (ours). Everything is computed in the Gaussian form exp(tau<a,b>) =
exp(tau|a|^2/2) exp(-tau|a-b|^2/2) exp(tau|b|^2/2), whose factors cancel in the ratio, so W
is a Gaussian kernel matrix (symmetric, unit diagonal, pseudo-inverted by eigh with relative
cut-off `rtol`), P is bounded by 1 and values are weighted by exp(tau(|k_j|^2 - max|k|^2)/2)
<= 1. Keys whose squared norms differ by more than ~170 / tau underflow that weight in f32;
the SOLAR encoder normalises its history tokens, so theirs do not. Should every coordinate
of a query's landmarks be clipped away (a denominator of 0), that query falls back to
softmax attention over the landmarks alone. A sequence with no valid key reads zeros.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpformer_jax.model.layers import NEG_INF

# Singular values of W below RTOL * the largest are dropped. Nearly equal landmarks (closer
# than their kernel can tell apart) then count once: on keys near a few centres, 1e-6 let
# the clipped coordinates of such landmarks swing, and the error grew with r (0.06 at 1e-2
# against 0.54 at 1e-6 for r=64 in test_svd_attention's clustered case).
RTOL = 1e-2
SKETCH_WIDTH = 16  # landmark selection reads keys projected to this width


class Summary(NamedTuple):
  """What a query needs of N keys: r landmarks and the reconstructed sums behind them."""
  keys: jax.Array        # [B, r, H, D] landmark keys K_J
  offset: jax.Array      # [B, H, r] tau |k_l|^2 / 2
  valid: jax.Array       # [B, r] landmark taken (a valid key, not a repeat)
  values: jax.Array      # [B, H, r, Dv] S_v
  mass: jax.Array        # [B, H, r] S_1
  landmark_values: jax.Array  # [B, r, H, Dv] v_J (the fallback's values)


def farthest_point_landmarks(points: jax.Array, valid: jax.Array,
                             rank: int) -> tuple[jax.Array, jax.Array]:
  """r landmark indices [B, r] and whether each is a new point [B, r] (no gradient).

  Greedy farthest-point sampling over the valid points [B, N, F]: the first valid point,
  then repeatedly the valid point farthest from every landmark so far. A pick at distance
  <= 1e-6 * max|x|^2 repeats a landmark and is marked not taken.
  """
  points = jax.lax.stop_gradient(points.astype(jnp.float32))
  scale = jnp.max(jnp.where(valid, jnp.sum(points * points, -1), 0.0), axis=1)
  tol = 1e-6 * scale + 1e-30
  dmin = jnp.where(valid, jnp.inf, -1.0)
  idx = jnp.zeros((points.shape[0], rank), jnp.int32)
  taken = jnp.zeros((points.shape[0], rank), bool)

  def body(l, carry):
    dmin, idx, taken = carry
    pick = jnp.argmax(dmin, axis=1).astype(jnp.int32)
    far = jnp.take_along_axis(dmin, pick[:, None], axis=1)[:, 0]
    centre = jnp.take_along_axis(points, pick[:, None, None], axis=1)
    dist = jnp.sum(jnp.square(points - centre), axis=-1)
    dmin = jnp.where(valid, jnp.minimum(dmin, dist), -1.0)
    return dmin, idx.at[:, l].set(pick), taken.at[:, l].set(far > tol)

  _, idx, taken = jax.lax.fori_loop(0, rank, body, (dmin, idx, taken))
  return idx, taken


def sketch(points: jax.Array, width: int = SKETCH_WIDTH) -> jax.Array:
  """A fixed random projection [B, N, F] -> [B, N, width] for landmark selection (no
  gradient): equal keys stay equal, distinct ones stay distinct (almost surely), and the
  r passes of farthest-point sampling read `width` numbers a key instead of F."""
  f = points.shape[-1]
  if f <= width:
    return points
  proj = np.random.default_rng(0).normal(size=(f, width)) / np.sqrt(width)
  return jax.lax.stop_gradient(points.astype(jnp.float32)) @ jnp.asarray(proj, jnp.float32)


def summarize(k: jax.Array, v: jax.Array, key_valid: jax.Array, rank: int,
              rtol: float = RTOL) -> Summary:
  """The O(N r (r + D)) half: landmarks of k [B, N, H, D] and the sums of v [B, N, H, Dv].

  Keys stay on the leading axes ([B, N, H, r] products): on CPU the same contraction laid
  out [B, H, r, N] ran 5x slower.
  """
  b, n, h, d = k.shape
  tau = d ** -0.5
  idx, taken = farthest_point_landmarks(sketch(k.reshape(b, n, h * d)), key_valid, rank)
  kf, vf = k.astype(jnp.float32), v.astype(jnp.float32)
  k_j = jnp.take_along_axis(kf, idx[:, :, None, None], axis=1)                 # [B, r, H, D]
  half_sq = 0.5 * tau * jnp.sum(kf * kf, -1)                                   # [B, N, H]
  half_sq_j = jnp.take_along_axis(half_sq, idx[:, :, None], axis=1)            # [B, r, H]
  top = jax.lax.stop_gradient(jnp.max(jnp.where(key_valid[..., None], half_sq, NEG_INF),
                                      axis=1, keepdims=True))                 # [B, 1, H]
  # exp of a finite argument only: a masked inf would turn the where's zero gradient to NaN.
  weight = jnp.exp(jnp.where(key_valid[..., None], half_sq - top, NEG_INF))    # [B, N, H]
  sq_j = half_sq_j.transpose(0, 2, 1)                                          # [B, H, r]
  p = jnp.exp(tau * jnp.einsum("bnhd,brhd->bnhr", kf, k_j) - sq_j[:, None]
              - half_sq[..., None])                                            # [B, N, H, r]
  p = p * taken[:, None, None, :]
  w = jnp.exp(tau * jnp.einsum("brhd,bshd->bhrs", k_j, k_j) - sq_j[..., :, None]
              - sq_j[..., None, :])                                            # [B, H, r, r]
  both = taken[:, None, :, None] & taken[:, None, None, :]
  w = jnp.where(both, w, jnp.eye(rank, dtype=w.dtype))  # dropped landmarks: identity rows
  # Each key's coordinates on the landmarks, W^+ p_j: G's column (one 1) in the exact case,
  # so clipping them at 0 changes nothing there and keeps every weight a sum of positive
  # terms (a bounded average of values) outside it. W^+ is symmetric.
  assign = jnp.maximum(jnp.einsum("bnhs,bhrs->bnhr", p,
                                  jnp.linalg.pinv(w, rtol=rtol, hermitian=True)), 0.0)
  assign = assign * weight[..., None]
  return Summary(keys=k_j, offset=sq_j, valid=taken,
                 values=jnp.einsum("bnhr,bnhe->bhre", assign, vf),
                 mass=jnp.sum(assign, axis=1),
                 landmark_values=jnp.take_along_axis(vf, idx[:, :, None, None], axis=1))


def read(q: jax.Array, s: Summary) -> jax.Array:
  """The O(M r D) half: queries q [B, M, H, D] -> outputs [B, M, H, Dv] (f32)."""
  tau = q.shape[-1] ** -0.5
  scores = tau * jnp.einsum("bmhd,brhd->bhmr", q.astype(jnp.float32), s.keys)
  ok = s.valid[:, None, None, :]
  logits = jnp.where(ok, scores - s.offset[:, :, None, :], NEG_INF)
  c = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True)) * ok
  num = jnp.einsum("bhmr,bhre->bmhe", c, s.values)
  den = jnp.einsum("bhmr,bhr->bmh", c, s.mass)[..., None]
  fallback = jnp.einsum("bhmr,brhe->bmhe",
                        jax.nn.softmax(jnp.where(ok, scores, NEG_INF), axis=-1),
                        s.landmark_values)
  out = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), fallback)
  return jnp.where(jnp.any(s.valid, axis=1)[:, None, None, None], out, 0.0)


def svd_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_valid: jax.Array,
                  rank: int, rtol: float = RTOL) -> jax.Array:
  """Softmax attention of q [B, M, H, D] over k, v [B, N, H, *] at rank r (no mask but
  key_valid [B, N]); exact when the valid keys take at most `rank` distinct values."""
  return read(q, summarize(k, v, key_valid, rank, rtol))


def reference_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                        key_valid: jax.Array) -> jax.Array:
  """Full softmax attention over the valid keys (the pure-jnp reference); zeros if none."""
  tau = q.shape[-1] ** -0.5
  logits = tau * jnp.einsum("bmhd,bnhd->bhmn", q.astype(jnp.float32), k.astype(jnp.float32))
  logits = jnp.where(key_valid[:, None, None, :], logits, NEG_INF)
  out = jnp.einsum("bhmn,bnhe->bmhe", jax.nn.softmax(logits, axis=-1), v.astype(jnp.float32))
  return jnp.where(jnp.any(key_valid, axis=1)[:, None, None, None], out, 0.0)
