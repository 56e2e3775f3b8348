"""Metrics to `<workdir>/metrics.jsonl` (one JSON object a line) and TensorBoard scalars."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import jax
from tensorboardX import SummaryWriter


def _plain(value: Any) -> Any:
  """numpy / jax scalars -> Python numbers; NaN and inf -> None so the JSON stays valid."""
  if hasattr(value, "item") and getattr(value, "size", 1) == 1:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


class MetricWriter:
  """Appends records; only process 0 writes (multi-host runs share one workdir).

  `restored_step` is the step the run starts from (0 for a new run): records past it, written
  before an interruption by steps that will now run again, are dropped, and so is a partial
  last line, so that after any number of resumes each step appears once.
  """

  def __init__(self, workdir: str, restored_step: int = 0):
    self._active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = SummaryWriter(os.path.join(workdir, "tb")) if self._active else None
    if self._active and os.path.exists(self.path):
      self._truncate(restored_step)

  def _truncate(self, step: int) -> None:
    kept = [r for r in read_metrics(os.path.dirname(self.path)) if r["step"] <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(tmp, self.path)      # atomic: a kill here leaves the old or the new file

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self._active:
      return
    record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for key, value in record.items():
      if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
        # TensorBoard tag names cannot hold '@': hr@50 -> hr_at_50.
        self._tb.add_scalar(key.replace("@", "_at_"), value, int(step))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """All records of `<workdir>/metrics.jsonl` (empty if none).

  A partial last line (the run was killed while writing it) is skipped; a malformed line
  elsewhere is an error naming the file and line.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
  records = []
  for k, (n, line) in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if k == len(lines) - 1 and not line.endswith("\n"):
        break                                  # partial last line
      raise ValueError(f"{path}:{n}: not a JSON record: {e}") from None
  return records
