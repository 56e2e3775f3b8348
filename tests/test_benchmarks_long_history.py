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
  # --reevaluate: the final checkpoint is evaluated again (a new final record), not retrained
  fresh = bench.main(argv + ["--reevaluate"])["variants"]["solar"]
  records = [json.loads(line) for line in
             (tmp_path / "runs" / "solar_steps10_seed0" / "metrics.jsonl").read_text().splitlines()]
  assert sum(bool(r.get("final")) for r in records) == 2
  assert [r["step"] for r in records if "train/loss" in r and not r.get("final")][-1] == 10
  assert fresh["test/hr@50"] == pytest.approx(out["variants"]["solar"]["test/hr@50"])
  assert 0 <= fresh["test/transitions/hr@50"] <= 1


def test_ml1m_workload_runs_the_recipe_with_each_encoder(load_benchmark, tmp_path):
  """configs/ml1m_long.py: the recipe on ML-1M, 1,024 events, the three encoders; its table
  goes under its own README marker."""
  from configs import ml1m_long  # pylint: disable=import-outside-toplevel
  bench = load_benchmark("long_history")
  argv = bench.command("solar", tmp_path, None, 0, "ml1m")
  assert argv[3].endswith("configs/ml1m_long.py:default")
  shapes = {v: ml1m_long.get_config(bench.VARIANTS[v]) for v in bench.VARIANTS}
  assert shapes["solar"].model.long_history == "solar" and shapes["solar"].data.max_len == 1024
  assert shapes["compress"].model.compression.schedule == ((256, 3), (64, 2), (16, 5))
  assert shapes["recent"].data.max_len == 48
  assert {c.data.name for c in shapes.values()} == {"ml1m"}
  assert {c.train.num_steps for c in shapes.values()} == {1_000}
  entry = {"test/hr@10": 0.1, "test/hr@50": 0.2, "test/ndcg@10": 0.05, "eval/hr@50": 0.2,
           "eval/ndcg@10": 0.06, "test/popularity/hr@50": 0.1, "test/transitions/hr@50": 0.15,
           "step_s": 0.5, "params": 10}
  text = bench.readme_section(dict(
      machine=dict(cpu="cpu", cores=2, jax_version="x"), workload="ml1m", flags="", seeds=1,
      date="2026-12-04", variants={"solar": entry}, png="p.png"))
  assert text.startswith("<!-- long_history_ml1m:start -->")
  assert "## Long histories on ML-1M" in text
  assert ("| solar | 0.1000 | 0.2000 | 0.0500 | 0.2000 | 0.0600 | 0.1000 | 0.1500 | 500 | 10 |"
          in text)
