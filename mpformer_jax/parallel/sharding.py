"""Shardings of the train state and batches, and jit under the mesh (DESIGN 4).

A `Layout` bundles the mesh and the logical-axis rules. State shardings come from the
logical names the params carry (`nn.with_logical_partitioning`), read off an abstract state
from `jax.eval_shape`, so nothing is materialised to find them. Calls and traces run inside
`layout.context()` (the mesh plus the rules), which is what turns on the activation
constraints and the vocabulary-parallel lookup.

Global in-batch negatives: the loss is written on global arrays and jitted by GSPMD, so
every row is scored against the *global* batch's targets; the compiled step all-gathers the
candidate embeddings [B, out] over `data` (seen in the HLO), and tests/parallel checks loss
and gradients against one device. logQ and accidental-hit masking are unchanged.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mpformer_jax.parallel import mesh as mesh_lib


def _fit(spec: P, shape: tuple[int, ...], mesh: Mesh, where: str) -> P:
  """Drop mesh axes from dims they do not divide (jit requires even shards), with a warning."""
  dims = list(spec) + [None] * (len(shape) - len(spec))
  out = []
  for dim, axes in zip(shape, dims):
    n = mesh_lib.axis_size(mesh, axes)
    if n > 1 and dim % n:
      logging.warning("%s: dim of size %d is not divisible by mesh axes %s (%d); replicating "
                      "it", where, dim, axes, n)
      axes = None
    out.append(axes)
  while out and out[-1] is None:
    out.pop()
  return P(*out)


@dataclasses.dataclass(frozen=True)
class Layout:
  """A mesh and the logical-axis rules that place params, batches and activations on it."""
  mesh: Mesh
  rules: mesh_lib.Rules

  @classmethod
  def from_config(cls, config, devices=None) -> "Layout":
    """From `config.mesh` and `config.parallel` (defaults: all devices on data, no FSDP)."""
    mesh_cfg = config.get("mesh", None) or {"data": -1, "model": 1}
    parallel_cfg = config.get("parallel", None) or {}
    return cls(mesh_lib.make_mesh(mesh_cfg, devices), mesh_lib.axis_rules(parallel_cfg))

  @contextlib.contextmanager
  def context(self):
    """Mesh + rules: activation constraints and the sharded lookup are active inside."""
    with _set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield

  def sharding(self, logical: P | tuple, shape: tuple[int, ...] | None = None,
               where: str = "array") -> NamedSharding:
    """The NamedSharding of an array with these logical axis names."""
    spec = nn.logical_to_mesh_axes(tuple(logical), self.rules)
    if shape is not None:
      spec = _fit(spec, shape, self.mesh, where)
    return NamedSharding(self.mesh, spec)

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  @property
  def batch_sharding(self) -> NamedSharding:
    """Leading (batch) dim over the data axes, the rest replicated."""
    return NamedSharding(self.mesh, P(mesh_lib.batch_axes(self.rules)))

  @property
  def data_size(self) -> int:
    return mesh_lib.axis_size(self.mesh, mesh_lib.batch_axes(self.rules))

  def check_batch_size(self, batch_size: int, what: str = "train.batch_size") -> None:
    mesh_lib.check_batch_size(batch_size, self.mesh, self.rules, what)

  def state_shardings(self, abstract_boxed: Any) -> Any:
    """Shardings for a pytree whose params (and optimizer moments) are still boxed.

    Leaves without logical names (step, RNG, counts) are replicated; a dim a mesh axis does
    not divide falls back to replicated for that dim.
    """
    specs = nn.get_partition_spec(abstract_boxed)
    unboxed = nn.meta.unbox(abstract_boxed)
    paths_shapes = jax.tree_util.tree_flatten_with_path(unboxed)[0]
    spec_leaves, treedef = jax.tree.flatten(specs, is_leaf=lambda x: isinstance(x, P))
    if len(spec_leaves) != len(paths_shapes):
      raise ValueError(f"state has {len(paths_shapes)} leaves but {len(spec_leaves)} specs")
    out = []
    for (path, leaf), logical in zip(paths_shapes, spec_leaves):
      where = jax.tree_util.keystr(path)
      out.append(self.sharding(logical, tuple(leaf.shape), where))
    return jax.tree.unflatten(treedef, out)

  def shard_batch(self, local_batch: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Global arrays from this process's rows (all rows on one host) of a batch."""
    sharding = self.batch_sharding
    n = jax.process_count()
    out = {}
    for k, v in local_batch.items():
      v = np.asarray(v)
      global_shape = (v.shape[0] * n,) + v.shape[1:]
      out[k] = jax.make_array_from_process_local_data(sharding, v, global_shape)
    return out

  def abstract_batch(self, batch: Mapping[str, Any]) -> dict[str, jax.ShapeDtypeStruct]:
    """ShapeDtypeStructs of a global batch carrying the batch sharding (for `.lower`)."""
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.batch_sharding)
            for k, v in batch.items()}

  def jit(self, fn: Callable, **jit_kwargs) -> "MeshJit":
    return MeshJit(jax.jit(fn, **jit_kwargs), self)


class MeshJit:
  """A jitted function that traces, lowers and runs inside its layout's context."""

  def __init__(self, jitted, layout: Layout | None):
    self._jitted, self._layout = jitted, layout

  def _ctx(self):
    return self._layout.context() if self._layout is not None else contextlib.nullcontext()

  def __call__(self, *args, **kwargs):
    with self._ctx():
      return self._jitted(*args, **kwargs)

  def lower(self, *args, **kwargs):
    with self._ctx():
      return self._jitted.lower(*args, **kwargs)


def in_context(layout: Layout | None, fn: Callable) -> Callable:
  """`fn` called inside the layout's context (identity when `layout` is None)."""
  if layout is None:
    return fn

  def wrapped(*args, **kwargs):
    with layout.context():
      return fn(*args, **kwargs)
  return wrapped


def _set_mesh(mesh: Mesh):
  """`jax.set_mesh` (jax >= 0.7) or the older `jax.sharding.use_mesh` / `with mesh`."""
  if hasattr(jax, "set_mesh"):
    return jax.set_mesh(mesh)
  if hasattr(jax.sharding, "use_mesh"):
    return jax.sharding.use_mesh(mesh)
  return mesh
