"""benchmarks/prepare.py: the synthetic log is the promised shape, and a tiny build reports."""
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pyarrow.csv as pa_csv
import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]


def test_log_shape_ids_zipf_and_interleaving(tmp_path, load_benchmark):
  prepare = load_benchmark("prepare")
  events = 200_000
  path, meta = prepare.cached_log(tmp_path, events, seed=3, chunk_rows=50_000)
  assert not meta["cached"] and meta["events"] == events
  assert meta["users"] == events // 100 and meta["items"] == events // 50
  assert path.read_text()[:40].startswith("user_id,item_id,timestamp,event\n")
  log = pa_csv.read_csv(path).to_pydict()
  users, items, ts, ev = (log[c] for c in ("user_id", "item_id", "timestamp", "event"))
  assert len(users) == events and meta["file_bytes"] == path.stat().st_size
  assert all(re.fullmatch(r"u\d{7}", u) for u in users[:1000])
  assert all(re.fullmatch(r"i\d{6}", i) for i in items[:1000])
  assert len(set(users)) <= meta["users"] and len(set(users)) > 0.99 * meta["users"]

  shares = {b: ev.count(b) / events for b in prepare.BEHAVIOURS}
  assert shares == pytest.approx(dict(zip(prepare.BEHAVIOURS, prepare.BEHAVIOUR_P)), abs=0.01)
  assert meta["behaviour_counts"] == {b: ev.count(b) for b in prepare.BEHAVIOURS}

  # Zipf(1.1): log count against log rank has slope ~ -1.1 over the head.
  _, counts = np.unique(np.asarray(items), return_counts=True)
  top = np.sort(counts)[::-1][:200]
  slope = np.polyfit(np.log(np.arange(1, 201)), np.log(top), 1)[0]
  assert -1.3 < slope < -0.9, slope
  assert top[0] > 50 * np.median(counts)

  # Timestamps strictly increase within a user; users' rows interleave in the file.
  last, runs, prev = {}, 0, None
  for u, t in zip(users, ts):
    assert t > last.get(u, -1)
    last[u] = t
    runs += u != prev
    prev = u
  assert runs > 2 * len(last)
  lengths = np.bincount(np.unique(np.asarray(users), return_inverse=True)[1])
  assert lengths.min() >= 1 and lengths.max() > 4 * np.median(lengths)

  # A second call reuses the file (same facts), a different size does not.
  again_path, again = prepare.cached_log(tmp_path, events, seed=3)
  assert again_path == path and again["cached"] and again["file_bytes"] == meta["file_bytes"]
  assert not list(tmp_path.glob("*.partial"))


def test_same_seed_same_log_and_exact_lengths(tmp_path, load_benchmark):
  prepare = load_benchmark("prepare")
  a = prepare.generate(tmp_path / "a.csv", 5_000, seed=1, chunk_rows=700)
  b = prepare.generate(tmp_path / "b.csv", 5_000, seed=1, chunk_rows=700)
  assert a["file_bytes"] == b["file_bytes"]
  assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
  lengths = prepare.user_lengths(1_000_003, 10_000, np.random.default_rng(0))
  assert lengths.sum() == 1_000_003 and lengths.min() >= 1


def test_tiny_build_writes_json_png_and_readme(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\n## Other\nkeep me\n")
  cmd = [sys.executable, str(_REPO / "benchmarks" / "prepare.py"), "--sizes", "20000",
         "--out", str(tmp_path), "--workdir", str(tmp_path / "work"), "--update_readme",
         "--readme", str(readme)]
  proc = subprocess.run(cmd, cwd=_REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  saved = json.loads((tmp_path / "prepare.json").read_text())
  (row,) = saved["rows"]
  assert row["events_generated"] == row["rows_in"] == 20_000
  assert row["rows_per_second"] > 0 and row["build_seconds"] > 0
  assert row["peak_rss_bytes"] > 0 and row["child_peak_rss_bytes"] > 0
  dropped = row["dropped"] or {}
  assert row["events"] == row["rows_in"] - sum(v for v in dropped.values()
                                               if isinstance(v, int)), dropped
  assert 0 < row["users"] <= 200 and 0 < row["items"] <= 400
  assert (tmp_path / "prepare.png").stat().st_size > 0
  assert not (tmp_path / "work" / "build_20000_seed0").exists()  # The dataset is deleted.
  assert (tmp_path / "work" / "events_20000_seed0.csv").exists()  # The log is cached.
  text = readme.read_text()
  assert "keep me" in text and "## Dataset build at scale" in text and "](prepare.png)" in text
  assert "| 20,000 |" in text
