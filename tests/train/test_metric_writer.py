"""metrics.jsonl after an interruption: records past the restored step go, a partial line too."""
import json

import pytest

from mpformer_jax.train.metric_writer import MetricWriter, read_metrics


def _write_lines(path, steps, tail=""):
  path.write_text("".join(json.dumps({"step": s, "train/loss": 1.0 / s}) + "\n" for s in steps)
                  + tail)


def test_resume_drops_records_past_the_checkpoint_and_a_partial_line(tmp_path):
  metrics = tmp_path / "metrics.jsonl"
  _write_lines(metrics, [50, 100, 150], tail='{"step": 200, "train/lo')   # killed mid-write
  assert [r["step"] for r in read_metrics(str(tmp_path))] == [50, 100, 150]
  writer = MetricWriter(str(tmp_path), restored_step=100)
  assert [r["step"] for r in read_metrics(str(tmp_path))] == [50, 100]
  writer.write(150, {"train/loss": 0.5})
  writer.close()
  assert [r["step"] for r in read_metrics(str(tmp_path))] == [50, 100, 150]
  assert metrics.read_text().endswith("\n")
  MetricWriter(str(tmp_path)).close()           # a new run in the same workdir starts empty
  assert read_metrics(str(tmp_path)) == []


def test_a_malformed_line_inside_the_file_is_an_error(tmp_path):
  _write_lines(tmp_path / "metrics.jsonl", [50], tail='garbage\n{"step": 100}\n')
  with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not a JSON record"):
    read_metrics(str(tmp_path))
