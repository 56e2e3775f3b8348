"""benchmarks/long_history.py: trains configs/recurring.py's variants and reports them
(slow: two 10-step runs on the 20,000-user workload)."""
import json

import pytest


@pytest.mark.slow
def test_long_history_benchmark_trains_and_reports(load_benchmark, tmp_path):
  bench = load_benchmark("long_history")
  argv = ["--seeds", "1", "--steps", "10", "--only", "solar,recent", "--out", str(tmp_path),
          "--scratch", str(tmp_path / "runs"), "--update_readme",
          "--readme", str(tmp_path / "R.md")]
  out = bench.main(argv)
  assert set(out["variants"]) == {"solar", "recent"}
  for name, e in out["variants"].items():
    assert 0 <= e["test/hr@50"] <= 1 and e["step_s"] > 0 and e["params"] > 0, name
  assert out["variants"]["solar"]["params"] > out["variants"]["recent"]["params"]  # readers
  saved = json.loads((tmp_path / "long_history.json").read_text())
  assert saved["variants"]["solar"]["seeds"] == 1
  assert (tmp_path / "long_history.png").stat().st_size > 0
  assert "| solar |" in (tmp_path / "R.md").read_text()
  mtime = (tmp_path / "runs" / "solar_steps10_seed0" / "metrics.jsonl").stat().st_mtime
  again = bench.main(argv)  # finished workdirs are read back, not retrained
  assert again["variants"]["solar"]["test/hr@50"] == out["variants"]["solar"]["test/hr@50"]
  assert (tmp_path / "runs" / "solar_steps10_seed0" / "metrics.jsonl").stat().st_mtime == mtime
