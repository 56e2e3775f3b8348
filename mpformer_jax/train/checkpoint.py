"""Orbax checkpoints of the train state and the Grain iterator state, verified on restore.

A checkpoint holds params, optimizer state, step and RNG ("state", an Orbax StandardSave
pytree that restores onto any sharding) and the data iterator's position ("data", JSON), so a
resumed run sees exactly the batches an uninterrupted run would.

Integrity: after Orbax finalises a save (its own write-to-tmp-then-rename), process 0 writes
`digest.json` into the step directory: the SHA-256 of every file in it. `restore_latest`
takes the newest step whose digest matches and that Orbax restores; a damaged or partial one
is reported, moved to `<checkpoints>_damaged/` and skipped in favour of the next newest. A
step without a digest (a kill between Orbax's rename and the digest) is trusted only if
Orbax restores it. A checkpoint whose shapes differ from the model is an error
(`CheckpointMismatch`) naming the parameter and both shapes, not damage: no fallback.

Saving: free disk space is checked first; any failure (full disk, permissions) raises
`CheckpointSaveError` after removing the partial step, so the previous checkpoint is intact.

Resharding: arrays are saved sharded (each process writes its shards; Orbax coordinates a
multi-host save) and restored onto the shardings of the *target*, so a checkpoint written on
an 8-device mesh restores onto 4 devices or 1 (tests/parallel). The target is a state of
arrays or of `jax.ShapeDtypeStruct`s carrying shardings (`abstract_target`).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

DIGEST_FILE = "digest.json"


class CheckpointSaveError(OSError):
  """A save failed; the previous checkpoint is untouched."""


class CheckpointMismatch(ValueError):
  """A checkpoint's tree or shapes differ from the model's."""


class NoIntactCheckpoint(RuntimeError):
  """Checkpoints exist but none of them restores."""


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


def directory_digest(directory: str) -> dict[str, str]:
  """{relative path: SHA-256} of every file under `directory` but the digest itself."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      full = os.path.join(root, name)
      rel = os.path.relpath(full, directory)
      if rel in (DIGEST_FILE, DIGEST_FILE + ".tmp"):
        continue
      h = hashlib.sha256()
      with open(full, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          h.update(block)
      out[rel] = h.hexdigest()
  return dict(sorted(out.items()))


def _key_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _params_first(key: str) -> tuple[bool, str]:
  return not key.startswith("params/"), key


def _barrier(name: str) -> None:
  """Multi-host: wait until every process got here (process 0 changed the directory)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def state_bytes(state: Any) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))


class Checkpointer:
  """`ocp.CheckpointManager` with the two items we save, digests and a verified restore.

  Saves are synchronous: the train step donates the state's buffers right after a save.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.damaged_dir = self.directory + "_damaged"
    self._max_to_keep = max_to_keep
    self._manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        self.directory,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep, create=True,
                                             enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  # -- saving ----------------------------------------------------------------------------

  def save(self, step: int, state: Any, data_state: Any) -> None:
    """Save and digest `step`; on any failure remove the partial step and raise."""
    previous = self.latest_step()
    try:
      self._check_space(state)
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(_json_safe(data_state))))
      if jax.process_index() == 0:
        self._write_digest(step)
    except Exception as e:  # pylint: disable=broad-except
      self._discard_partial(step)
      kept = (f"the previous checkpoint (step {previous}) is intact" if previous is not None
              else "there is no earlier checkpoint")
      raise CheckpointSaveError(
          f"saving checkpoint {step} to {self.directory} failed: {type(e).__name__}: {e}\n"
          f"The partial step was removed and {kept}; free disk space or fix permissions, "
          "then rerun the same command to resume.") from e

  def _check_space(self, state: Any) -> None:
    need = state_bytes(state) // jax.process_count()
    free = shutil.disk_usage(self.directory).free
    if free < need + (16 << 20):
      raise OSError(28, f"{free / 2**20:.0f} MiB free on the checkpoint disk, a checkpoint "
                    f"needs about {need / 2**20:.0f} MiB")

  def _write_digest(self, step: int) -> None:
    directory = self.step_dir(step)
    tmp = os.path.join(directory, DIGEST_FILE + ".tmp")
    with open(tmp, "w") as f:
      json.dump({"step": step, "files": directory_digest(directory)}, f, indent=0)
    os.replace(tmp, os.path.join(directory, DIGEST_FILE))

  def _discard_partial(self, step: int) -> None:
    if jax.process_index() == 0:
      self._remove_partial(step)
    self._manager.reload()

  def _remove_partial(self, step: int) -> None:
    for partial in glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")):
      shutil.rmtree(partial, ignore_errors=True)
    if os.path.isdir(self.step_dir(step)) and not os.path.exists(
        os.path.join(self.step_dir(step), DIGEST_FILE)):
      shutil.rmtree(self.step_dir(step), ignore_errors=True)

  # -- restoring -------------------------------------------------------------------------

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
    """Verify and restore `step` onto the shapes, dtypes and shardings of `abstract_state`.

    Raises `CheckpointMismatch` for a tree or shape difference, another exception for damage.
    """
    target = abstract_target(abstract_state)
    self._check_digest(step)
    self._check_shapes(step, target)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return out["state"], _from_json(out["data"])

  def restore_latest(self, abstract_state: Any, move_damaged: bool = True
                     ) -> tuple[int, Any, Any] | None:
    """(step, state, data state) of the newest intact checkpoint; None if there is none.

    Damaged steps are logged and skipped, and moved aside if `move_damaged` (the trainer;
    a reader such as evaluation leaves the directory alone); if every step is damaged,
    `NoIntactCheckpoint`.
    """
    damaged = []
    for step in reversed(self.all_steps()):
      try:
        state, data = self.restore(step, abstract_state)
      except CheckpointMismatch:
        raise
      except Exception as e:  # pylint: disable=broad-except
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        moved = f"moved to {self._quarantine(step)}" if move_damaged else "left in place"
        logging.warning("checkpoint %d in %s is damaged (%s); %s, falling back to the "
                        "previous one", step, self.directory, reason, moved)
        damaged.append((step, reason))
        continue
      if damaged:
        logging.warning("resuming from step %d; %d newer damaged checkpoint(s) skipped",
                        step, len(damaged))
      return step, state, data
    if damaged:
      raise NoIntactCheckpoint(
          f"no intact checkpoint in {self.directory}: " + "; ".join(
              f"step {s}: {r}" for s, r in damaged) +
          (f". They were moved to {self.damaged_dir}" if move_damaged else "") +
          f". Start again in a new --workdir (or delete {self.directory} to restart this "
          "one from step 0).")
    return None

  def _check_shapes(self, step: int, target: Any) -> None:
    saved = self._manager.item_metadata(step)["state"]
    saved = getattr(saved, "tree", saved)
    if saved is None:
      raise ValueError(f"step {step}: no readable state metadata")
    have = {_key_name(p): tuple(m.shape) for p, m in
            jax.tree_util.tree_flatten_with_path(saved)[0]}
    want = {_key_name(p): tuple(x.shape) for p, x in
            jax.tree_util.tree_flatten_with_path(target)[0]}
    problems = [f"{k}: checkpoint {have[k]}, model {want[k]}"   # params first: the
                for k in sorted(set(have) & set(want), key=_params_first)  # moments repeat them
                if have[k] != want[k]]
    problems += [f"{k}: in the model, not in the checkpoint" for k in sorted(set(want) - set(have))]
    problems += [f"{k}: in the checkpoint, not in the model" for k in sorted(set(have) - set(want))]
    if problems:
      shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
      raise CheckpointMismatch(
          f"checkpoint {step} in {self.directory} does not fit the model "
          f"({len(problems)} difference(s)):\n  " + "\n  ".join(shown) +
          "\nThe config's model or data changed since it was written: use the run's config "
          "(config.json in the workdir) or a new --workdir.")

  def _check_digest(self, step: int) -> None:
    digest_path = os.path.join(self.step_dir(step), DIGEST_FILE)
    if not os.path.exists(digest_path):
      logging.warning("checkpoint %d has no %s (the run stopped right after saving it); "
                      "trusting it only if it restores", step, DIGEST_FILE)
      return
    with open(digest_path) as f:
      want = json.load(f)["files"]
    have = directory_digest(self.step_dir(step))
    missing = sorted(set(want) - set(have))
    changed = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or changed:
      raise IOError(f"digest mismatch: {len(missing)} file(s) missing {missing[:3]}, "
                    f"{len(changed)} changed {changed[:3]}")

  def _quarantine(self, step: int) -> str:
    target = os.path.join(self.damaged_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    if jax.process_index() == 0:
      os.makedirs(self.damaged_dir, exist_ok=True)
      shutil.move(self.step_dir(step), target)
    _barrier(f"checkpoint_quarantine_{step}")
    self._manager.close()
    self._manager = self._open()
    return target

  def reached_preemption(self, step: int) -> bool:
    """Multi-host: every process agrees to stop at `step` (JAX's preemption sync point)."""
    return self._manager.reached_preemption(step)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
