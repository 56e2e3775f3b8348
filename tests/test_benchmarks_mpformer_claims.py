"""benchmarks/mpformer_claims.py: figures read from multi-objective results (by hand), and a
quick run that measures serving and writes JSON, PNG and the README table."""
import json

import pytest


def _results(tmp_path, per_seed):
  summary = dict(date="2026-12-04T00:00:00", seeds=len(per_seed),
                 time_ratio_vs_single_total=0.3, cpu_time_ratio_vs_single_total=0.28,
                 param_ratio_vs_single_total=0.25, min_ratio_hr50_vs_single=0.9)
  path = tmp_path / "multi_objective.json"
  path.write_text(json.dumps(dict(summary=summary, mpformer=dict(per_seed=per_seed,
                                                                  **{"merged/split": "valid"}))))
  return path


def test_exposure_gain_per_seed_by_hand(load_benchmark, tmp_path):
  claims = load_benchmark("mpformer_claims")
  # Gains 0.30 / 0.20 - 1 = 0.5 and 0.22 / 0.20 - 1 = 0.1: mean 0.3, std sqrt(0.08) = 0.2828.
  path = _results(tmp_path, {
      "0": {"merged/mean_exposure": 0.30, "merged_uniform/mean_exposure": 0.20},
      "1": {"merged/mean_exposure": 0.22, "merged_uniform/mean_exposure": 0.20}})
  out = claims.from_results(path)
  assert out["exposure_gain"] == pytest.approx(0.3)
  assert out["exposure_gain_std"] == pytest.approx(0.08 ** 0.5)
  assert out["seeds"] == 2 and out["exposure_split"] == "valid"
  assert (out["training_ratio"], out["params_ratio"], out["hr50_ratio_min"]) == (0.3, 0.25, 0.9)


@pytest.mark.parametrize("dataset", ["synthetic", "retail"])
def test_mpformer_has_every_switch_on_and_singles_one_objective(load_benchmark, dataset):
  """The serving comparison reads the benchmark's training figures, whose MPFormer has every
  switch on whatever configs/base.py defaults to."""
  claims = load_benchmark("mpformer_claims")
  multi_objective = load_benchmark("multi_objective")
  out = claims.configs(dataset, quick=True)
  assert all(out["mpformer"].model[s] for s in multi_objective.DATASETS[dataset].switches)
  singles = {k: c for k, c in out.items() if k != "mpformer"}
  assert len(singles) == 4 and all(len(c.model.objectives) == 1 for c in singles.values())
  assert {c.export.index for c in out.values()} == {"exact"}


@pytest.mark.slow   # about 2 minutes: five tiny artifacts published, loaded and timed
def test_quick_claims_benchmark(load_benchmark, tmp_path):
  claims = load_benchmark("mpformer_claims")
  _results(tmp_path, {"0": {"merged/mean_exposure": 0.3, "merged_uniform/mean_exposure": 0.2}})
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n")
  result = claims.main(["--quick", "--datasets", "synthetic", "--results", str(tmp_path),
                        "--out", str(tmp_path), "--repeats", "2", "--update_readme",
                        "--readme", str(readme)])
  s = result["datasets"]["synthetic"]["serving"]
  assert set(s["runs"]) == {"mpformer", "single/click", "single/long_view", "single/like",
                            "single/follow"}
  for r in s["runs"].values():
    assert r["seconds_per_user"] > 0 and r["users"] == 64 and r["flops_per_user"] > 0
  single = s["runs"]["single/click"]["flops_per_user"]
  assert 0.25 < s["flops_ratio"] < 1 and s["flops_ratio"] * 4 * single == pytest.approx(
      s["runs"]["mpformer"]["flops_per_user"])
  assert s["seconds_ratio"] == pytest.approx(s["runs"]["mpformer"]["seconds"] / sum(
      r["seconds"] for n, r in s["runs"].items() if n != "mpformer"))
  assert (tmp_path / "mpformer_claims.json").exists()
  assert (tmp_path / "mpformer_claims.png").stat().st_size > 0
  text = readme.read_text()
  assert "## MPFormer's claims vs ours" in text and "+50.0% personalised" in text
