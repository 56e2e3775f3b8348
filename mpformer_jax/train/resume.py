"""Start or resume a run: check the saved config, restore the newest intact checkpoint.

What a resume checks, in order (README "Interruptions and faults"):
  1. `<workdir>/config.json` against the current config and data (`run_config.check`): fields
     that shape parameters, data order or the schedule must be unchanged;
  2. the newest checkpoint's tree and shapes against the model (`CheckpointMismatch`);
  3. its digest and an Orbax restore; a damaged one is moved aside and the previous one used.
A workdir with no checkpoint yet has nothing to resume: its saved config is replaced.
"""
from __future__ import annotations

import functools
import types
from typing import Any, Callable, Iterable

from absl import logging

from mpformer_jax.train import run_config
from mpformer_jax.train.checkpoint import Checkpointer
from mpformer_jax.train.state import learning_rate_schedule


def check_config(config, workdir: str, source, ckpt: Checkpointer,
                 allow_changes: Iterable[str] = ()) -> Callable[[], None]:
  """Check the config against the run's saved one (`ConfigDrift`); log accepted changes.

  Returns the function that writes the run record, to call once the checkpoint restored (a
  workdir whose config file is missing must not get one that its checkpoints contradict).
  """
  fingerprint = run_config.data_fingerprint(source, config.data)
  record = run_config.read(workdir)
  step = ckpt.latest_step()
  if step is None or record is None:
    if step is not None:
      logging.warning("%s has checkpoints but no %s (written by an older version): the "
                      "current config becomes the run's once they restore", workdir,
                      run_config.RUN_FILE)
    elif record is not None:
      logging.info("no checkpoint in %s yet: its saved config is replaced", workdir)
    return functools.partial(run_config.write, workdir, config, fingerprint, fresh=True)
  changes = run_config.check(record, config, fingerprint, allow_changes, step=step,
                             where=run_config.path(workdir))
  for change in changes:
    logging.info("config changed on resume (%s): %s %r -> %r", change["kind"],
                 change["field"], change["saved"], change["now"])
    if change["field"] == "train.num_steps":
      _log_schedule_jump(record["config"]["train"], config.train, step)
  if record.get("package_version") != run_config.package_version():
    logging.warning("the run was started with mpformer_jax %s; this is %s",
                    record.get("package_version"), run_config.package_version())
  if not changes:
    return lambda: None
  return functools.partial(run_config.write, workdir, config, fingerprint, changes)


def _log_schedule_jump(saved_train: dict, train_cfg, step: int) -> None:
  old = learning_rate_schedule(types.SimpleNamespace(**saved_train))(step)
  new = learning_rate_schedule(train_cfg)(step)
  logging.info("schedule policy: the learning rate is re-derived from num_steps=%d; at the "
               "resumed step %d it goes from %.3g to %.3g", train_cfg.num_steps, step,
               float(old), float(new))


def restore(ckpt: Checkpointer, state: Any, train_iter) -> tuple[int, Any]:
  """Restore the newest intact checkpoint into (state, iterator); (step, state); step 0: none."""
  restored = ckpt.restore_latest(state)
  if restored is None:
    return 0, state
  step, state, data_state = restored
  train_iter.set_state(data_state)
  logging.info("Resuming from checkpoint at step %d in %s", step, ckpt.directory)
  return step, state
