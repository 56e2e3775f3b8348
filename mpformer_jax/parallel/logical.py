"""`with_logical_partitioning` that also works for `nn.DenseGeneral` kernels under a mesh.

DenseGeneral initialises a flat 2-D kernel, unboxes it (applying the logical constraint),
then reshapes it to its N-D shape (flax issue #3676). With a mesh set, the N-name
constraint on the 2-D array fails, even in `apply`, which re-runs the initializer under
`jax.eval_shape` to check shapes. This box skips the constraint while the value's rank does
not match its names; params reach the model unboxed, so nothing else changes.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp


class RankCheckedPartitioned(nn.Partitioned):
  """A `nn.Partitioned` whose constraint applies only when rank and names agree."""

  def unbox(self, apply_constraint: bool = True) -> Any:
    if jnp.ndim(self.value) != len(self.names):
      return self.value
    return super().unbox(apply_constraint)


def with_logical_partitioning(fn: Callable[..., Any], names) -> Callable[..., Any]:
  """Drop-in for `nn.with_logical_partitioning` (no mesh / rules overrides)."""
  def wrapper(*args, **kwargs):
    return RankCheckedPartitioned(fn(*args, **kwargs), tuple(names))
  return wrapper
