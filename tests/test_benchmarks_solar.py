"""benchmarks/solar.py: the quick run times every encoder, and SVD-Attention is exact on
repeated keys at the ranks that cover them (slow: it compiles nine train steps)."""
import json

import pytest


@pytest.mark.slow
def test_quick_solar_benchmark(load_benchmark, tmp_path):
  solar = load_benchmark("solar")
  out = solar.main(["--quick", "--out", str(tmp_path), "--update_readme",
                    "--readme", str(tmp_path / "R.md")])
  steps = {(r["group"], r["encoder"], r["max_len"], r["solar_rank"]): r for r in out["steps"]}
  assert all(r["status"] == "ok" for r in steps.values()), steps
  ref = steps[("length", "reference", 64, 16)]
  assert ref["ratio_to_64"] == 1.0
  for key, r in steps.items():
    assert r["step_time_s"] > 0 and r["flops_per_step"] > 0 and 0 < r["mfu"] < 1, key
  # At 512 events SOLAR's analytic FLOPs are below plain attention's and compression's.
  assert (steps[("length", "solar", 512, 16)]["flops_per_step"]
          < steps[("length", "compress", 512, 16)]["flops_per_step"]
          < steps[("length", "plain", 512, 16)]["flops_per_step"])
  errors = {(e["keys"], e["rank"]): e["relative_error"] for e in out["errors"]}
  assert errors[("repeated", 16)] < 1e-4 and errors[("repeated", 64)] < 1e-4
  assert errors[("repeated", 4)] > 1e-2  # 16 distinct keys: rank 4 cannot be exact
  saved = json.loads((tmp_path / "solar.json").read_text())
  assert len(saved["steps"]) == len(out["steps"]) and (tmp_path / "solar.png").stat().st_size
  readme = (tmp_path / "R.md").read_text()
  assert "<!-- solar:start -->" in readme and "| solar | 512 | 16 |" in readme
