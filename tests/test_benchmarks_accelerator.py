"""benchmarks/accelerator.py --quick: every part of the device suite runs on the CPU at toy
sizes (the kernel interpreted), with parity, MFU and recall in its JSON, a PNG and a README
section; a spent budget skips what is left and says so."""
import json
import math

import pytest


def test_accelerator_suite_quick(tmp_path, load_benchmark, capsys):
  suite = load_benchmark("accelerator")
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\n## Other\nkeep me\n")
  suite.main(["--quick", "--out", str(tmp_path), "--update_readme", "--readme", str(readme)])
  printed = capsys.readouterr().out
  for part in ("kernel", "step", "retrieval"):
    assert f"[{part}] budget" in printed and f"[{part}] done in" in printed
  result = json.loads((tmp_path / "accelerator.json").read_text())
  parts = result["parts"]
  kernel = parts["kernel"]
  assert len(kernel["parity"]) == 2 and not kernel["timed"]
  for check in kernel["parity"]:
    assert check["status"] == "ok", check
    assert check["fwd_max_abs_err"] < 1e-4 and check["grad_max_abs_err"] < 1e-4
  assert all(r["status"] == "ok" for r in kernel["rows"])
  assert {r["impl"] for r in kernel["rows"]} == {"xla", "pallas"}
  (best,) = kernel["best"]
  assert best["speedup"] > 0 and best["block_sizes"]["block_q"] in (16, 32)
  steps = {r["name"]: r for r in parts["step"]["rows"]}
  assert set(steps) == {"default", "production"}
  for r in steps.values():
    assert r["status"] == "ok" and r["dtype"] == "bfloat16"
    assert r["flops_per_step"] > 0 and 0 < r["mfu"] and math.isfinite(r["mfu"])
    assert r["predicted_bytes"] > 0 and r["temp_bytes"] > 0
  assert steps["default"]["temp_bytes"] < steps["default"]["f32_temp_bytes"]  # bf16 saves
  assert steps["production"]["num_items"] == 50_000
  assert steps["production"]["flops_per_step"] > steps["default"]["flops_per_step"]
  ret = parts["retrieval"]["rows"]
  assert [(r["num_items"], r["method"]) for r in ret] == [
      (10_000, "exact_device"), (10_000, "scann_host"), (20_000, "exact_device"),
      (20_000, "scann_host")]
  for r in ret:
    assert r["status"] == "ok" and r["users_per_s"] > 0
    if r["method"] == "scann_host":
      assert r["recall_at_100"] > 0.9
  assert (tmp_path / "accelerator.png").stat().st_size > 0
  text = readme.read_text()
  assert "keep me" in text and "## Accelerator suite" in text
  assert "| 128 |" in text and "| production |" in text and "| 20,000 | scann_host |" in text


def test_spent_budget_skips_and_says_so(load_benchmark):
  suite = load_benchmark("accelerator")
  out = suite.retrieval_part(True, suite.Budget("retrieval", 0.0))
  assert len(out["rows"]) == 4
  assert all(r["status"] == "skipped" and "budget of 0 s" in r["reason"] for r in out["rows"])


def test_quick_figures_never_reach_the_committed_readme(load_benchmark):
  suite = load_benchmark("accelerator")
  with pytest.raises(SystemExit):
    suite.main(["--quick", "--update_readme"])
