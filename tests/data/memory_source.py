"""An in-memory `SequenceSource` over given sequences, for tests that build their own users."""
from __future__ import annotations

import numpy as np

from mpformer_jax.data import schema


class MemorySource:
  """Users are `seqs` (dicts with the SEQ_* keys); item i has the one feature i % 2 + 1."""

  def __init__(self, seqs, spec: schema.DatasetSpec):
    self.spec, self._seqs = spec, list(seqs)

  def __len__(self):
    return len(self._seqs)

  def lengths(self):
    return np.array([len(s[schema.SEQ_ITEM_IDS]) for s in self._seqs], np.int64)

  def user(self, index):
    return self._seqs[index]

  def item_features(self, item_ids):
    ids = np.asarray(item_ids)
    return np.where(ids > 0, ids % 2 + 1, 0)[..., None].astype(np.int32)
