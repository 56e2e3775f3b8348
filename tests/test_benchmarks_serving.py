"""benchmarks/serving.py --quick: every cell measured, the cost comparison, JSON, PNG, README."""
import numpy as np
import pytest

from mpformer_jax.serving.loader import ServedModel


@pytest.mark.parametrize("user_token", [False, True])
def test_a_published_model_serves_with_or_without_the_user_token(load_benchmark, tmp_path,
                                                                  user_token):
  """The synthetic platform has user features. A model that does not read them (the default)
  still takes them as tower inputs, so its artifact must encode them at that width (zeros);
  CI's slow run caught the service refusing such an artifact."""
  serving = load_benchmark("serving")
  c = serving.synthetic_config(500, 300, "exact", quick=True)
  c.model.update(user_token=user_token, user_gate=False)
  built = serving.publish(c, tmp_path, 300, requests=4)
  served = ServedModel(built["directory"], max_batch=2)
  tables = np.load(f"{built['directory']}/tables.npz")
  assert ("user_ids" in tables.files) == user_token   # the user table only when it is read
  user = str(tables["user_ids"][0]) if user_token else "0"
  answers = served.recommend([served.encode({**body, "user": user})
                              for body in built["bodies"][:2]])
  for a in answers:
    assert a["source"] == "model" and a["info"]["known_user"] == user_token
    assert all(len(o["items"]) == 50 for o in a["objectives"].values())


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
