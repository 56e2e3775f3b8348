"""benchmarks/quality_curves.py: the validation curve against training minutes, by hand."""
import json


def _workdir(tmp_path, records, remove_seen=True):
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  (tmp_path / "config.json").write_text(json.dumps(
      {"config": {"eval": {"remove_seen": remove_seen}}}))
  return tmp_path


def test_curve_minutes_and_threshold(load_benchmark, tmp_path):
  qc = load_benchmark("quality_curves")
  records = [{"step": 100, "train/steps_per_sec": 1.0},           # 100 s
             {"step": 200, "train/steps_per_sec": 0.5},           # + 200 s
             {"step": 200, "eval/ndcg@10": 0.10},
             {"step": 250, "eval/ndcg@10": 0.12},                 # mid-window: 300 + 25 s
             {"step": 300, "train/steps_per_sec": 2.0},           # + 50 s
             {"step": 300, "eval/ndcg@10": 0.18},
             {"step": 300, "final": True, "eval/ndcg@10": 0.18},
             {"step": 400, "train/steps_per_sec": 1.0},           # + 100 s
             {"step": 400, "final": True, "eval/ndcg@10": 0.19}]  # resumed, longer
  curve = qc.validation_curve(_workdir(tmp_path, records))
  assert curve == {"variant": "seen removed", "points": [[5.0, 200, 0.10], [5.42, 250, 0.12],
                                                      [5.83, 300, 0.18], [7.5, 400, 0.19]]}
  assert qc.minutes_to(curve, 0.1726) == 5.83 and qc.minutes_to(curve, 0.2) is None
  lines = qc.summary_lines("ml1m", {"ours": {"curve": curve}, "old": {}})
  assert lines == ["- time to quality, `ours`: validation NDCG@10 (seen removed) passes "
                   "gSASRec's 0.1726 at 5.8 training minutes; best 0.1900 at step 400 "
                   "(7.5 min)."]
  qc.plot({"ml1m": {"ours": {"curve": curve}, "meta": {}}}, tmp_path / "t.png")
  assert (tmp_path / "t.png").stat().st_size > 0
