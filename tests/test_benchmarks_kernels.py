"""Smoke test: `benchmarks/kernels.py --quick` writes finite JSON rows and a PNG."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow   # ~30 s on 2 cores: a benchmark's quick run (README: the slow set)
def test_kernels_benchmark_quick(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(ROOT / "benchmarks" / "kernels.py"), "--quick",
       "--out", str(tmp_path)],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  result = json.loads((tmp_path / "kernels.json").read_text())
  assert (tmp_path / "kernels.png").stat().st_size > 0
  assert result["quick"] is True and result["rows"]
  assert result["kernel_timed"] == (result["device"]["platform"] != "cpu")
  for row in result["rows"]:
    for key in ("median_s", "p10_s", "p90_s", "compile_s", "flops",
                "flops_per_s", "bytes", "bytes_per_s", "peak_bytes"):
      assert isinstance(row[key], (int, float)) and math.isfinite(row[key]), key
    assert row["median_s"] > 0 and row["flops"] > 0
  assert {r["mode"] for r in result["rows"]} == {"fwd", "fwd_bwd"}
  for check in result["parity"]:
    assert check["fwd_max_abs_err"] < 1e-4 and check["grad_max_abs_err"] < 1e-4
