"""benchmarks/quality.py: run specs, published numbers, and a quick ML-100K run that resumes."""
import json
import math
import os
import pathlib

import pytest


DATA = pathlib.Path(os.environ.get(
    "MPFORMER_DATA", pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"))
OBJECTIVES = ("watch", "like", "love")


def _in_unit(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and 0.0 <= x <= 1.0


def test_run_specs_and_published(load_benchmark):
  q = load_benchmark("quality")
  assert q.run_specs("ml1m") == {"ours": ("configs/ml1m.py", {}),
                                 "sasrec": ("configs/sasrec_ml1m.py", {})}
  assert set(q.run_specs("beauty")) == {"ours", "sasrec"}
  for d in q.DATASETS:
    for config, _ in q.run_specs(d).values():
      assert (q.REPO / config).is_file()
  specs = q.run_specs("ml100k")
  assert specs["mpformer"] == ("configs/ml100k.py", {})
  assert specs["single/like"] == ("configs/ml100k.py", {
      "model.objectives": ("like",), "loss.objective_weights": (1.0,),
      "model.user_token": True, "model.recency_bias": False,
      "model.target_weights": False})  # configs/kuaiformer.py's, against configs/base.py
  pub = q.PUBLISHED["ml1m"]
  assert pub["gSASRec"]["variant"] == "seen removed" and pub["HSTU"]["variant"] == "all items"
  assert pub["gSASRec"]["ndcg@10"] == 0.1726 and pub["gSASRec"]["recall@10"] == 0.3003
  assert pub["SASRec+ (full CE)"]["ndcg@10"] == 0.1821
  assert q.PUBLISHED["beauty"]["SASRec+SS (256 negatives)"]["ndcg@10"] == 0.0531


def test_configs_are_the_recipe_with_the_data_named():
  """ours and SASRec on each dataset: the recipe's AUTO fields, only data.name set apart."""
  from configs import beauty, ml1m, recipe as rc  # pylint: disable=import-outside-toplevel
  from configs import sasrec_beauty, sasrec_ml1m  # pylint: disable=import-outside-toplevel
  from mpformer_jax.train import recipe  # pylint: disable=import-outside-toplevel
  ours = {"ml1m": ml1m.get_config(), "amazon_beauty": beauty.get_config()}
  for name, c in ours.items():
    base = rc.get_config()
    assert c.data.name == name and c.eval.num_users == 0
    assert set(recipe.auto_fields(c)) == set(recipe.MARKERS)
    assert c.model == base.model and c.loss == base.loss and c.train == base.train
    assert c.recipe == base.recipe
  for c in (sasrec_ml1m.get_config(), sasrec_beauty.get_config()):
    assert c.model.readout == "last" and c.data.sampling == "user"
    assert c.model.output_skip == "none"  # not the recipe's rule: SASRec has no skip
    assert c.loss.negatives == "catalogue" and c.model.compression.schedule == ()


def test_tables_and_plot_single_objective(load_benchmark, tmp_path):
  """The README section and plot of a single-objective dataset with published numbers."""
  q, qt = load_benchmark("quality"), load_benchmark("quality_tables")
  run = dict(config="configs/ml1m.py", objectives=["watch"], num_users=6040, num_items=3416,
             train_seconds=12.0, params=1000, **{"qps/exact": 5.0, "qps/scann": 9.0})
  for prefix, shift in (("test", 0.0), ("test_seen_removed", 0.01)):
    run.update({f"{prefix}/ndcg@10": 0.1 + shift, f"{prefix}/recall@10": 0.2 + shift,
                f"{prefix}/scann_recall@200": 0.9})
  meta = dict(machine=dict(cpu="cpu", cores=2, jax_version="0", platform="cpu"),
              date="2030-01-01T00:00:00", size_overrides={})
  baseline = dict(objectives=["watch"], **{"test_seen_removed/ndcg@10": 0.05,
                                            "test_seen_removed/recall@10": 0.07})
  results = {"ml1m": {"ours": run, "published": q.PUBLISHED["ml1m"], "meta": meta,
                      "baselines": {"transitions": baseline}}}
  text = qt.readme_section(results, "", "quality.png", "quality_time.png")
  assert "| ours (configs/ml1m.py) | watch | seen removed | 0.1100 | 0.2100 |" in text
  assert "- `ours`: evaluated when `seen removed` excluded only the newest" in text
  run["eval_protocol"] = qt.EVAL_PROTOCOL  # re-evaluated: the note goes
  assert "excluded only the newest" not in qt.readme_section(results, "", "q.png", "t.png")
  assert ("| baseline: transitions (most frequent training successor of the newest item) | "
          "watch | seen removed | 0.0500 | 0.0700 | - | - | | | | | |") in text
  assert "| published: gSASRec, Petrov & Macdonald 2023 | | seen removed | 0.1726 |" in text
  assert "(2 cores, jax 0 cpu), 2030-01-01. Leave-one-out" in text
  results["beauty"] = dict(results["ml1m"], meta=dict(meta, date="2029-12-30T00:00:00"))
  assert "(2 cores, jax 0 cpu), 2029-12-30 to 2030-01-01. Leave-one-out" in qt.readme_section(
      results, "", "q.png", "t.png")
  other = dict(meta["machine"], cpu="Other CPU", cores=1)
  results["beauty"]["meta"] = dict(results["beauty"]["meta"], machine=other)
  assert (f"on Other CPU (1 core, jax 0 cpu); {meta['machine']['cpu']} (2 cores, jax 0 "
          "cpu), 2029-12-30") in qt.readme_section(results, "", "q.png", "t.png")
  del results["beauty"]
  qt.plot(results, tmp_path / "q.png")
  assert (tmp_path / "q.png").stat().st_size > 0


def _must_not_run(*args, **kwargs):
  raise AssertionError(f"a finished run was retrained: {args[:2]}")


@pytest.mark.slow  # about 70 s on 2 cores; .ci/run runs the slow set after the default one
def test_quick_ml100k_layout_resume_and_readme(load_benchmark, tmp_path, monkeypatch):
  q, qt = load_benchmark("quality"), load_benchmark("quality_tables")
  argv = ["--datasets", "ml100k", "--quick", "--steps", "20", "--only", "mpformer",
          "--out", str(tmp_path), "--scratch", str(tmp_path / "runs"),
          "--tfds_dir", str(tmp_path / "tfds")]
  out = q.main(argv)
  saved = json.loads((tmp_path / "quality_ml100k.json").read_text())
  assert saved == out["ml100k"] and set(saved) == {"mpformer", "published", "meta",
                                                   "baselines"}
  e = saved["mpformer"]
  for b in saved["baselines"].values():  # count baselines, the same targets and variants
    assert b["objectives"] == list(OBJECTIVES) and b["num_items"] == 1682
    for o in OBJECTIVES:
      assert b[f"test/{o}/count"] >= e[f"test/{o}/count"]  # every user; --quick: 256
      assert _in_unit(b[f"test/{o}/ndcg@10"])
      assert b[f"test_seen_removed/{o}/hr@50"] >= b[f"test/{o}/hr@50"] - 1e-9
  assert e["config"] == "configs/ml100k.py:test" and e["step"] == 20
  assert e["objectives"] == list(OBJECTIVES) and e["num_items"] == 1682
  for o in OBJECTIVES:
    assert e[f"test/{o}/count"] > 0
    for m in ("hr@10", "hr@50", "hr@200", "ndcg@10", "ndcg@50", "ndcg@200"):
      assert _in_unit(e[f"test/{o}/{m}"]) and _in_unit(e[f"test_seen_removed/{o}/{m}"])
      assert e[f"test_seen_removed/{o}/{m}"] >= e[f"test/{o}/{m}"] - 1e-9
    assert _in_unit(e[f"test/{o}/scann_recall@200"]) and _in_unit(e[f"scann/test/{o}/hr@10"])
  for key in ("train_seconds", "qps/exact", "qps/scann"):
    assert math.isfinite(e[key]) and e[key] > 0
  assert e["params"] > 0 and saved["meta"]["machine"]["cores"] >= 1
  assert (tmp_path / "quality.png").stat().st_size > 0

  # Resume: the run is read back from the JSON, not retrained; README keeps other sections.
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\n## Other\nkeep me\n")
  run_one = q.run_one
  monkeypatch.setattr(q, "run_one", _must_not_run)
  again = q.main(argv + ["--update_readme", "--readme", str(readme)])
  assert again["ml100k"]["mpformer"] == e
  assert q.main(argv + ["--tables_only", "--overwrite"])["ml100k"]["mpformer"] == e
  q.main(argv + ["--update_readme", "--readme", str(readme)])
  text = readme.read_text()
  assert "keep me" in text and text.count(qt.README_START) == text.count(qt.README_END) == 1
  assert qt.README_TITLE in text and "](quality.png)" in text and "](quality_time.png)" in text
  assert e["curve"]["variant"] == "all items" and e["curve"]["points"][-1][1] == 20
  assert "| mpformer (configs/ml100k.py:test) | love | all items |" in text

  # --reevaluate: the stored checkpoint is evaluated again (both retrievals), not retrained.
  evaluated = []
  monkeypatch.setattr(q, "run_one", run_one)
  monkeypatch.setattr(q.trainer, "train", _must_not_run)
  stored = {p.name: p.read_text() for p in (tmp_path / "runs").rglob("eval_*.json")}

  def evaluate(argv, workdir, retrieval):  # the stored result, written again
    evaluated.append(retrieval)
    assert not (workdir / f"eval_{retrieval}.json").exists()  # --reevaluate removed it
    (workdir / f"eval_{retrieval}.json").write_text(stored[f"eval_{retrieval}.json"])
    return json.loads(stored[f"eval_{retrieval}.json"])
  monkeypatch.setattr(q, "_evaluate", evaluate)
  again = q.main(argv + ["--reevaluate"])
  assert evaluated == ["exact", "scann"]
  fresh = again["ml100k"]["mpformer"]
  assert fresh["step"] == 20 and fresh["test/love/ndcg@10"] == e["test/love/ndcg@10"]


def test_count_baselines_on_the_synthetic_platform(load_benchmark):
  qt, qb = load_benchmark("quality_tables"), load_benchmark("quality_baselines")
  from configs import base  # pylint: disable=import-outside-toplevel
  data = base.get_config("tiny").data
  out = qb.compute(data, None, qt.VARIANTS, lambda p, o, m: f"{p}/{o}/{m}")
  assert set(out) == {"popularity", "transitions"}
  for e in out.values():
    assert e["objectives"] == list(base.get_config("tiny").model.objectives)
    for o in e["objectives"]:
      for m in ("hr@10", "ndcg@10", "hr@200"):
        assert _in_unit(e[f"test/{o}/{m}"])
        assert e[f"test_seen_removed/{o}/{m}"] >= e[f"test/{o}/{m}"] - 1e-9
  # Topics drift slowly on the platform, so the newest item says more than popularity.
  assert out["transitions"]["test/click/hr@200"] > out["popularity"]["test/click/hr@200"]


def test_config_digest_follows_the_resolved_config(load_benchmark, tmp_path):
  """Editing a config's values retrains (new digest); the same values read back."""
  q = load_benchmark("quality")
  def digest(steps, overrides=None):
    path = tmp_path / f"c{steps}.py"
    path.write_text("from configs import base\n\n\ndef get_config(arg=None):\n"
                    f"  c = base.get_config()\n  c.train.num_steps = {steps}\n  return c\n")
    return q.config_digest(str(path), overrides or {})
  assert digest(5) == digest(5) != digest(6)
  assert digest(5) != digest(5, {"train.batch_size": 8})
  # The workdir (training) digest ignores evaluation settings; the entry's does not.
  path = str(tmp_path / "c5.py")
  ev = {"eval.scann.num_leaves_to_search": 7}
  assert q.config_digest(path, ev) != q.config_digest(path, {})
  assert (q.config_digest(path, ev, training_only=True)
          == q.config_digest(path, {}, training_only=True))
  assert q.config_digest("configs/ml1m.py", {}) != q.config_digest("configs/sasrec_ml1m.py", {})


def test_seed_spread_by_hand(load_benchmark):
  qt = load_benchmark("quality_tables")
  def run(ndcg, recall):
    return {"step": 500, "objectives": ["watch"], "test/ndcg@10": ndcg,
            "test/recall@10": recall, "test_seen_removed/ndcg@10": ndcg + 0.01,
            "test_seen_removed/recall@10": recall + 0.01}
  runs = {"ours/seed0": run(0.10, 0.20), "ours/seed1": run(0.12, 0.22),
          "ours/seed2": run(0.14, 0.24), "sasrec": run(0.1, 0.2)}
  assert qt.seed_lines("ml1m", runs) == [
      "- seed spread, `ours` (3 seeds, 500 steps): NDCG@10 all items 0.1200 ± 0.0200; "
      "Recall@10 all items 0.2200 ± 0.0200; NDCG@10 seen removed 0.1300 ± 0.0200; "
      "Recall@10 seen removed 0.2300 ± 0.0200."]
