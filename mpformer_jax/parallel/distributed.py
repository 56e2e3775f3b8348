"""Multi-host start-up: `jax.distributed.initialize()` only when asked (DESIGN 4).

Asked means `config.parallel.distributed` is true or `JAX_COORDINATOR_ADDRESS` is set in the
environment. It must run before anything touches a JAX backend, so `launch/train.py` calls it
first thing. Each process then reads its own shard of the data (`shard_index`,
`shard_count`) and feeds `per_host_batch_size` rows to `Layout.shard_batch`.
"""
from __future__ import annotations

import os

import jax
from absl import logging


def requested(parallel_cfg) -> bool:
  return bool(parallel_cfg.get("distributed", False)) or bool(
      os.environ.get("JAX_COORDINATOR_ADDRESS"))


def _initialized() -> bool:
  is_init = getattr(jax.distributed, "is_initialized", None)
  if is_init is not None:
    return bool(is_init())
  from jax._src import distributed as _dist  # pylint: disable=g-import-not-at-top
  return _dist.global_state.client is not None


def maybe_initialize(parallel_cfg) -> bool:
  """Initialise the multi-host runtime if the config or environment asks; True if it did."""
  if not requested(parallel_cfg) or _initialized():
    return False
  kwargs = {}
  if parallel_cfg.get("coordinator_address", ""):
    kwargs["coordinator_address"] = parallel_cfg["coordinator_address"]
  if parallel_cfg.get("num_processes", -1) > 0:
    kwargs["num_processes"] = int(parallel_cfg["num_processes"])
  if parallel_cfg.get("process_id", -1) >= 0:
    kwargs["process_id"] = int(parallel_cfg["process_id"])
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed initialised: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def shard_info() -> tuple[int, int]:
  """(shard_index, shard_count) for this process's slice of the training data."""
  return jax.process_index(), jax.process_count()


def per_host_batch_size(global_batch_size: int) -> int:
  n = jax.process_count()
  if global_batch_size % n:
    raise ValueError(f"train.batch_size={global_batch_size} is not divisible by the {n} "
                     f"processes")
  return global_batch_size // n


def is_writer() -> bool:
  """Whether this process writes metrics, logs and plots (process 0)."""
  return jax.process_index() == 0
