"""Llama-style building blocks (DESIGN 2.4): RMSNorm, RoPE, masked attention, SwiGLU
(and SASRec's LayerNorm and ReLU FFN, for its baseline).

Params carry logical axis names (MaxText style) so `parallel/` can shard them by rules kept
in the config; on one device the names are inert.
"""
from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpformer_jax.model.frequency import FrequencyFilter
# DenseGeneral kernels under a mesh (flax #3676); see parallel/logical.py.
from mpformer_jax.parallel.logical import with_logical_partitioning as nd_logical_partitioning

Dtype = jnp.dtype
NEG_INF = -1e30  # finite mask value: keeps softmax NaN-free even on fully masked rows


def dense(features: int, axes: tuple[str, str], name: str, dtype=jnp.float32,
          use_bias: bool = False, init=nn.initializers.lecun_normal()) -> nn.Dense:
  """A Dense layer whose kernel is annotated with logical axis names."""
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, name=name,
                  kernel_init=nn.with_logical_partitioning(init, axes))


class RMSNorm(nn.Module):
  """Root-mean-square layer norm without bias (Llama)."""
  eps: float = 1e-6
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                       (x.shape[-1],), jnp.float32)
    xf = x.astype(jnp.float32)
    y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return (y * scale).astype(self.dtype)


# SASRec's layer norm (scale and bias; flax reduces in f32), its params annotated like RMSNorm's.
LayerNorm = functools.partial(
    nn.LayerNorm, epsilon=1e-6,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))

NORMS = {"rms": RMSNorm, "layer": LayerNorm}


def rope(x: jax.Array, positions: jax.Array, base: float = 10_000.0) -> jax.Array:
  """Rotary position embedding on x [..., S, H, D] with integer positions [..., S]."""
  d = x.shape[-1]
  if d % 2:
    raise ValueError(f"RoPE needs an even head dim, got {d}")
  freqs = base ** (-jnp.arange(0, d // 2, dtype=jnp.float32) * 2.0 / d)
  angles = positions.astype(jnp.float32)[..., None] * freqs  # [..., S, D/2]
  sin, cos = jnp.sin(angles)[..., None, :], jnp.cos(angles)[..., None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
  return out.astype(x.dtype)


def attention_weights(q: jax.Array, k: jax.Array, mask: jax.Array,
                      bias: jax.Array | None = None) -> jax.Array:
  """Softmax attention probabilities [B, H, Sq, Sk] in f32 (the pure-jnp reference path)."""
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
  if bias is not None:
    logits = logits + bias
  logits = jnp.where(mask, logits, NEG_INF)
  return jax.nn.softmax(logits, axis=-1)


class QKV(nn.Module):
  """Per-head query, key and value projections: x [B, S, d] -> 3 x [B, S, H, D]."""
  num_heads: int
  head_dim: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    def proj(name):
      return nn.DenseGeneral((self.num_heads, self.head_dim), use_bias=False, dtype=self.dtype,
                             name=name, kernel_init=nd_logical_partitioning(
                                 nn.initializers.lecun_normal(), ("embed", "heads", "kv")))(x)
    return proj("query"), proj("key"), proj("value")


class OutProj(nn.Module):
  """Merge heads: [..., H, D] -> [..., d]."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.DenseGeneral(self.features, axis=(-2, -1), use_bias=False, dtype=self.dtype,
                           name="out", kernel_init=nd_logical_partitioning(
                               nn.initializers.lecun_normal(), ("heads", "kv", "embed")))(x)


class Attention(nn.Module):
  """Multi-head self-attention with RoPE, a boolean mask and an optional additive bias.

  `rope=False`: no rotation (the positions then come from a learned table on the input).
  """
  num_heads: int
  dtype: Dtype = jnp.float32
  rope: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, positions: jax.Array,
               bias: jax.Array | None = None) -> jax.Array:
    d = x.shape[-1]
    if d % self.num_heads:
      raise ValueError(f"d_model {d} is not divisible by num_heads {self.num_heads}")
    q, k, v = QKV(self.num_heads, d // self.num_heads, self.dtype, name="qkv")(x)
    if self.rope:
      q, k = rope(q, positions), rope(k, positions)
    probs = attention_weights(q, k, mask, bias)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
    return OutProj(d, self.dtype, name="proj")(out)


class SwiGLU(nn.Module):
  """Gated SiLU feed-forward network without biases."""
  hidden: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = x.shape[-1]
    gate = dense(self.hidden, ("embed", "mlp"), "gate", self.dtype)(x)
    up = dense(self.hidden, ("embed", "mlp"), "up", self.dtype)(x)
    return dense(d, ("mlp", "embed"), "down", self.dtype)(nn.silu(gate) * up)


class ReluFFN(nn.Module):
  """SASRec's point-wise feed-forward network: Dense(hidden) with bias, ReLU, Dense(d) with
  bias (its two 1x1 convolutions)."""
  hidden: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = dense(self.hidden, ("embed", "mlp"), "up", self.dtype, use_bias=True)(x)
    return dense(x.shape[-1], ("mlp", "embed"), "down", self.dtype, use_bias=True)(nn.relu(h))


FFNS = {"swiglu": SwiGLU, "relu": ReluFFN}


class Block(nn.Module):
  """Pre-norm transformer block: x + Attn(norm x), then + gate * FFN(norm x).

  `ffn_gate` (optional, [B, 1, d] or broadcastable) scales the FFN output; MPFormer's
  PEPNet-style user gate plugs in here. `dropout` acts on both residual branches, and only
  when the caller supplies a "dropout" rng (training); evaluation passes none.
  `freq_mix` > 0 (BSARec, model/frequency.py): on the rows where `seq_valid` is True the
  attention branch becomes freq_mix * filter(norm x) + (1 - freq_mix) * Attn(norm x).
  `ffn` names the feed-forward network: "swiglu" (ours) or "relu" (SASRec's); `norm` the
  normalisation: "rms" (ours) or "layer" (SASRec's).
  """
  num_heads: int
  mlp_hidden: int
  dtype: Dtype = jnp.float32
  dropout: float = 0.0
  freq_mix: float = 0.0
  freq_window: int = 1
  rope: bool = True
  ffn: str = "swiglu"
  norm: str = "rms"

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, positions: jax.Array,
               bias: jax.Array | None = None,
               ffn_gate: jax.Array | None = None,
               seq_valid: jax.Array | None = None) -> jax.Array:
    drop = Dropout(self.dropout)
    norm = NORMS[self.norm]
    h = norm(dtype=self.dtype, name="attn_norm")(x)
    a = Attention(self.num_heads, self.dtype, self.rope, name="attn")(h, mask, positions, bias)
    if self.freq_mix:
      if seq_valid is None:
        raise ValueError("Block(freq_mix > 0) needs seq_valid: the history tokens to filter")
      f = FrequencyFilter(self.freq_window, name="freq")(h, seq_valid)
      a = jnp.where(seq_valid[..., None], self.freq_mix * f + (1 - self.freq_mix) * a, a)
    x = x + drop(a)
    h = FFNS[self.ffn](self.mlp_hidden, self.dtype, name="ffn")(norm(dtype=self.dtype,
                                                                     name="ffn_norm")(x))
    if ffn_gate is not None:
      h = h * ffn_gate
    x = x + drop(h)
    return nn.with_logical_constraint(x, ("batch", "seq", "embed"))


class Dropout(nn.Module):
  """Inverted dropout that is on exactly when a "dropout" rng is given to `apply`.

  Training passes `rngs={"dropout": key}`; evaluation, export and serving pass none and
  get the deterministic model without a `train` flag threaded through every call.
  """
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Dropout(self.rate)(x, deterministic=not self.has_rng("dropout"))


class MLP(nn.Module):
  """Two-layer SiLU MLP (the token and item MLPs of DESIGN 2.2 and 2.6)."""
  hidden: int
  out: int
  dtype: Dtype = jnp.float32
  activation: Callable[[jax.Array], jax.Array] = nn.silu

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.activation(dense(self.hidden, ("embed", "mlp"), "fc1", self.dtype, True)(x))
    return dense(self.out, ("mlp", "embed"), "fc2", self.dtype, True)(x)
