"""Adaptive item compression (KuaiFormer, DESIGN 2.3).

The oldest part of the left-padded sequence is cut into fixed groups by a schedule
`((window, num_groups), ...)` (oldest first); each group becomes one token, the newest
`max_len - sum(window * num_groups)` items stay raw. Each window size has its own 1-layer
bidirectional group encoder. Two pooling variants:
  * pool="mean" [paper]: a full transformer block over the group, then a masked mean.
  * pool="attention" [ours]: mean-pool the attention sublayer's outputs, then apply the FFN
    once per group. The attention + mean is one fused kernel call for all windows
    (kernels/compress_attention.py) on accelerators.
  * pool="ffn" [ours]: no attention: the masked mean of the group's tokens, then a pre-norm
    SwiGLU FFN with residual once per group. Compression then costs little more than the
    token MLP over the longer history (the paper's "+10% compute for 4x length" regime on a
    small backbone, where a per-position group encoder would cost as much as the backbone).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mpformer_jax.model.layers import Block, OutProj, QKV, RMSNorm, SwiGLU, rope

Schedule = Sequence[tuple[int, int]]
POOLS = ("mean", "attention", "ffn")


def validate_schedule(schedule: Schedule, max_len: int) -> tuple[tuple[int, int], ...]:
  """Normalise a schedule to a tuple of (window, num_groups) and check it fits max_len."""
  out = []
  for entry in schedule:
    if len(entry) != 2:
      raise ValueError(f"compression.schedule entry {entry!r} must be (window, num_groups)")
    window, groups = int(entry[0]), int(entry[1])
    if window < 1 or groups < 1:
      raise ValueError(f"compression.schedule entry {entry!r}: window and num_groups must "
                       f"be >= 1")
    out.append((window, groups))
  covered = sum(w * g for w, g in out)
  if covered > max_len:
    raise ValueError(f"compression.schedule {tuple(out)} covers {covered} positions, more "
                     f"than max_len={max_len}")
  return tuple(out)


def schedule_group_ids(schedule: Schedule) -> np.ndarray:
  """Group index of every compressed position (the kernel's `group_ids`)."""
  sizes = [w for w, g in schedule for _ in range(g)]
  return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


def num_tokens(schedule: Schedule, max_len: int) -> int:
  """Item tokens the backbone sees: one per group plus the raw tail."""
  covered = sum(w * g for w, g in schedule)
  return sum(g for _, g in schedule) + max_len - covered


def masked_mean(x: jax.Array, valid: jax.Array, axis: int) -> jax.Array:
  """Mean of x over `axis` counting only valid entries; 0 where none is valid."""
  w = valid.astype(jnp.float32)
  total = jnp.sum(x.astype(jnp.float32) * jnp.expand_dims(w, -1), axis=axis)
  count = jnp.maximum(jnp.sum(w, axis=axis), 1.0)
  return (total / jnp.expand_dims(count, -1)).astype(x.dtype)


def _segments(schedule: Schedule):
  start = 0
  for window, groups in schedule:
    yield start, window, groups
    start += window * groups


class Compressor(nn.Module):
  """[B, L, d] tokens + [B, L] valid -> group tokens [B, G, d] (+ valid) and the raw tail."""
  schedule: tuple[tuple[int, int], ...]
  num_heads: int
  mlp_hidden: int
  pool: str = "mean"
  impl: str = "auto"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, valid: jax.Array):
    if not self.schedule:
      return None, None, x, valid
    if self.pool not in POOLS:
      raise ValueError(f"compression.pool must be one of {POOLS}, got {self.pool!r}")
    covered = sum(w * g for w, g in self.schedule)
    comp_x, comp_valid = x[:, :covered], valid[:, :covered]
    if self.pool == "mean":
      groups = self._mean_pool(comp_x, comp_valid)
    elif self.pool == "ffn":
      groups = self._ffn_pool(comp_x, comp_valid)
    else:
      groups = self._attention_pool(comp_x, comp_valid)
    b = x.shape[0]
    group_valid = jnp.concatenate(
        [comp_valid[:, s:s + w * g].reshape(b, g, w).any(-1) for s, w, g in _segments(
            self.schedule)], axis=1)
    return groups, group_valid, x[:, covered:], valid[:, covered:]

  def _mean_pool(self, x, valid):
    b, d = x.shape[0], x.shape[-1]
    blocks, outs = {}, []
    for start, window, groups in _segments(self.schedule):
      if window not in blocks:
        blocks[window] = Block(self.num_heads, self.mlp_hidden, self.dtype,
                               name=f"window_{window}")
      xs = x[:, start:start + window * groups].reshape(b * groups, window, d)
      vs = valid[:, start:start + window * groups].reshape(b * groups, window)
      mask = vs[:, None, None, :] | jnp.eye(window, dtype=bool)[None, None]
      pos = jnp.broadcast_to(jnp.arange(window), (b * groups, window))
      h = blocks[window](xs, mask, pos)
      outs.append(masked_mean(h, vs, axis=1).reshape(b, groups, d))
    return jnp.concatenate(outs, axis=1)

  def _ffn_pool(self, x, valid):
    b, d = x.shape[0], x.shape[-1]
    mods, outs = {}, []
    for start, window, groups in _segments(self.schedule):
      if window not in mods:
        mods[window] = (RMSNorm(dtype=self.dtype, name=f"window_{window}_ffn_norm"),
                        SwiGLU(self.mlp_hidden, self.dtype, name=f"window_{window}_ffn"))
      norm, ffn = mods[window]
      m = masked_mean(x[:, start:start + window * groups].reshape(b, groups, window, d),
                      valid[:, start:start + window * groups].reshape(b, groups, window), 2)
      outs.append(m + ffn(norm(m)))
    return jnp.concatenate(outs, axis=1)

  def _attention_pool(self, x, valid):
    from mpformer_jax.kernels.dispatch import compress_attention_op  # pylint: disable=g-import-not-at-top
    b, d = x.shape[0], x.shape[-1]
    if d % self.num_heads:
      raise ValueError(f"d_model {d} is not divisible by num_heads {self.num_heads}")
    head_dim = d // self.num_heads
    mods, qs, ks, vs = {}, [], [], []
    for start, window, groups in _segments(self.schedule):
      if window not in mods:
        mods[window] = (RMSNorm(dtype=self.dtype, name=f"window_{window}_attn_norm"),
                        QKV(self.num_heads, head_dim, self.dtype, name=f"window_{window}_qkv"),
                        OutProj(d, self.dtype, name=f"window_{window}_proj"),
                        RMSNorm(dtype=self.dtype, name=f"window_{window}_ffn_norm"),
                        SwiGLU(self.mlp_hidden, self.dtype, name=f"window_{window}_ffn"))
      norm, qkv = mods[window][:2]
      q, k, v = qkv(norm(x[:, start:start + window * groups]))
      pos = jnp.broadcast_to(jnp.tile(jnp.arange(window), groups), (b, window * groups))
      qs.append(rope(q, pos))
      ks.append(rope(k, pos))
      vs.append(v)
    pooled = compress_attention_op(
        jnp.concatenate(qs, 1), jnp.concatenate(ks, 1), jnp.concatenate(vs, 1),
        schedule_group_ids(self.schedule), valid, impl=self.impl)  # [B, G, H, D]
    outs, g0 = [], 0
    for start, window, groups in _segments(self.schedule):
      _, _, proj, ffn_norm, ffn = mods[window]
      seg_valid = valid[:, start:start + window * groups].reshape(b, groups, window)
      seg_x = x[:, start:start + window * groups].reshape(b, groups, window, d)
      # mean(x + Wo o) = mean(x) + Wo mean(o): the residual is exact, the FFN runs per group.
      m = masked_mean(seg_x, seg_valid, axis=2) + proj(pooled[:, g0:g0 + groups])
      outs.append(m + ffn(ffn_norm(m)))
      g0 += groups
    return jnp.concatenate(outs, axis=1)
