"""benchmarks/memory.py --quick: the table's per-device bytes shrink as 1/model, bf16
activations take less than f32 ones; JSON, PNG, README section."""
import json

import pytest


@pytest.mark.slow   # ~70 s on 2 cores: a benchmark's quick run (README: the slow set)
def test_quick_memory_sweep(tmp_path, load_benchmark, monkeypatch):
  memory = load_benchmark("memory")
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\n## Other\nkeep me\n")
  rows = memory.main(["--quick", "--out", str(tmp_path), "--update_readme",
                      "--readme", str(readme)])
  saved = json.loads((tmp_path / "memory.json").read_text())["rows"]
  assert len(saved) == len(rows) == 5
  precision = {r["dtype"]: r for r in saved if r["group"] == "precision"}
  assert precision["bfloat16"]["temp_bytes"] < precision["float32"]["temp_bytes"]
  assert precision["bfloat16"]["temp_vs_f32"] < 1.0
  by_mesh = {(r["devices"], r["data"], r["model"]): r for r in saved if r["group"] == "scaling"}
  one, mp8, mixed = by_mesh[(1, 1, 1)], by_mesh[(8, 1, 8)], by_mesh[(8, 2, 4)]
  for r, m in ((one, 1), (mp8, 8), (mixed, 4)):
    assert r["table_bytes"] * m == pytest.approx(one["table_bytes"], rel=0.05)
    assert r["table_scaling"] == pytest.approx(1.0, abs=0.05)
    assert r["peak_bytes"] > r["table_bytes"] > 0
  assert mp8["table_spec"] == "P('model',)"
  # The whole step's arguments (params + Adam + batch) shrink with the table too.
  assert mp8["argument_bytes"] < one["argument_bytes"] / 4
  assert (tmp_path / "memory.png").stat().st_size > 0
  text = readme.read_text()
  assert "keep me" in text and "## Memory scaling" in text and "| 1,000,000 |" in text
  assert "### Mixed precision" in text and "| 32 | bfloat16 |" in text
  # --group precision recompiles only that group (here: its saved rows handed back) and
  # keeps the saved scaling rows.
  monkeypatch.setattr(memory, "run_cases", lambda cases: [
      {k: v for k, v in r.items() if k != "date"} for r in saved if r["group"] == "precision"])
  again = memory.main(["--quick", "--out", str(tmp_path), "--group", "precision"])
  assert sorted(r["group"] for r in again) == ["precision"] * 2 + ["scaling"] * 3
  memory.update_readme(str(readme), memory.readme_section(
      saved, dict(flags=" --quick", date="d", machine="m"), "memory.png"))
  assert readme.read_text().count(memory.README_START) == 1
