"""benchmarks/retrieval.py: the quick sweep runs, resumes, and writes sane JSON, PNG, README."""
import json
import math

import numpy as np


def test_quick_sweep_resume_and_readme(tmp_path, load_benchmark, monkeypatch):
  retrieval = load_benchmark("retrieval")
  rows = retrieval.main(["--quick", "--out", str(tmp_path)])
  saved = json.loads((tmp_path / "retrieval.json").read_text())["rows"]
  assert len(saved) == len(rows) > 0
  assert {r["num_items"] for r in saved} == {10_000, 100_000}
  assert {r["method"] for r in saved} == {"exact", "scann"}
  for r in saved:
    for k in (10, 100, 200):
      assert math.isfinite(r[f"recall@{k}"]) and 0.0 <= r[f"recall@{k}"] <= 1.0
    assert r["qps"] > 0 and math.isfinite(r["qps"])
    if r["method"] == "exact":
      assert r["recall@100"] == 1.0
    else:
      assert r["build_s"] > 0 and r["qps_1thread"] > 0
  assert sum(r.get("chosen", False) for r in saved) == 2  # One ScaNN setting per size.
  assert (tmp_path / "retrieval.png").stat().st_size > 0

  # Resume: nothing is re-measured, so the rerun is fast and rows are unchanged.
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\n## Other\nkeep me\n")
  def must_not_run(*unused, **unused_kw):
    raise AssertionError("a saved corpus was rebuilt and re-measured")
  monkeypatch.setattr(retrieval, "synthetic_embeddings", must_not_run)
  again = retrieval.main(["--quick", "--out", str(tmp_path), "--update_readme",
                          "--readme", str(readme)])
  assert [r["qps"] for r in again] == [r["qps"] for r in rows]
  text = readme.read_text()
  assert "keep me" in text and "## Retrieval: exact vs ScaNN" in text
  assert "| 100,000 |" in text and "](retrieval.png)" in text
  assert "### Synthetic embeddings" in text
  retrieval.main(["--quick", "--out", str(tmp_path), "--update_readme", "--readme", str(readme)])
  assert readme.read_text().count(retrieval.README_START) == 1

  # A trained model's embeddings (launch.evaluate --export_embeddings): own table and PNG,
  # next to the synthetic sweep in the same README section.
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "emb.npz", items=rng.normal(size=(2001, 8)).astype(np.float32),
           queries=rng.normal(size=(16, 2, 8)).astype(np.float32))
  trained = retrieval.main(["--quick", "--out", str(tmp_path), "--embeddings",
                            str(tmp_path / "emb.npz"), "--update_readme", "--readme", str(readme)])
  assert {r["num_items"] for r in trained} == {2000} and {r["num_queries"] for r in trained} == {16}
  text = readme.read_text()
  assert "### Synthetic embeddings" in text and "| 100,000 |" in text
  assert "### A trained model's embeddings (emb.npz)" in text and "| 2,000 |" in text
  assert (tmp_path / "retrieval_emb.png").stat().st_size > 0


def test_synthetic_embeddings_shapes_and_padding(load_benchmark):
  retrieval = load_benchmark("retrieval")
  queries, items = retrieval.synthetic_embeddings(1000, 8, num_interests=4, dim=16)
  assert queries.shape == (8, 4, 16) and items.shape == (1001, 16)
  assert not items[0].any()  # Row 0 is padding.
  assert items.dtype == queries.dtype == "float32"
