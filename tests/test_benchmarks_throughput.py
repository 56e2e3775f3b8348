"""benchmarks/throughput.py: the quick sweep writes sane rows and a PNG, and resumes."""
import importlib.util
import json
import math
import pathlib
import sys

import pytest

_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
_REQUIRED = ("step_time_s", "examples_per_sec", "tokens_per_sec", "flops_per_step", "mfu",
             "compile_s")


def _load():
  spec = importlib.util.spec_from_file_location("benchmarks_throughput", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # Dataclasses look their module up while being built.
  spec.loader.exec_module(module)
  return module


def test_compression_schedule_matches_paper_and_keeps_48_raw():
  throughput = _load()
  assert throughput.compression_schedule(256) == ((64, 2), (16, 5))
  assert throughput.compression_schedule(64) == ((16, 1),)
  assert throughput.compression_schedule(40) == ()
  for max_len in (64, 100, 128, 300, 512, 1024, 4096):
    schedule = throughput.compression_schedule(max_len)
    raw = max_len - sum(w * g for w, g in schedule)
    assert 48 <= raw < 64, (max_len, schedule)
    assert [w for w, _ in schedule] == sorted((w for w, _ in schedule), reverse=True)


@pytest.mark.slow   # about 95 s on 2 cores; .ci/run runs the slow set after the default one
def test_quick_sweep_rows_png_and_resume(tmp_path):
  throughput = _load()
  rows = throughput.main(["--quick", "--out", str(tmp_path)])
  saved = json.loads((tmp_path / "throughput.json").read_text())
  assert len(saved) == len(rows) >= 5
  assert {r["group"] for r in saved} == {"seq_len", "batch", "objectives", "devices"}
  for r in saved:
    assert r["status"] == "ok", r.get("skip_reason")
    assert isinstance(r["group"], str) and isinstance(r["compression"], bool)
    assert r["max_len"] > 0 and r["batch_size"] > 0
    for key in _REQUIRED:
      assert isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0, key
    assert r["tokens_per_sec"] == pytest.approx(r["examples_per_sec"] * r["max_len"])
  assert {r["compression"] for r in saved if r["group"] == "seq_len"} == {False, True}
  assert [r["num_devices"] for r in saved if r["group"] == "devices"] == [2]
  assert (tmp_path / "throughput.png").stat().st_size > 0

  # Resume: every row is already saved, so nothing is measured again.
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\n## Other\nkeep me\n")
  again = throughput.main(["--quick", "--out", str(tmp_path), "--update_readme",
                           "--readme", str(readme)])
  assert [r["step_time_s"] for r in again] == [r["step_time_s"] for r in rows]
  text = readme.read_text()
  assert "keep me" in text and "## Training throughput" in text
  assert text.count(throughput.README_START) == 1 and "](throughput.png)" in text
