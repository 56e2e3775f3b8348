"""benchmarks/soak.py: kill moments are planned as promised, and a quick soak resumes exactly."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]


def test_plan_spreads_aims_and_targets(load_benchmark):
  soak = load_benchmark("soak")
  items = soak.plan(np.random.default_rng(0), kills=10, steps=400)
  assert [it["signal"] for it in items].count("SIGTERM") == 1 and len(items) == 11
  kills = [it["aim"] for it in items if it["signal"] == "SIGKILL"]
  assert sorted(kills.count(a) for a in soak.AIMS) == [3, 3, 4]
  targets = [it["target"] for it in items if it["aim"] != "startup"]
  assert targets == sorted(targets) and 1 <= targets[0] and targets[-1] < 400
  assert all(0.05 <= it["fraction"] <= 0.9 for it in items)
  again = soak.plan(np.random.default_rng(0), kills=10, steps=400)
  assert again == items  # Seeded: the same moments every time.


def test_log_patterns_match_the_trainer_lines(load_benchmark):
  soak = load_benchmark("soak")
  step = ("I1203 10:24:42.365993 140419667127168 loop.py:212] step 17/60 | loss 6.8211 | "
          "acc 0.042 | 2 ex/s")
  assert soak.STEP_RE.search(step)[1] == "17"
  resume = "I1203 10:30:55 1 resume.py:65] Resuming from checkpoint at step 25 in /w/checkpoints"
  assert soak.RESUME_RE.search(resume)[1] == "25"
  stopped = "Stopped by SIGTERM at step 31 with a checkpoint; rerun the same command to resume."
  assert soak.STOPPED_RE.search(stopped).groups() == ("SIGTERM", "31")


@pytest.mark.slow
def test_quick_soak_resumes_exactly(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\n## Other\nkeep me\n")
  cmd = [sys.executable, str(_REPO / "benchmarks" / "soak.py"), "--quick", "--out",
         str(tmp_path), "--workdir", str(tmp_path / "work"), "--update_readme", "--readme",
         str(readme)]
  proc = subprocess.run(cmd, cwd=_REPO, capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  res = json.loads((tmp_path / "soak.json").read_text())
  assert res["passed"] and all(res["checks"].values()), res["checks"]
  assert res["summary"]["param_max_abs_diff"] == 0.0 and res["summary"]["state_identical"]
  kills = [k for k in res["kills"] if k["signal"] == "SIGKILL"]
  assert len(kills) == 3 and all(0 <= k["steps_lost"] <= 10 for k in kills)
  (term,) = [k for k in res["kills"] if k["signal"] == "SIGTERM"]
  assert term["rc"] == 0 and term["steps_lost"] == 0
  assert res["final_start"]["rc"] == 0 and res["final_start"]["final"]
  assert (tmp_path / "soak.png").stat().st_size > 0
  text = readme.read_text()
  assert "keep me" in text and "## Soak: kills and resumes" in text and "](soak.png)" in text
