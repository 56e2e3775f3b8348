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
  """Appends records; only process 0 writes (multi-host runs share one workdir)."""

  def __init__(self, workdir: str):
    self._active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = SummaryWriter(os.path.join(workdir, "tb")) if self._active else None

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
  """All records of `<workdir>/metrics.jsonl` (empty if none)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
