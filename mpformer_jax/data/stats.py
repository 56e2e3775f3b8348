"""A dataset's statistics, the inputs of the one recipe (`mpformer_jax.train.recipe`).

Everything here is read from the source's lengths and split points, so it costs one pass
over [num_users] integers, never a pass over the events.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from mpformer_jax.data import examples, schema


@dataclasses.dataclass(frozen=True)
class DatasetStats:
  """Sizes and history-length distribution of a source (training part for `train_*`)."""
  name: str
  objectives: tuple[str, ...]
  num_users: int
  num_items: int
  num_events: int
  length_p50: float
  length_p90: float
  length_p99: float
  train_end: np.ndarray = dataclasses.field(repr=False)  # [U] split points, for valid_targets

  @classmethod
  def of(cls, source: schema.SequenceSource) -> DatasetStats:
    lengths = np.asarray(source.lengths(), np.int64)
    if lengths.size == 0 or lengths.sum() == 0:
      raise ValueError(f"dataset {source.spec.name!r} has no events: nothing to derive a "
                       "recipe from")
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    return cls(name=source.spec.name, objectives=tuple(source.spec.objectives),
               num_users=int(lengths.size),
               num_items=source.spec.num_items, num_events=int(lengths.sum()),
               length_p50=float(p50), length_p90=float(p90), length_p99=float(p99),
               train_end=examples.SplitPoints.of(source).train_end)

  @property
  def events_per_item(self) -> float:
    """Density of the catalogue: how often an average item was seen."""
    return self.num_events / max(self.num_items, 1)

  def num_examples(self, sampling: str) -> int:
    return examples.ExampleIndex(self.train_end, sampling).num_examples

  def valid_targets(self, sampling: str, window: int) -> tuple[float, float]:
    """Mean and std over training examples of min(target position, window).

    That is how many of an example's newest `window` history tokens have a next item, the
    rows of the per-position next-item loss; examples drawn as `ExampleIndex(sampling)`.
    """
    if sampling not in examples.SAMPLING:
      raise ValueError(f"sampling must be one of {examples.SAMPLING}, got {sampling!r}")
    last = np.maximum(self.train_end - 1, 0)  # positions 1..last are training targets
    last = last[last > 0]
    if sampling == "user":
      v = np.minimum(last, window).astype(np.float64)
      return float(v.mean()), float(v.std())
    # Every position p in 1..last, valued min(p, window): sums in closed form per user.
    m = float(window)
    a = np.minimum(last, window).astype(np.float64)          # positions below the window
    s1 = a * (a + 1) / 2 + (last - a) * m
    s2 = a * (a + 1) * (2 * a + 1) / 6 + (last - a) * m * m
    n = float(last.sum())
    mean = s1.sum() / n
    return float(mean), float(np.sqrt(max(s2.sum() / n - mean * mean, 0.0)))
