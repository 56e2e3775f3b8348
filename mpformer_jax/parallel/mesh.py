"""Device mesh and logical-axis rules from the config (DESIGN 4).

The mesh has two axes, `data` (batch) and `model` (item vocabulary). Params and activations
carry logical axis names; `axis_rules` maps them to mesh axes with the rules kept in
`config.parallel.rules`, so a layout change is a config change. Every check here runs before
anything is compiled, so a bad mesh or batch size fails in seconds with a message that names
the config field.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

MESH_AXES = ("data", "model")

# Logical name -> mesh axes; the first matching rule whose mesh axes are still free wins.
DEFAULT_RULES = (
    ("batch", "data"),
    ("vocab", "model"),
    ("embed", None),
    ("mlp", None),
    ("heads", None),
    ("kv", None),
    ("seq", None),
)

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]


def mesh_shape(mesh_cfg, num_devices: int) -> tuple[int, ...]:
  """Sizes of the `data` and `model` axes; one axis may be -1 (the remaining devices)."""
  sizes = []
  for axis in MESH_AXES:
    size = int(mesh_cfg[axis])
    if size == 0 or size < -1:
      raise ValueError(f"mesh.{axis} must be a positive size or -1, got {size}")
    sizes.append(size)
  if sizes.count(-1) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got mesh {dict(zip(MESH_AXES, sizes))}")
  known = math.prod(s for s in sizes if s != -1)
  if num_devices % known:
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs a multiple of {known} "
                     f"devices, but there are {num_devices}: its size must divide the "
                     f"device count")
  return tuple(num_devices // known if s == -1 else s for s in sizes)


def make_mesh(mesh_cfg, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A `("data", "model")` mesh with Auto axes (GSPMD propagates what is not constrained).

  A mesh smaller than the device count uses the first devices (single process only: every
  process of a multi-host job must take part in the mesh).
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_cfg, len(devices))
  size = math.prod(shape)
  if size < len(devices):
    if jax.process_count() > 1:
      raise ValueError(f"mesh {shape} uses {size} of {len(devices)} devices; a multi-host "
                       f"mesh must use them all (set one axis to -1)")
    logging.warning("mesh %s uses %d of %d devices", shape, size, len(devices))
    devices = devices[:size]
  kwargs = {}
  if hasattr(jax.sharding, "AxisType"):
    kwargs["axis_types"] = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  try:
    return jax.make_mesh(shape, MESH_AXES, devices=devices, **kwargs)
  except TypeError:  # older jax: no `devices` keyword
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, **kwargs)


def axis_rules(parallel_cfg) -> Rules:
  """The config's rules, with the FSDP rule put first for its logical axis when enabled.

  FSDP maps dense weights' `parallel.fsdp_axis` ("embed" by default) to `data`. Activations
  name `batch` first, so their batch dim keeps `data` and the FSDP rule falls through to the
  next rule for that name.
  """
  rules = tuple((str(name), _mesh_axes(axes))
                for name, axes in parallel_cfg.get("rules", DEFAULT_RULES))
  if not parallel_cfg.get("fsdp", False):
    return rules
  fsdp_axis = parallel_cfg.get("fsdp_axis", "embed")
  out, placed = [], False
  for name, axes in rules:
    if name == fsdp_axis and not placed:
      out.append((fsdp_axis, "data"))
      placed = True
    out.append((name, axes))
  if not placed:
    out.append((fsdp_axis, "data"))
  return tuple(out)


def _mesh_axes(axes):
  if axes is None or isinstance(axes, str):
    return axes
  axes = tuple(axes)
  for a in axes:
    if a not in MESH_AXES:
      raise ValueError(f"parallel.rules names mesh axis {a!r}; the mesh has {MESH_AXES}")
  return axes


def axis_size(mesh: Mesh, axes) -> int:
  """Number of devices along `axes` (a mesh axis name, a tuple of names, or None)."""
  if axes is None:
    return 1
  names = (axes,) if isinstance(axes, str) else tuple(axes)
  return math.prod(mesh.shape[a] for a in names)


def batch_axes(rules: Rules):
  """The mesh axes the logical `batch` axis maps to (None when unsharded)."""
  for name, axes in rules:
    if name == "batch":
      return axes
  return None


def check_batch_size(batch_size: int, mesh: Mesh, rules: Rules, what: str = "train.batch_size",
                     num_processes: int | None = None) -> None:
  """The global batch must split evenly over the data axis and over the processes."""
  n = axis_size(mesh, batch_axes(rules))
  if batch_size % n:
    raise ValueError(f"{what}={batch_size} is not divisible by the data-parallel size {n} "
                     f"(mesh {dict(mesh.shape)}); use a multiple of {n}")
  procs = jax.process_count() if num_processes is None else num_processes
  if batch_size % procs:
    raise ValueError(f"{what}={batch_size} is not divisible by the {procs} processes")
