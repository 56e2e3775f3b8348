"""Orbax checkpoints of the train state and the Grain iterator state.

A checkpoint holds params, optimizer state, step and RNG ("state", an Orbax StandardSave
pytree that restores onto any sharding) and the data iterator's position ("data", JSON), so a
resumed run sees exactly the batches an uninterrupted run would.

Resharding: arrays are saved sharded (each process writes its shards; Orbax coordinates a
multi-host save) and restored onto the shardings of the *target*, so a checkpoint written on
an 8-device mesh restores onto 4 devices or 1 (tests/parallel). The target is a state of
arrays or of `jax.ShapeDtypeStruct`s carrying shardings (`abstract_target`).
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def _json_safe(state: Any) -> Any:
  """Grain iterator states may be bytes; wrap them so JsonSave can store them."""
  if isinstance(state, bytes):
    return {"__bytes__": state.decode("latin-1")}
  return json.loads(json.dumps(state))


def _from_json(state: Any) -> Any:
  if isinstance(state, dict) and set(state) == {"__bytes__"}:
    return state["__bytes__"].encode("latin-1")
  return state


def abstract_target(state: Any, shardings: Any = None) -> Any:
  """ShapeDtypeStructs with the target shardings (`shardings`, else each leaf's own)."""
  if shardings is None:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, shardings)


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with the two items we save.

  Saves are synchronous: the train step donates the state's buffers right after a save.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_state: Any) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(_json_safe(data_state))))

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
    """Restore onto the shapes, dtypes and shardings of `abstract_state` (arrays or structs)."""
    target = abstract_target(abstract_state)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return out["state"], _from_json(out["data"])

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
