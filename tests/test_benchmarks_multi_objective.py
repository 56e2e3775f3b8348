"""benchmarks/multi_objective.py: a quick subset trains, resumes, and writes sane outputs."""
import importlib.util
import json
import math
import pathlib
import shutil

import pytest

from configs import ml100k

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
  assert len(runs) == 1 + 4 + 6 + 1 + 1 + 1
  # configs/base.py as it comes, its switches spelt out.
  from configs import base  # pylint: disable=import-outside-toplevel
  assert runs["ablation/off_by_default"] == ("base.py", {
      f"model.{s}": base.get_config().model[s] for s in mo.SWITCHES})
  assert mo.run_specs("retail")["ablation/off_by_default"][1]["model.target_weights"] is True
  every = {f"model.{s}": True for s in mo.SWITCHES}
  # MPFormer has every switch on whatever configs/base.py's defaults; ablations turn one off.
  assert runs["mpformer"] == ("base.py", every)
  assert runs["ablation/objective_weights"] == ("base.py", {
      **every, "loss.objective_weights": (1.0, 1.0, 1.0, 1.0)})
  assert runs["single/like"] == ("kuaiformer.py", {"model.objectives": ("like",),
                                                   "loss.objective_weights": (1.0,),
                                                   "model.user_token": True})
  assert runs["ablation/user_token"][1] == {**every, "model.user_token": False,
                                            "model.user_gate": False}
  for switch in mo.SWITCHES:
    off = runs[f"ablation/{switch}"][1]
    assert [s for s in mo.SWITCHES if not off[f"model.{s}"]] == (
        [switch] if switch != "user_token" else ["user_gate", "user_token"])
  # All structure off: only the target-weight head is left.
  assert {k for k, v in runs["ablation/all_structure"][1].items() if v} == {
      "model.target_weights"}
  # The story dataset: the same runs, every one on the platform with one cause per objective.
  assert mo.run_specs("story") == runs
  story = mo.size_overrides(mo.parse_args(["--dataset", "story"]))
  assert story["data.objective_story"] is True and story["train.num_steps"] == 400
  assert {n for n, _ in mo.STORY.expected} <= set(mo.SWITCHES)
  # ML-100K: KuaiFormer singles on its build; no equal-weights ablation (already equal).
  ml = mo.run_specs("ml100k")
  assert ml["single/love"] == ("ml100k.py:watch", {"model.objectives": ("love",),
                                                   "loss.objective_weights": (1.0,),
                                                   "model.user_token": True})
  assert "ablation/objective_weights" not in ml and "ablation/user_token" in ml
  assert "ablation/objective_weights" not in mo.run_specs("retail")
  watch = ml100k.get_config("watch")
  assert watch.model.objectives == ("watch",) and watch.loss.objective_weights == (1.0,)
  assert not any(watch.model[k] for k in ("attention_bias", "recency_bias", "user_gate",
                                          "target_weights"))
  assert watch.data.name == "ml100k" and watch.model.user_token   # as configs/kuaiformer.py


def test_retail_specs_and_seed_statistics():
  mo = _load()
  runs = mo.run_specs("retail")
  assert runs["mpformer"] == ("retail.py", {f"model.{s}": True for s in mo.RETAIL.switches})
  assert "model.user_token" not in runs["single/buy"][1]   # retail has no user table
  assert runs["single/cart"][0] == "retail.py:buy"   # KuaiFormer on the retail build
  assert runs["sasrec/buy"][1]["model.readout"] == "last"
  assert mo.objectives_of(mo.RETAIL, "sasrec/buy") == ("buy",)
  assert mo.objectives_of(mo.RETAIL, "all_events") == ("view", "cart", "fav", "buy")
  assert runs["all_events"][1]["eval.objectives"] == ("view", "cart", "fav", "buy")
  assert "ablation/user_token" not in runs and "ablation/attention_bias" in runs
  # Mean and sample std over seeds; a gain only beyond two standard errors.
  agg = lambda values: mo.aggregate({s: {"click/hr@50": v, "params": 7, "note": "x"}
                                     for s, v in enumerate(values)})
  mp, ab = agg([0.30, 0.32, 0.31]), agg([0.20, 0.21, 0.19])
  assert mp["click/hr@50"] == pytest.approx(0.31) and mp["std"]["click/hr@50"] == pytest.approx(0.01)
  assert mp["params"] == 7 and mp["note"] == "x" and mp["seeds"] == [0, 1, 2]
  e = mo.effect(mp, ab, "click/hr@50")
  assert e["delta"] == pytest.approx(0.11) and e["se"] == pytest.approx((2 * 0.01**2 / 3)**0.5)
  assert e["verdict"] == "gain"
  assert mo.effect(mp, agg([0.30, 0.33, 0.29]), "click/hr@50")["verdict"] == "no difference"
  assert mo.effect(ab, mp, "click/hr@50")["verdict"] == "loss"
  assert mo.effect(agg([0.3]), agg([0.2]), "click/hr@50") is None   # one seed: no error bar


@pytest.mark.slow   # about 3 minutes on 2 cores; .ci/run runs the slow set after the default one
def test_quick_subset_layout_resume_and_readme(tmp_path, monkeypatch):
  mo = _load()
  argv = ["--quick", "--steps", "4", "--seeds", "2", "--only", _ONLY, "--out", str(tmp_path),
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
  assert saved["mpformer"]["seeds"] == [0, 1] and set(saved["mpformer"]["per_seed"]) == {"0", "1"}
  assert saved["mpformer"]["std"]["click/hr@50"] is not None
  effect = saved["summary"]["ablation_effects"]["ablation/target_weights"]["click/hr@50"]
  assert effect["verdict"] in ("gain", "loss", "no difference") and effect["se"] >= 0
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
  assert mo.README_TITLE in text and "| single/click |" in text and " ± " in text
  assert "| target_weights |" in text     # the effects table
  assert "](multi_objective.png)" in text

  # Scratch gone: seeds recorded in the results JSON by the same command are read back...
  assert saved["mpformer"]["per_seed"]["0"]["command"][:2] == ["-m", "launch.train"]
  shutil.rmtree(tmp_path / "runs")
  from_json = mo.main(argv)
  assert from_json["mpformer"]["per_seed"] == saved["mpformer"]["per_seed"]
  # ...but another command (here another step budget) trains.
  with pytest.raises(AssertionError, match="was retrained"):
    mo.main([a if a != "4" else "5" for a in argv])


def test_recorded_seeds_from_several_folders_and_no_train(tmp_path):
  mo = _load()
  def write(folder, seeds, value):
    folder.mkdir()
    (folder / "multi_objective_retail.json").write_text(json.dumps({
        "mpformer": {"per_seed": {str(s): {"buy/hr@50": value} for s in seeds}},
        "summary": {}}))
  write(tmp_path / "out", [0], 0.1)
  write(tmp_path / "a", [0, 1], 0.2)
  write(tmp_path / "b", [2], 0.3)
  args = mo.parse_args(["--dataset", "retail", "--out", str(tmp_path / "out"),
                        "--read_from", f"{tmp_path / 'a'},{tmp_path / 'b'}"])
  got = mo.recorded_entries(args)["mpformer"]
  # Seed 0 from --out (first wins), 1 from a, 2 from b.
  assert {s: e["buy/hr@50"] for s, e in got.items()} == {"0": 0.1, "1": 0.2, "2": 0.3}
  # Recorded by another command (no `command` here): --no_train refuses to train.
  with pytest.raises(SystemExit, match="--no_train: mpformer seed 0 is not recorded"):
    mo.main(["--dataset", "retail", "--only", "mpformer", "--no_train", "--out",
             str(tmp_path / "out"), "--scratch", str(tmp_path / "runs")])
