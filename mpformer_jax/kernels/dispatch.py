"""Picks the Pallas kernel or the pure-jnp reference per backend (DESIGN.md 2.8)."""
from __future__ import annotations

import jax

from mpformer_jax.kernels.compress_attention import BlockSizes
from mpformer_jax.kernels.compress_attention import compress_attention
from mpformer_jax.kernels.compress_attention import compress_attention_reference

IMPLS = ("auto", "xla", "pallas")
_ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")


def compress_attention_op(q, k, v, group_ids, valid, *, impl: str = "auto",
                          block_sizes: BlockSizes | None = None) -> jax.Array:
  """Grouped attention + masked mean, [B,T,H,D] -> [B,G,H,D].

  impl: "auto" runs Pallas on GPU/TPU and the reference elsewhere (Pallas on
  CPU only interprets, which is slow); "xla" always runs the reference;
  "pallas" always runs the kernel, interpreted when the backend is CPU.
  """
  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
  backend = jax.default_backend()
  if impl == "xla" or (impl == "auto" and backend not in _ACCELERATORS):
    return compress_attention_reference(q, k, v, group_ids, valid)
  return compress_attention(q, k, v, group_ids, valid, block_sizes=block_sizes,
                            interpret=backend == "cpu")
