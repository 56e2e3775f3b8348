"""Grouped (compressed-item) attention with a fused masked mean (DESIGN.md 2.3, 2.8).

Each group of the compressed prefix attends bidirectionally over its own valid
positions; the per-position outputs are then averaged over the group's valid
queries, so the kernel emits one token per group.

Multi-window layout (one launch for all windows): groups are packed, in order,
into fixed-width "blocks" of `Wb = max(next_pow2(largest window), min_block)`
positions; a group never straddles a block and small groups share one
(e.g. four windows of 16 in a 64 block). The static packing is derived from
`group_ids` in numpy and applied with one gather (or a plain pad when the
packing is the identity, as for `((64, 2), (16, 5))`). One `pallas_call` runs
over the grid `(batch, block, head)`; inside a program a flash-style loop over
query/key tiles masks by local group id and skips key tiles that share no group
with the query tile, so only tiles near the block diagonal are computed.
The backward recomputes probabilities from the saved log-sum-exp (FA2 style):
one pass for dK/dV and one for dQ, both in the same kernel since a program owns
every group it touches.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Sequence

import jax
from jax import lax
from jax.experimental import pallas as pl
import jax.numpy as jnp
import numpy as np

MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)
_PAD = 1 << 30  # Local group id of packing slots that hold no position.
_SUPPORTED = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
_HI = lax.Precision.HIGHEST  # IEEE f32 on Triton (DEFAULT would be TF32).


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Tile sizes (powers of two) for the kernel; hashable so it can be static."""
  block_q: int = 64        # Query tile of the forward pass.
  block_k: int = 64        # Key tile of the forward pass.
  block_q_bwd: int = 32    # Query tile of the backward pass.
  block_k_bwd: int = 32    # Key tile of the backward pass.
  min_block: int = 64      # Smallest packing width (tensor-core friendly).
  skip_empty_tiles: bool = True  # Loop only over tiles sharing a group.
  num_warps: int | None = 4      # Triton only.
  num_stages: int | None = 2     # Triton only.

  def __post_init__(self):
    for name in ("block_q", "block_k", "block_q_bwd", "block_k_bwd",
                 "min_block"):
      val = getattr(self, name)
      if not isinstance(val, int) or val < 1 or val & (val - 1):
        raise ValueError(f"BlockSizes.{name} must be a power of two, got {val!r}")

  @classmethod
  def get_default(cls, backend: str | None = None) -> "BlockSizes":
    """Defaults per backend (`jax.default_backend()` when not given)."""
    backend = backend or jax.default_backend()
    if backend == "tpu":  # Mosaic: lane-width tiles, static tile loops.
      return cls(128, 128, 128, 128, 128, skip_empty_tiles=False,
                 num_warps=None, num_stages=None)
    if backend == "cpu":  # Interpret mode: small tiles keep it quick.
      return cls(32, 32, 32, 32, 16, num_warps=None, num_stages=None)
    return cls()


def _next_pow2(x: int) -> int:
  return 1 << max(int(x) - 1, 0).bit_length()


_ARR = dict(compare=False, repr=False)  # Arrays: excluded from hash/eq.


@dataclasses.dataclass(frozen=True)
class _Plan:
  """Static packing of groups into blocks; hashed by `key` and sizes only."""
  key: tuple
  num_positions: int
  num_groups: int
  wb: int                 # Block width (positions).
  gp: int                 # Group slots per block.
  nb: int                 # Number of blocks.
  identity: bool          # Packing == pad at the end.
  src_idx: np.ndarray = dataclasses.field(**_ARR)     # [nb*wb] source, T=empty.
  seg: np.ndarray = dataclasses.field(**_ARR)         # [nb*wb] local id/_PAD.
  pos_group: np.ndarray = dataclasses.field(**_ARR)   # [nb*wb] group, G=empty.
  inv_idx: np.ndarray = dataclasses.field(**_ARR)     # [T] packed position.
  group_slot: np.ndarray = dataclasses.field(**_ARR)  # [G] slot in [nb*gp].


def _runs(sizes: np.ndarray) -> tuple:
  """((start, window, num_groups), ...) of consecutive equal-size groups."""
  runs, start = [], 0
  for w, grp in itertools.groupby(sizes.tolist()):
    n = len(list(grp))
    runs.append((start, w, n))
    start += w * n
  return tuple(runs)


@functools.lru_cache(maxsize=64)
def _make_plan(ids_bytes: bytes, num_positions: int, min_block: int) -> _Plan:
  sizes = np.bincount(np.frombuffer(ids_bytes, dtype=np.int64))
  num_groups, starts = len(sizes), np.cumsum(sizes) - sizes
  wb = max(_next_pow2(sizes.max()), min_block)
  place, fill, blk, loc = [], wb, -1, 0  # place: (block, offset, local).
  for size in sizes:  # Greedy, in order: a group never straddles blocks.
    if fill + size > wb:
      fill, blk, loc = 0, blk + 1, 0
    place.append((blk, fill, loc))
    fill, loc = fill + size, loc + 1
  nb = blk + 1
  gp = max(16, _next_pow2(1 + max(p[2] for p in place)))
  src_idx = np.full(nb * wb, num_positions, np.int32)
  seg = np.full(nb * wb, _PAD, np.int32)
  pos_group = np.full(nb * wb, num_groups, np.int32)
  inv_idx = np.zeros(num_positions, np.int32)
  for g, ((b, off, lc), size) in enumerate(zip(place, sizes)):
    p0 = b * wb + off
    src_idx[p0:p0 + size] = starts[g] + np.arange(size)
    inv_idx[starts[g]:starts[g] + size] = p0 + np.arange(size)
    seg[p0:p0 + size], pos_group[p0:p0 + size] = lc, g
  group_slot = np.asarray([b * gp + lc for b, _, lc in place], np.int32)
  identity = bool(np.array_equal(src_idx[:num_positions],
                                 np.arange(num_positions)))
  return _Plan((ids_bytes, min_block), num_positions, num_groups, wb, gp, nb,
               identity, src_idx, seg, pos_group, inv_idx, group_slot)


def group_ids_from_schedule(schedule: Sequence[tuple[int, int]],
                            max_len: int) -> np.ndarray:
  """Group id per compressed position for an oldest-first `((window, n), ...)`."""
  sizes = []
  for window, num in schedule:
    window, num = int(window), int(num)
    if window < 1:
      raise ValueError(f"window must be >= 1, got {window} in {schedule!r}")
    if num < 0:
      raise ValueError(f"num_groups must be >= 0, got {num} in {schedule!r}")
    sizes += [window] * num
  if sum(sizes) > max_len:
    raise ValueError(f"schedule {schedule!r} covers {sum(sizes)} positions, "
                     f"more than max_len={max_len}")
  return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


def _check_inputs(q, k, v, group_ids, valid) -> np.ndarray:
  """Raises ValueError on malformed inputs; returns group_ids as int64 numpy."""
  if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
    raise ValueError(f"q, k, v must share a [B, T, H, D] shape, got "
                     f"{q.shape}, {k.shape}, {v.shape}")
  dtypes = {jnp.dtype(x.dtype) for x in (q, k, v)}
  if len(dtypes) != 1 or dtypes.pop() not in _SUPPORTED:
    raise ValueError(f"q, k, v must all be float32 or bfloat16, got "
                     f"{q.dtype}, {k.dtype}, {v.dtype}")
  batch, length = q.shape[:2]
  if tuple(valid.shape) != (batch, length):
    raise ValueError(f"valid must be [B, T]={(batch, length)}, got {valid.shape}")
  if not (jnp.issubdtype(valid.dtype, jnp.bool_)
          or jnp.issubdtype(valid.dtype, jnp.integer)):
    raise ValueError(f"valid must be bool (or integer), got {valid.dtype}")
  try:
    ids = np.asarray(group_ids)
  except (jax.errors.TracerArrayConversionError,
          jax.errors.ConcretizationTypeError) as e:
    raise ValueError("group_ids must be static (numpy), not traced") from e
  if ids.ndim != 1 or ids.shape[0] != length:
    raise ValueError(f"group_ids must be [T]=[{length}], got shape {ids.shape}")
  if length and not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"group_ids must be integers, got {ids.dtype}")
  ids = ids.astype(np.int64)
  if length and (ids[0] != 0 or np.any((np.diff(ids) != 0) & (np.diff(ids) != 1))):
    raise ValueError("group_ids must be non-decreasing contiguous groups "
                     "numbered 0..G-1 (steps of 0 or 1, starting at 0)")
  return ids


def compress_attention_reference(q, k, v, group_ids, valid) -> jax.Array:
  """Per-run dense attention + masked mean; exact semantics the kernel matches."""
  ids = _check_inputs(q, k, v, group_ids, valid)
  batch, length, heads, dim = q.shape
  if length == 0:
    return jnp.zeros((batch, 0, heads, dim), q.dtype)
  scale = 1.0 / math.sqrt(dim)
  valid = valid.astype(bool)
  outs = []
  for start, w, n in _runs(np.bincount(ids)):
    sl = slice(start, start + w * n)
    qr, kr, vr = (x[:, sl].reshape(batch, n, w, heads, dim).astype(jnp.float32)
                  for x in (q, k, v))
    mask = valid[:, sl].reshape(batch, n, w)
    s = jnp.einsum("bnqhd,bnkhd->bnhqk", qr, kr, precision=_HI) * scale
    kmask = mask[:, :, None, None, :]
    s = jnp.where(kmask, s, MASK_VALUE)
    m = lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
    e = jnp.where(kmask, jnp.exp(s - m), 0.0)
    denom = jnp.sum(e, axis=-1, keepdims=True)
    p = e / jnp.where(denom > 0, denom, 1.0)
    o = jnp.einsum("bnhqk,bnkhd->bnqhd", p, vr, precision=_HI)
    count = jnp.sum(mask, axis=-1, keepdims=True).astype(jnp.float32)
    wq = mask.astype(jnp.float32) / jnp.maximum(count, 1.0)
    outs.append(jnp.einsum("bnq,bnqhd->bnhd", wq, o, precision=_HI))
  return jnp.concatenate(outs, axis=1).astype(q.dtype)


def _dot(a, b, ca: int = 1, cb: int = 0):
  return lax.dot_general(a, b, (((ca,), (cb,)), ((), ())), precision=_HI,
                         preferred_element_type=jnp.float32)


def _tile_range(seg_tile, seg_all, tile: int, skip: bool):
  """[lo, hi) tiles of size `tile` holding the groups present in `seg_tile`."""
  if not skip:
    return 0, seg_all.shape[0] // tile
  g_lo, g_hi = jnp.min(seg_tile), jnp.max(seg_tile)
  start = jnp.sum((seg_all < g_lo).astype(jnp.int32))
  end = jnp.sum((seg_all <= g_hi).astype(jnp.int32))
  end = jnp.where(g_lo >= _PAD, start, end)  # Tile of empty slots only.
  return lax.div(start, tile), lax.div(end + tile - 1, tile)


def _fwd_kernel(seg_ref, w_ref, q_ref, k_ref, v_ref, out_ref, *res_refs,
                scale, bq, bk, gp, skip):
  wb, dp = q_ref.shape
  seg_all = seg_ref[...]

  def q_tile(qi, pooled):
    qs = pl.multiple_of(qi * bq, bq)
    q = q_ref[pl.ds(qs, bq), :]
    seg_q = seg_ref[pl.ds(qs, bq)]
    lo, hi = _tile_range(seg_q, seg_all, bk, skip)

    def k_tile(kj, carry):
      m, l, acc = carry
      ks = pl.multiple_of(kj * bk, bk)
      v = v_ref[pl.ds(ks, bk), :]
      mask = ((seg_q[:, None] == seg_ref[pl.ds(ks, bk)][None, :])
              & (w_ref[pl.ds(ks, bk)][None, :] > 0))
      s = jnp.where(mask, _dot(q, k_ref[pl.ds(ks, bk), :], 1, 1) * scale,
                    MASK_VALUE)
      m_new = jnp.maximum(m, jnp.max(s, axis=1))
      p = jnp.where(mask, jnp.exp(s - m_new[:, None]), 0.0)
      alpha = jnp.exp(m - m_new)
      l = alpha * l + jnp.sum(p, axis=1)
      acc = alpha[:, None] * acc + _dot(p.astype(v.dtype), v)
      return m_new, l, acc

    init = (jnp.full((bq,), MASK_VALUE, jnp.float32),
            jnp.zeros((bq,), jnp.float32), jnp.zeros((bq, dp), jnp.float32))
    m, l, acc = lax.fori_loop(lo, hi, k_tile, init)
    has = l > 0
    l_safe = jnp.where(has, l, 1.0)
    o = acc / l_safe[:, None]
    if res_refs:
      lse_ref, o_ref = res_refs
      lse_ref[pl.ds(qs, bq)] = jnp.where(has, m + jnp.log(l_safe), 0.0)
      o_ref[pl.ds(qs, bq), :] = o.astype(o_ref.dtype)
    onehot = (lax.broadcasted_iota(jnp.int32, (gp, bq), 0)
              == seg_q[None, :]).astype(jnp.float32)
    return pooled + _dot(onehot, o * w_ref[pl.ds(qs, bq)][:, None])

  pooled = lax.fori_loop(0, wb // bq, q_tile, jnp.zeros((gp, dp), jnp.float32))
  out_ref[...] = pooled.astype(out_ref.dtype)


def _bwd_kernel(seg_ref, w_ref, q_ref, k_ref, v_ref, do_ref, lse_ref,
                delta_ref, dq_ref, dk_ref, dv_ref, *, scale, bq, bk, skip):
  wb, dp = q_ref.shape
  dtype = q_ref.dtype
  seg_all = seg_ref[...]

  def probs(qs, ks, q, k):
    """Recomputed probabilities [bq, bk] of query tile qs vs key tile ks."""
    mask = ((seg_ref[pl.ds(qs, bq)][:, None] == seg_ref[pl.ds(ks, bk)][None, :])
            & (w_ref[pl.ds(ks, bk)][None, :] > 0))
    s = jnp.where(mask, _dot(q, k, 1, 1) * scale, MASK_VALUE)
    return jnp.where(mask, jnp.exp(s - lse_ref[pl.ds(qs, bq)][:, None]), 0.0)

  def k_tile(kj, c):  # Pass 1: dK, dV for one key tile.
    ks = pl.multiple_of(kj * bk, bk)
    k, v = k_ref[pl.ds(ks, bk), :], v_ref[pl.ds(ks, bk), :]
    lo, hi = _tile_range(seg_ref[pl.ds(ks, bk)], seg_all, bq, skip)

    def q_tile(qi, carry):
      dk, dv = carry
      qs = pl.multiple_of(qi * bq, bq)
      q, do = q_ref[pl.ds(qs, bq), :], do_ref[pl.ds(qs, bq), :]
      p = probs(qs, ks, q, k)
      dv = dv + _dot(p.astype(dtype), do, 0, 0)
      ds = p * (_dot(do, v, 1, 1) - delta_ref[pl.ds(qs, bq)][:, None])
      dk = dk + _dot(ds.astype(dtype), q, 0, 0)
      return dk, dv

    zeros = jnp.zeros((bk, dp), jnp.float32)
    dk, dv = lax.fori_loop(lo, hi, q_tile, (zeros, zeros))
    dk_ref[pl.ds(ks, bk), :] = (dk * scale).astype(dk_ref.dtype)
    dv_ref[pl.ds(ks, bk), :] = dv.astype(dv_ref.dtype)
    return c

  def q_tile2(qi, c):  # Pass 2: dQ for one query tile.
    qs = pl.multiple_of(qi * bq, bq)
    q, do = q_ref[pl.ds(qs, bq), :], do_ref[pl.ds(qs, bq), :]
    delta = delta_ref[pl.ds(qs, bq)]
    lo, hi = _tile_range(seg_ref[pl.ds(qs, bq)], seg_all, bk, skip)

    def k_tile2(kj, dq):
      ks = pl.multiple_of(kj * bk, bk)
      k, v = k_ref[pl.ds(ks, bk), :], v_ref[pl.ds(ks, bk), :]
      p = probs(qs, ks, q, k)
      ds = p * (_dot(do, v, 1, 1) - delta[:, None])
      return dq + _dot(ds.astype(dtype), k)

    dq = lax.fori_loop(lo, hi, k_tile2, jnp.zeros((bq, dp), jnp.float32))
    dq_ref[pl.ds(qs, bq), :] = (dq * scale).astype(dq_ref.dtype)
    return c

  lax.fori_loop(0, wb // bk, k_tile, 0)
  lax.fori_loop(0, wb // bq, q_tile2, 0)


@dataclasses.dataclass(frozen=True)
class _Config:
  plan: _Plan
  block_sizes: BlockSizes
  interpret: bool
  head_dim: int


def _call(cfg: _Config, kernel, grid, in_specs, out_specs, out_shape, name,
          *args):
  params, bs = None, cfg.block_sizes
  if not cfg.interpret and jax.default_backend() != "tpu":
    # Force Triton: jax 0.10+ defaults GPU pallas_call to Mosaic GPU.
    from jax.experimental.pallas import triton as pltriton
    params = pltriton.CompilerParams(num_warps=bs.num_warps,
                                     num_stages=bs.num_stages)
  return pl.pallas_call(kernel, out_shape=out_shape, grid=grid,
                        in_specs=in_specs, out_specs=out_specs,
                        interpret=cfg.interpret, compiler_params=params,
                        name=name)(*args)


def _specs(plan: _Plan, dp: int):
  wb = plan.wb
  return dict(
      seg=pl.BlockSpec((wb,), lambda b, n, h: (n,)),
      w=pl.BlockSpec((None, wb), lambda b, n, h: (b, n)),
      x=pl.BlockSpec((None, wb, None, dp), lambda b, n, h: (b, n, h, 0)),
      row=pl.BlockSpec((None, None, wb), lambda b, n, h: (b, h, n)),
      out=pl.BlockSpec((None, plan.gp, None, dp), lambda b, n, h: (b, n, h, 0)))


def _to_blocks(plan: _Plan, x):
  """[B, T, ...] -> packed [B, nb*wb, ...] (zeros in empty slots)."""
  if plan.identity:
    pad = [(0, 0)] * x.ndim
    pad[1] = (0, plan.nb * plan.wb - plan.num_positions)
    return jnp.pad(x, pad)
  return jnp.take(x, jnp.asarray(plan.src_idx), axis=1, mode="fill",
                  fill_value=0)


def _from_blocks(plan: _Plan, x, head_dim: int):
  x = x[..., :head_dim]
  if plan.identity:
    return x[:, :plan.num_positions]
  return jnp.take(x, jnp.asarray(plan.inv_idx), axis=1)


def _forward(cfg: _Config, q, k, v, valid, residuals: bool):
  plan, bs = cfg.plan, cfg.block_sizes
  batch, _, heads, dim = q.shape
  dp = max(16, _next_pow2(dim))
  valid = valid.astype(bool)
  ids = jnp.asarray(plan.pos_group[plan.inv_idx])  # Group of each position.
  counts = jax.ops.segment_sum(valid.T.astype(jnp.float32), ids,
                               plan.num_groups).T
  weight = valid.astype(jnp.float32) / jnp.maximum(counts, 1.0)[:, ids]
  pad_d = lambda x: jnp.pad(x, [(0, 0)] * 3 + [(0, dp - dim)])
  qb, kb, vb = (_to_blocks(plan, pad_d(x)) for x in (q, k, v))
  wblk = _to_blocks(plan, weight)
  sp, npos = _specs(plan, dp), plan.nb * plan.wb
  out_shape = [jax.ShapeDtypeStruct((batch, plan.nb * plan.gp, heads, dp),
                                    q.dtype)]
  out_specs = [sp["out"]]
  if residuals:
    out_shape += [jax.ShapeDtypeStruct((batch, heads, npos), jnp.float32),
                  jax.ShapeDtypeStruct((batch, npos, heads, dp), q.dtype)]
    out_specs += [sp["row"], sp["x"]]
  kernel = functools.partial(
      _fwd_kernel, scale=1.0 / math.sqrt(dim), bq=min(bs.block_q, plan.wb),
      bk=min(bs.block_k, plan.wb), gp=plan.gp, skip=bs.skip_empty_tiles)
  outs = _call(cfg, kernel, (batch, plan.nb, heads),
               [sp["seg"], sp["w"], sp["x"], sp["x"], sp["x"]], out_specs,
               out_shape, "compress_attention_fwd", jnp.asarray(plan.seg), wblk,
               qb, kb, vb)
  out = jnp.take(outs[0], jnp.asarray(plan.group_slot), axis=1)[..., :dim]
  res = (qb, kb, vb, wblk, outs[1], outs[2]) if residuals else None
  return out, res


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _compress(cfg: _Config, q, k, v, valid):
  return _forward(cfg, q, k, v, valid, residuals=False)[0]


_compress_fwd = functools.partial(_forward, residuals=True)


def _compress_bwd(cfg: _Config, res, g):
  plan, bs = cfg.plan, cfg.block_sizes
  qb, kb, vb, wblk, lse, o = res
  batch, npos, heads, dp = qb.shape
  dim = cfg.head_dim
  g = jnp.pad(g.astype(jnp.float32), [(0, 0)] * 3 + [(0, dp - dim)])
  do = jnp.take(g, jnp.asarray(plan.pos_group), axis=1, mode="fill",
                fill_value=0) * wblk[:, :, None, None]
  delta = jnp.sum(do * o.astype(jnp.float32), axis=-1).transpose(0, 2, 1)
  sp = _specs(plan, dp)
  kernel = functools.partial(
      _bwd_kernel, scale=1.0 / math.sqrt(dim),
      bq=min(bs.block_q_bwd, plan.wb), bk=min(bs.block_k_bwd, plan.wb),
      skip=bs.skip_empty_tiles)
  shape = jax.ShapeDtypeStruct(qb.shape, qb.dtype)
  grads = _call(cfg, kernel, (batch, plan.nb, heads),
                [sp["seg"], sp["w"], sp["x"], sp["x"], sp["x"], sp["x"],
                 sp["row"], sp["row"]], [sp["x"]] * 3, [shape] * 3,
                "compress_attention_bwd", jnp.asarray(plan.seg), wblk, qb, kb,
                vb, do.astype(qb.dtype), lse, delta)
  dq, dk, dv = (_from_blocks(plan, x, dim) for x in grads)
  return dq, dk, dv, None


_compress.defvjp(_compress_fwd, _compress_bwd)


def compress_attention(q, k, v, group_ids, valid, *,
                       block_sizes: BlockSizes | None = None,
                       interpret: bool = False) -> jax.Array:
  """Pallas grouped attention + masked mean: [B,T,H,D] -> [B,G,H,D].

  Args:
    q, k, v: [B, T, H, D] float32 or bfloat16, already projected per head.
    group_ids: static [T] ints, contiguous non-decreasing groups 0..G-1.
    valid: [B, T] bool padding mask.
    block_sizes: tile sizes; `BlockSizes.get_default()` when None.
    interpret: run the kernel in Pallas interpret mode (needed on CPU).
  """
  ids = _check_inputs(q, k, v, group_ids, valid)
  batch, length, heads, dim = q.shape
  if length == 0:
    return jnp.zeros((batch, 0, heads, dim), q.dtype)
  bs = block_sizes or BlockSizes.get_default()
  plan = _make_plan(ids.tobytes(), length, bs.min_block)
  return _compress(_Config(plan, bs, bool(interpret), dim), q, k, v, valid)
