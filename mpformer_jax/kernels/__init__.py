"""Pallas kernels with pure-jnp references and a backend dispatcher (DESIGN.md 2.8).

The kernel function itself stays at `kernels.compress_attention.compress_attention`
so that `kernels.compress_attention` keeps naming the module.
"""
from mpformer_jax.kernels.compress_attention import BlockSizes
from mpformer_jax.kernels.compress_attention import compress_attention_reference
from mpformer_jax.kernels.compress_attention import group_ids_from_schedule
from mpformer_jax.kernels.dispatch import compress_attention_op

__all__ = [
    "BlockSizes",
    "compress_attention_op",
    "compress_attention_reference",
    "group_ids_from_schedule",
]
