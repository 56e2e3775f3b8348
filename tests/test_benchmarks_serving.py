"""benchmarks/serving.py --quick: every cell measured, the cost comparison, JSON, PNG, README."""
import pytest


@pytest.mark.slow   # about 3 minutes on 2 cores: nine artifacts, nine service processes
def test_quick_serving_benchmark(load_benchmark, tmp_path):
  serving = load_benchmark("serving")
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n")
  result = serving.main(["--quick", "--out", str(tmp_path), "--update_readme",
                         "--readme", str(readme)])
  rows = result["rows"]
  assert {(r["num_items"], r["index"], r["clients"]) for r in rows} == {
      (n, i, c) for n in (500, 3_000) for i in ("exact", "scann") for c in (1, 8)}
  for r in rows:
    assert r["p50_ms"] <= r["p99_ms"] and r["qps"] > 0 and r["flops_per_request"] > 0
    assert (r["mfu"] is None) == (r["index"] == "scann")
    if r["index"] == "scann":
      assert r["recall@200"] > 0.5
  cost = result["cost"]
  assert set(cost["runs"]) == {"mpformer", "single/click", "single/long_view", "single/like",
                               "single/follow"}
  assert 0 < cost["seconds_ratio"] and 0.2 < cost["params_ratio"] < 0.35
  assert (tmp_path / "serving.json").exists() and (tmp_path / "serving.png").stat().st_size
  text = readme.read_text()
  assert "## Serving" in text and "| 3,000 | scann | 8 |" in text and "x** the time" in text
