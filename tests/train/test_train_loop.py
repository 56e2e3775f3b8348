"""End to end on the tiny synthetic config: learning, metrics files, kill-and-resume, errors."""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import base
from mpformer_jax.train.loop import train_and_evaluate
from mpformer_jax.train.metric_writer import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# With dropout, so that resuming must also reproduce the per-step dropout masks.
DROPOUT = 0.1
TRAIN_CMD = [sys.executable, "-m", "launch.train", "--config=configs/base.py:tiny",
             f"--config.model.dropout={DROPOUT}"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  config = base.get_config("tiny")
  config.model.dropout = DROPOUT
  final = train_and_evaluate(config, workdir)
  return workdir, final


def test_tiny_run_learns_and_beats_popularity(uninterrupted):
  workdir, final = uninterrupted
  records = read_metrics(workdir)
  losses = [r["train/loss"] for r in records if "train/loss" in r and not r.get("final")]
  assert losses[-1] < losses[0]
  assert records[-1]["final"] and records[-1]["step"] == 300
  for key in ("train/loss", "train/examples_per_sec", "eval/hr@10", "eval/hr@50", "eval/hr@200",
              "eval/ndcg@10", "eval/popularity/hr@50", "eval/transitions/hr@50", "test/hr@50"):
    assert key in records[-1], key
  assert final["eval/hr@50"] > 1.3 * final["eval/popularity/hr@50"]
  assert any(r.get("eval/hr@50") is not None and not r.get("final") for r in records)
  assert os.listdir(os.path.join(workdir, "tb"))


def _restore_params(workdir):
  ckpt_dir = os.path.join(workdir, "checkpoints")
  step = max(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
  restored = ocp.StandardCheckpointer().restore(os.path.join(ckpt_dir, str(step), "state"))
  return step, restored["params"]


@pytest.mark.slow   # benchmarks/soak.py --quick (also slow) kills it three times over
def test_sigkill_and_resume_matches_uninterrupted(uninterrupted, tmp_path):
  ref_dir, ref_final = uninterrupted
  workdir = str(tmp_path / "killed")
  proc = subprocess.Popen(TRAIN_CMD + [f"--workdir={workdir}"], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(ckpt_dir) and any(d.isdigit() and int(d) >= 100 and int(d) < 300
                                       for d in os.listdir(ckpt_dir)):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed midway"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  resumed = subprocess.run(TRAIN_CMD + [f"--workdir={workdir}"], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resuming from checkpoint at step" in resumed.stderr
  records = read_metrics(workdir)
  final = records[-1]
  assert final["final"]
  # Each logged step once: the steps the killed run logged past its checkpoint were dropped.
  logged = [r["step"] for r in records if "train/loss" in r and not r.get("final")]
  assert logged == [r["step"] for r in read_metrics(ref_dir)
                    if "train/loss" in r and not r.get("final")]
  for key, value in ref_final.items():
    if key.startswith(("eval/", "test/")):
      assert final[key] == pytest.approx(value, abs=1e-5), key
  step_a, params_a = _restore_params(ref_dir)
  step_b, params_b = _restore_params(workdir)
  assert step_a == step_b == 300
  leaves_a, leaves_b = jax.tree.leaves(params_a), jax.tree.leaves(params_b)
  assert len(leaves_a) == len(leaves_b) > 0
  for a, b in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="cannot be written"):
    train_and_evaluate(base.get_config("tiny"), str(blocker / "run"))


def test_unknown_config_key_is_rejected(tmp_path):
  out = subprocess.run(TRAIN_CMD + [f"--workdir={tmp_path}", "--config.train.num_stepz=5"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode != 0
  assert "num_stepz" in out.stderr


def test_bad_values_are_rejected(tmp_path):
  config = base.get_config("tiny")
  config.model.compression.schedule = ((16, 2), (8, 1))  # 40 positions > max_len 32
  with pytest.raises(ValueError, match="more than max_len=32"):
    train_and_evaluate(config, str(tmp_path))
  config = base.get_config("tiny")
  config.train.batch_size = 0
  with pytest.raises(ValueError, match="train.batch_size must be >= 1"):
    train_and_evaluate(config, str(tmp_path))
