"""Faults injected into real runs: what survives, what stops, and what the message says.

Damaged and partial checkpoints, mismatched shapes, changed config fields, SIGTERM, a NaN
between two log steps, failing saves, a truncated metrics file and bad input (issue 17).
Runs are the tiny config for 20 steps (checkpoints at 10 and 20).
"""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import base
from mpformer_jax.train import checkpoint as ckpt_lib
from mpformer_jax.train import loop, run_config
from mpformer_jax.train.checkpoint import (CheckpointMismatch, CheckpointSaveError,
                                           Checkpointer, NoIntactCheckpoint)
from mpformer_jax.train.loop import train_and_evaluate
from mpformer_jax.train.metric_writer import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(num_steps=20, **train):
  c = base.get_config("tiny")
  c.train.update(dict(dict(num_steps=num_steps, log_every_steps=5, checkpoint_every_steps=10,
                           eval_every_steps=1000), **train))
  c.eval.num_users = 50
  return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("trained"))
  return workdir, train_and_evaluate(_config(), workdir)


def _copy(trained, tmp_path) -> str:
  workdir = str(tmp_path / "run")
  shutil.copytree(trained[0], workdir)
  return workdir


def _steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def _train_steps(workdir):
  return [r["step"] for r in read_metrics(workdir) if "train/loss" in r and "final" not in r]


def _state_files(step_dir):
  return sorted(os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs
                if f != ckpt_lib.DIGEST_FILE)


def test_damaged_newest_checkpoint_falls_back_to_previous(trained, tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  workdir = _copy(trained, tmp_path)
  for path in _state_files(os.path.join(workdir, "checkpoints", "20"))[-3:]:
    with open(path, "wb") as f:       # three files overwritten, as in the issue
      f.write(b"x" * 100)
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write('{"step": 20, "train/lo')      # killed mid-line, too
  assert _train_steps(workdir) == [5, 10, 15, 20]             # readers skip the partial line
  final = train_and_evaluate(_config(), workdir)
  assert "checkpoint 20" in caplog.text and "is damaged" in caplog.text
  assert "Resuming from checkpoint at step 10" in caplog.text
  damaged = os.listdir(os.path.join(workdir, "checkpoints_damaged"))
  assert len(damaged) == 1 and damaged[0].startswith("20-")
  assert _steps(workdir) == [10, 20]
  # Resuming is exact: the retrained steps 11..20 end where the original run did.
  for key in ("eval/hr@50", "test/hr@50", "train/loss"):
    assert final[key] == trained[1][key], key
  # metrics.jsonl: past-step records and the partial line dropped, each step once.
  assert _train_steps(workdir) == [5, 10, 15, 20]
  assert sum(bool(r.get("final")) for r in read_metrics(workdir)) == 1
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert all(json.loads(line) for line in f)


def test_partial_newest_checkpoint_and_leftover_tmp_dir(trained, tmp_path, caplog):
  workdir = _copy(trained, tmp_path)
  directory = os.path.join(workdir, "checkpoints")
  os.remove(_state_files(os.path.join(directory, "20", "state"))[0])     # a file missing
  os.makedirs(os.path.join(directory, "30.orbax-checkpoint-tmp-0", "state"))  # a killed save
  target = ocp.StandardCheckpointer().restore(os.path.join(directory, "10", "state"))
  step, state, data = Checkpointer(directory).restore_latest(target)
  assert step == 10 and data["next_index"] == 10
  assert "digest mismatch: 1 file(s) missing" in caplog.text
  jax.tree.map(np.testing.assert_array_equal, state, target)
  assert os.listdir(directory + "_damaged")[0].startswith("20-")


def test_no_intact_checkpoint_is_an_error_naming_each(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  for step in (10, 20):
    with open(_state_files(os.path.join(workdir, "checkpoints", str(step)))[0], "ab") as f:
      f.write(b"garbage")
  with pytest.raises(NoIntactCheckpoint, match=r"step 20: .*digest mismatch.*step 10: "):
    train_and_evaluate(_config(), workdir)


def test_shape_mismatch_names_parameter_and_both_shapes(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  wider = _config()
  wider.model.d_model = 48
  with pytest.raises(run_config.ConfigDrift, match=r"model\.d_model: 32 \(saved\) -> 48"):
    train_and_evaluate(wider, workdir)
  os.remove(run_config.path(workdir))    # a workdir without its config: shapes catch it
  with pytest.raises(CheckpointMismatch,
                     match=r"params/[\w/]+: checkpoint \(\d+, 32\), model \(\d+, 48\)"):
    train_and_evaluate(wider, workdir)


def test_changed_config_fields(trained, tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  workdir = _copy(trained, tmp_path)
  cases = {"train.batch_size": lambda c: c.train.update(batch_size=64),
           "train.learning_rate": lambda c: c.train.update(learning_rate=1e-2),
           "seed": lambda c: c.update(seed=3),
           "data.synthetic.seed": lambda c: c.data.synthetic.update(seed=1)}
  for field, change in cases.items():
    config = _config()
    change(config)
    with pytest.raises(run_config.ConfigDrift, match=rf"{field}: .* \(saved\) -> .* \(now\)"
                       r"(.|\n)*new --workdir"):
      train_and_evaluate(config, workdir)
  with pytest.raises(run_config.ConfigDrift, match="data: fingerprint"):
    config = _config()
    config.data.synthetic.seed = 1
    train_and_evaluate(config, workdir)
  with pytest.raises(run_config.ConfigDrift, match="--allow_config_changes=train.num_steps"):
    train_and_evaluate(_config(num_steps=25), workdir)
  with pytest.raises(ValueError, match="cannot be overridden"):
    train_and_evaluate(_config(), workdir, allow_config_changes=("train.batch_size",))
  # Free fields and an allowed num_steps: resumes, logs the schedule jump, records both.
  config = _config(num_steps=25)
  config.eval.num_users = 40
  final = train_and_evaluate(config, workdir, allow_config_changes=("train.num_steps",))
  assert final["train/loss"] is not None and final["params"] > 0
  assert "schedule policy" in caplog.text and "at the resumed step 20" in caplog.text
  record = run_config.read(workdir)
  assert {c["field"] for c in record["changes"]} == {"train.num_steps", "eval.num_users"}
  assert record["config"]["train"]["num_steps"] == 25
  assert record["data_fingerprint"].startswith("synthetic:config-")


def test_evaluation_reads_the_saved_config(trained):
  workdir = trained[0]
  config = run_config.for_reading(workdir, None, {"eval.num_users": 7})
  assert config.eval.num_users == 7 and config.train.num_steps == 20
  assert config.model.compression.schedule == ((8, 1), (4, 2))  # tuples, as written
  with pytest.raises(run_config.ConfigDrift, match="model.d_model.*fixed by the run"):
    run_config.for_reading(workdir, None, {"model.d_model": 8})
  other = _config()
  other.model.num_heads = 4
  with pytest.raises(run_config.ConfigDrift, match="model.num_heads: 2"):
    run_config.for_reading(workdir, other)


def _wrap_step(monkeypatch, at_step, before):
  """The real train step, with `before(batch) -> batch` run on call `at_step` only."""
  real = loop.make_train_step
  def make(*args, **kwargs):
    step_fn, calls = real(*args, **kwargs), [0]
    def step(state, batch):
      calls[0] += 1
      return step_fn(state, before(batch) if calls[0] == at_step else batch)
    return step
  monkeypatch.setattr(loop, "make_train_step", make)


def _poison_step(monkeypatch, at_step):
  """NaN target logQ in the batch of call `at_step` (after the host-side input checks, as a
  numerical blow-up would arrive)."""
  _wrap_step(monkeypatch, at_step,
             lambda batch: dict(batch, target_logq=batch["target_logq"] * jnp.nan))


def _restored_params(workdir, step):
  state = ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(step), "state"))
  return state["params"]


def test_nan_between_logs_stops_before_any_save(tmp_path, monkeypatch):
  _poison_step(monkeypatch, 12)
  workdir = str(tmp_path / "nan")
  with pytest.raises(FloatingPointError, match=r"non-finite loss at step 12 \(loss nan"
                     r"(.|\n)*target logQ in \[nan(.|\n)*no checkpoint after step 7"):
    train_and_evaluate(_config(checkpoint_every_steps=7), workdir)
  assert _steps(workdir) == [7]          # 14 would have been saved after the NaN at 12
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(_restored_params(workdir, 7)))


def test_nan_skip_policy_counts_and_keeps_params_finite(tmp_path, monkeypatch):
  _poison_step(monkeypatch, 12)
  workdir = str(tmp_path / "skip")
  final = train_and_evaluate(_config(nonfinite="skip"), workdir)
  skipped = {r["step"]: r["train/skipped_batches"] for r in read_metrics(workdir)
             if "train/loss" in r}
  assert skipped == {5: 0, 10: 0, 15: 1, 20: 1}
  assert np.isfinite(final["train/loss"])
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(_restored_params(workdir, 20)))


def test_failing_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
  ckpt = Checkpointer(str(tmp_path / "ck"))
  state = {"w": jnp.ones((8, 8))}
  ckpt.save(10, state, {"next_index": 10})
  real_save = ocp.CheckpointManager.save
  def full_disk(self, step, *args, **kwargs):
    if step == 20:       # a partial write, then the disk is full
      os.makedirs(os.path.join(self.directory, "20.orbax-checkpoint-tmp-0", "state"))
      raise OSError(28, "No space left on device")
    return real_save(self, step, *args, **kwargs)
  monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
  with pytest.raises(CheckpointSaveError, match=r"saving checkpoint 20 (.|\n)*No space left"
                     r"(.|\n)*previous checkpoint \(step 10\) is intact"):
    ckpt.save(20, state, {"next_index": 20})
  assert os.listdir(ckpt.directory) == ["10"]
  assert ckpt.restore_latest(state)[0] == 10


def test_low_disk_space_is_refused_before_writing(tmp_path, monkeypatch):
  ckpt = Checkpointer(str(tmp_path / "ck"))
  state = {"w": jnp.ones((64, 64))}
  ckpt.save(1, state, {"next_index": 1})
  usage = shutil.disk_usage(str(tmp_path))
  monkeypatch.setattr(ckpt_lib.shutil, "disk_usage",
                      lambda _: usage._replace(free=1 << 20))
  with pytest.raises(CheckpointSaveError, match=r"1 MiB free(.|\n)*step 1\) is intact"):
    ckpt.save(2, state, {"next_index": 2})
  assert ckpt.all_steps() == [1]
  step, restored, data = ckpt.restore_latest(state)
  assert step == 1 and data == {"next_index": 1}
  np.testing.assert_array_equal(restored["w"], state["w"])


def _signal_at(monkeypatch, at_step, signum):
  """The process sends itself `signum` during call `at_step` (the handler runs between
  bytecodes: before the step's state comes back)."""
  def send(batch):
    os.kill(os.getpid(), signum)
    return batch
  _wrap_step(monkeypatch, at_step, send)


def test_ctrl_c_finishes_the_step_saves_and_stops(trained, tmp_path, monkeypatch):
  workdir = _copy(trained, tmp_path)
  before = signal.getsignal(signal.SIGINT)  # default_int_handler; SIG_IGN in a background job
  _signal_at(monkeypatch, 3, signal.SIGINT)   # resumed at 20: the 3rd step is step 23
  result = train_and_evaluate(_config(num_steps=100), workdir, ("train.num_steps",))
  assert result == {"preempted": True, "step": 23, "signal": "SIGINT"}
  assert _steps(workdir) == [20, 23] and _train_steps(workdir)[-1] == 20
  assert signal.getsignal(signal.SIGINT) is before   # handlers restored


def test_launch_exits_0_on_sigterm_and_keeps_chatter_in_the_log_file(tmp_path):
  """The CLI: exit status 0 and a message; the console has no storage-library INFO lines."""
  workdir = str(tmp_path / "term")
  proc = subprocess.Popen(
      [sys.executable, "-m", "launch.train", "--config=configs/base.py:tiny",
       f"--workdir={workdir}", "--config.train.log_every_steps=5",
       "--config.train.num_steps=100000", "--config.eval.num_users=50"],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if "step 5/100000" in line:
      proc.send_signal(signal.SIGTERM)
  out = "".join(lines)
  assert proc.wait(timeout=120) == 0, out
  stopped = int(out.split("Stopped by SIGTERM at step ")[1].split()[0])
  assert _steps(workdir) == [stopped]
  assert "Saving checkpoint" not in out
  with open(os.path.join(workdir, "train.log")) as f:
    assert "Saving checkpoint" in f.read()
