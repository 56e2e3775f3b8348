"""benchmarks/memory.py --quick: the table's per-device bytes shrink as 1/model; JSON, PNG,
README section."""
import json

import pytest

def test_quick_memory_sweep(tmp_path, load_benchmark):
  memory = load_benchmark("memory")
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\n## Other\nkeep me\n")
  rows = memory.main(["--quick", "--out", str(tmp_path), "--update_readme",
                      "--readme", str(readme)])
  saved = json.loads((tmp_path / "memory.json").read_text())["rows"]
  assert len(saved) == len(rows) == 3
  by_mesh = {(r["devices"], r["data"], r["model"]): r for r in saved}
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
  memory.update_readme(str(readme), memory.readme_section(
      saved, dict(flags=" --quick", date="d", machine="m"), "memory.png"))
  assert readme.read_text().count(memory.README_START) == 1
