"""`python -m launch.train ... --config.mesh.data=2 --config.mesh.model=4` trains and evaluates
on 8 forced CPU devices."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_trains_and_evaluates_on_2x4_mesh(tmp_path, devices_env):
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "launch.train", "--config=configs/base.py:tiny",
         "--config.mesh.data=2", "--config.mesh.model=4", f"--workdir={workdir}",
         "--config.train.num_steps=6", "--config.train.log_every_steps=3",
         "--config.train.eval_every_steps=100", "--config.train.checkpoint_every_steps=100"]
  proc = subprocess.run(cmd, cwd=REPO, env=devices_env(8), capture_output=True, text=True,
                        timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-5000:]
  assert "mesh {'data': 2, 'model': 4}" in proc.stderr
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  final = records[-1]
  assert final["final"] and final["step"] == 6
  assert 0.0 <= final["eval/hr@50"] <= 1.0 and "test/hr@50" in final
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert len(losses) >= 2 and all(l == l and l < 1e6 for l in losses)  # finite
  assert os.path.isdir(workdir / "checkpoints" / "6")
