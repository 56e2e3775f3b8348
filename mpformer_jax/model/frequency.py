"""BSARec's beyond-self-attention inductive bias, made causal (Shin et al., AAAI 2024).

BSARec splits each block's input into a low-pass part (the lowest frequencies of a DFT
over the sequence) and the rest, re-weights the rest by a learned beta per channel and mixes
the result with self-attention: alpha * (low + beta * high) + (1 - alpha) * attention. Its
DFT sees the whole sequence, which is sound for its one loss at the last position but would
let every position see its own target under our next-item loss at every token. Ours keeps
the split and the mix and replaces the DFT low-pass by the mean of each position's newest
`window` valid tokens (itself included): a causal low-pass of about the same width (BSARec's
Beauty setting keeps 5 of 50 frequencies, periods of 10 tokens and more).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def causal_window_mean(x: jax.Array, valid: jax.Array, window: int) -> jax.Array:
  """Mean of the valid rows among positions t-window+1..t of x [B, N, d] (valid [B, N]);
  zero where none is valid. Sums run in float32 whatever x's dtype."""
  w = valid.astype(jnp.float32)[..., None]
  sums = jnp.cumsum(x.astype(jnp.float32) * w, axis=1)
  counts = jnp.cumsum(w, axis=1)

  def shifted(a):  # a[:, t - window], zero before the start
    return jnp.pad(a, ((0, 0), (window, 0), (0, 0)))[:, :a.shape[1]]

  mean = (sums - shifted(sums)) / jnp.maximum(counts - shifted(counts), 1.0)
  return mean.astype(x.dtype)


class FrequencyFilter(nn.Module):
  """low + beta * (x - low) with low the causal window mean and beta = sqrt_beta**2 per
  channel (BSARec's parametrisation and its standard-normal init)."""
  window: int

  @nn.compact
  def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
    sqrt_beta = self.param(
        "sqrt_beta", nn.with_logical_partitioning(nn.initializers.normal(1.0), ("embed",)),
        (x.shape[-1],), jnp.float32)
    low = causal_window_mean(x, valid, self.window)
    return low + (sqrt_beta * sqrt_beta).astype(x.dtype) * (x - low)
