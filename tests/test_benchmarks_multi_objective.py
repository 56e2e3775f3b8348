"""benchmarks/multi_objective.py: a quick subset trains, resumes, and writes sane outputs."""
import importlib.util
import json
import math
import pathlib

import pytest

_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "multi_objective.py"
_ONLY = "mpformer,single/click,ablation/target_weights"


def _load():
  spec = importlib.util.spec_from_file_location("benchmarks_multi_objective", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _finite(x):
  return isinstance(x, (int, float)) and math.isfinite(x)


def test_run_specs_cover_every_switch():
  mo = _load()
  runs = mo.run_specs()
  assert len(runs) == 1 + 4 + 6 + 1
  assert runs["mpformer"] == ("base.py", {})  # configs/base.py as is.
  assert runs["ablation/objective_weights"] == ("base.py", {"loss.objective_weights":
                                                            (1.0, 1.0, 1.0, 1.0)})
  assert runs["single/like"] == ("kuaiformer.py", {"model.objectives": ("like",),
                                                   "loss.objective_weights": (1.0,)})
  assert runs["ablation/user_token"][1] == {"model.user_token": False,
                                            "model.user_gate": False}
  for switch in mo.SWITCHES:
    assert runs[f"ablation/{switch}"][1][f"model.{switch}"] is False


@pytest.mark.slow   # about 95 s on 2 cores; .ci/run runs the slow set after the default one
def test_quick_subset_layout_resume_and_readme(tmp_path, monkeypatch):
  mo = _load()
  argv = ["--quick", "--steps", "4", "--only", _ONLY, "--out", str(tmp_path),
          "--scratch", str(tmp_path / "runs")]
  out = mo.main(argv)
  saved = json.loads((tmp_path / "multi_objective.json").read_text())
  assert saved == out
  assert set(saved) == {"mpformer", "single/click", "ablation/target_weights", "quotas",
                        "summary"}
  for name in ("mpformer", "ablation/target_weights"):
    e = saved[name]
    for o in mo.OBJECTIVES:
      assert 0.0 <= e[f"{o}/hr@50"] <= 1.0
    assert 0.0 <= e["merged/mean_exposure"] <= 1.0
  single = saved["single/click"]
  assert 0.0 <= single["click/hr@50"] <= 1.0 and single["merged/mean_exposure"] is None
  for e in (saved["mpformer"], single, saved["ablation/target_weights"]):
    assert isinstance(e["params"], int) and e["params"] > 0
    assert _finite(e["train_seconds"]) and e["train_seconds"] > 0
    assert isinstance(e["peak_memory_bytes"], int) and e["peak_memory_bytes"] > 2**20
  assert saved["mpformer"]["params"] > single["params"]
  # Without the weight head the quotas are uniform, so both merged lists are the same.
  ab = saved["ablation/target_weights"]
  assert ab["merged/mean_exposure"] == pytest.approx(ab["merged_uniform/mean_exposure"])
  for kind in ("personalized", "uniform"):
    assert 0.0 <= saved["quotas"][kind]["merged/mean_exposure"] <= 1.0
  s = saved["summary"]
  for key in ("min_ratio_hr50_vs_single", "time_ratio_vs_single_total",
              "param_ratio_vs_single_total"):
    assert _finite(s[key]) and s[key] > 0
  assert s["singles_compared"] == ["click"] and s["criteria"]["all_singles_run"] is False
  assert s["machine"]["cores"] >= 1 and s["date"] and s["split"] == "test"
  assert (tmp_path / "multi_objective.png").stat().st_size > 0

  # Resume: the finished runs are read back, not retrained; README keeps other sections.
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\n## Other\nkeep me\n")
  def must_not_run(name, *unused):
    raise AssertionError(f"{name} was retrained")
  monkeypatch.setattr(mo, "train", must_not_run)
  again = mo.main(argv + ["--update_readme", "--readme", str(readme)])
  assert again["mpformer"]["train_seconds"] == out["mpformer"]["train_seconds"]
  mo.main(argv + ["--update_readme", "--readme", str(readme)])
  text = readme.read_text()
  assert "keep me" in text and text.count(mo.README_START) == 1
  assert mo.README_TITLE in text and "| single/click |" in text
  assert "](multi_objective.png)" in text
