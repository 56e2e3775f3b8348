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
    assert r["bytes_accessed"] > 0, key
  # Reading more events moves more bytes (the memory path embeds every one).
  assert (steps[("length", "solar", 512, 16)]["bytes_accessed"]
          > steps[("length", "solar", 128, 16)]["bytes_accessed"])
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


def test_readme_names_what_sets_solar_s_step(load_benchmark):
  """The 4,096-event verdict and, from bytes and FLOPs against the reference, what bounds it."""
  solar = load_benchmark("solar")
  row = lambda enc, n, t, flops, moved: dict(  # noqa: E731
      group="length", encoder=enc, max_len=n, solar_rank=16, status="ok", step_time_s=t,
      ratio_to_64=t / 0.5, flops_per_step=flops, mfu=0.1, bytes_accessed=moved,
      predicted_bytes=2**20, compile_s=1.0)
  out = dict(machine=dict(cpu="cpu", cores=2, jax_version="x", platform="cpu"),
             date="2026-12-04", flags="", errors=[dict(keys="repeated", rank=4, n=8, width=4,
                                                       queries=2, relative_error=0.5,
                                                       reference_rms=0.1)],
             steps=[row("reference", 64, 0.5, 10e9, 2e9), row("solar", 4096, 2.0, 20e9, 14e9)])
  text = solar.readme_section(out, "s.png")
  assert "SOLAR at 4,096 events: 4.00x the 64-event step** (misses" in text
  assert "its FLOPs are 2.0x but the bytes it reads and writes (XLA's estimate) 7.0x" in text
  assert "| solar | 4,096 | 16 | 2,000 | 4.00 | 20.0 | 10.0% | 14.00 | 7.0 | 1 | 1.0 |" in text
