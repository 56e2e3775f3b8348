"""The base of the synthetic workloads that rewrite the platform's users (recurring interests,
objective stories): the same users, lengths, items and spec; only `user` differs."""
from __future__ import annotations

import numpy as np

from mpformer_jax.data.synthetic import SyntheticPlatform


class PlatformVariant:
  """A `SequenceSource` that delegates everything but `user` to a `SyntheticPlatform`."""

  def __init__(self, base: SyntheticPlatform):
    self.base, self.spec = base, base.spec

  def __len__(self) -> int:
    return len(self.base)

  def lengths(self) -> np.ndarray:
    return self.base.lengths()

  def item_features(self, item_ids: np.ndarray) -> np.ndarray:
    return self.base.item_features(item_ids)
