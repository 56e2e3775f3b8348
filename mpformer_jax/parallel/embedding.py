"""Vocabulary-parallel embedding lookup (DESIGN 4).

The item-id table is row-sharded over the mesh axes its logical `vocab` axis maps to. Each
shard gathers the rows it holds (ids outside its range read row 0 and are zeroed) and a
`psum` over those axes adds the partial results, so no device ever holds the whole table,
not in the forward pass and not in the gradient (a scatter-add into the local shard).

The path is picked at trace time from the ambient mesh (`jax.set_mesh`) and logical-axis
rules (`nn.logical_axis_rules`): with no mesh, no rule for `vocab`, or a vocab axis of size 1
it is a plain `jnp.take`, so the model runs unchanged without any mesh.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P


def shard_map(f, mesh, in_specs, out_specs, manual_axes):
  """`jax.shard_map` manual over `manual_axes` only (the rest stay automatic).

  Uses `jax.shard_map` where it exists (jax >= 0.6.1, including 0.11) and the older
  `jax.experimental.shard_map` otherwise.
  """
  manual = frozenset(manual_axes)
  if hasattr(jax, "shard_map"):
    return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                         axis_names=manual)
  from jax.experimental.shard_map import shard_map as legacy  # pylint: disable=g-import-not-at-top
  return legacy(f, mesh, in_specs, out_specs, check_rep=False,
                auto=frozenset(mesh.axis_names) - manual)


def _ambient_mesh():
  """The mesh set by `jax.set_mesh` (abstract inside jit), or None."""
  get = getattr(jax.sharding, "get_abstract_mesh", None)
  mesh = get() if get is not None else None
  if mesh is None or getattr(mesh, "empty", False) or not mesh.axis_names:
    return None
  return mesh


def vocab_axes(mesh=None) -> tuple[str, ...]:
  """The mesh axes of size > 1 that the logical `vocab` axis maps to under the current rules."""
  mesh = _ambient_mesh() if mesh is None else mesh
  if mesh is None:
    return ()
  spec = nn.logical_to_mesh_axes(("vocab",))
  axes = spec[0] if len(spec) else None
  if axes is None:
    return ()
  axes = (axes,) if isinstance(axes, str) else tuple(axes)
  return tuple(a for a in axes if a in mesh.axis_names and mesh.shape[a] > 1)


def lookup(table: jax.Array, ids: jax.Array) -> jax.Array:
  """table[ids] with the table row-sharded over the vocab mesh axes: [V, D], [...] -> [..., D]."""
  mesh = _ambient_mesh()
  axes = vocab_axes(mesh)
  shards = math.prod(mesh.shape[a] for a in axes) if axes else 1
  if shards == 1 or table.shape[0] % shards:
    return jnp.take(table, ids, axis=0)

  def local(rows_block, ids_):
    n = rows_block.shape[0]
    local_ids = ids_ - jax.lax.axis_index(axes) * n
    mine = (local_ids >= 0) & (local_ids < n)
    rows = jnp.take(rows_block, jnp.where(mine, local_ids, 0), axis=0)
    rows = jnp.where(mine[..., None], rows, jnp.zeros((), rows.dtype))
    return jax.lax.psum(rows, axes)

  return shard_map(local, mesh, in_specs=(P(axes), P()), out_specs=P(),
                   manual_axes=axes)(table, ids)
