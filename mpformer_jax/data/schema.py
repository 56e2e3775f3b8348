"""The example schema shared by every dataset, the pipeline and the model (DESIGN 2.1).

Every dataset (synthetic or real) is described by a `DatasetSpec` and served by a
`SequenceSource`: per-user event sequences plus an item side-feature lookup. The pipeline
turns (user, position) pairs into fixed-shape examples with the keys below; the model reads
only these keys, so a new dataset needs no model change.

Conventions:
  * item ids are 1..num_items; 0 is padding (the id table has num_items + 1 rows).
  * every categorical feature value lies in [0, vocab); 0 means padding / unknown.
  * sequences are left-padded to `max_len` (the newest event is the last column).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Protocol, Sequence

import numpy as np

# Batch keys (leading batch dimension B added by the pipeline).
HISTORY_IDS = "history_ids"                  # [L] int32, left-padded item ids
HISTORY_ITEM_FEATURES = "history_item_features"    # [L, F_item] int32
HISTORY_EVENT_FEATURES = "history_event_features"  # [L, F_event] int32
USER_FEATURES = "user_features"              # [F_user] int32
TARGET_ID = "target_id"                      # [] int32
TARGET_ITEM_FEATURES = "target_item_features"  # [F_item] int32
TARGET_LABELS = "target_labels"              # [O] float32 in {0, 1}, one per objective
TARGET_LOGQ = "target_logq"                  # [] float32, log sampling prob of the target
USER_INDEX = "user_index"                    # [] int32, index of the user in its source

BATCH_KEYS = (HISTORY_IDS, HISTORY_ITEM_FEATURES, HISTORY_EVENT_FEATURES, USER_FEATURES,
              TARGET_ID, TARGET_ITEM_FEATURES, TARGET_LABELS, TARGET_LOGQ, USER_INDEX)

# Keys of one user's full sequence, as returned by `SequenceSource.user(u)`.
SEQ_ITEM_IDS = "item_ids"              # [n] int32, oldest first
SEQ_EVENT_FEATURES = "event_features"  # [n, F_event] int32
SEQ_LABELS = "labels"                  # [n, O] int8 objective labels of each event
SEQ_USER_FEATURES = "user_features"    # [F_user] int32


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static description of a dataset: sizes and vocabularies, used to build the model.

  The *_features fields are ordered (name, vocab_size) pairs; `objectives` names the label
  columns. `behaviour_feature` names the event feature holding the behaviour type of an event
  (its objective-label bitmask + 1, 0 = padding) used by attention modulation, or None.
  """
  name: str
  num_items: int
  item_features: tuple[tuple[str, int], ...]
  event_features: tuple[tuple[str, int], ...]
  user_features: tuple[tuple[str, int], ...]
  objectives: tuple[str, ...]
  behaviour_feature: str | None = None

  @property
  def item_vocab_size(self) -> int:
    return self.num_items + 1

  def objective_index(self, name: str) -> int:
    if name not in self.objectives:
      raise ValueError(f"objective {name!r} is not in dataset {self.name!r}; "
                       f"it has {self.objectives}")
    return self.objectives.index(name)


class SequenceSource(Protocol):
  """Random access to per-user event sequences (synthetic or real)."""

  spec: DatasetSpec

  def __len__(self) -> int:
    """Number of users."""

  def lengths(self) -> np.ndarray:
    """[num_users] int64 sequence length of every user (cheap, vectorised)."""

  def user(self, index: int) -> Mapping[str, np.ndarray]:
    """One user's full sequence with the SEQ_* keys."""

  def item_features(self, item_ids: np.ndarray) -> np.ndarray:
    """Side features [..., F_item] int32 of item ids (0 -> all-zero features)."""


def validate_sequence(spec: DatasetSpec, seq: Mapping[str, np.ndarray], user: int) -> None:
  """Raise a ValueError naming the field and value if a user's sequence is malformed."""
  ids = np.asarray(seq[SEQ_ITEM_IDS])
  if ids.ndim != 1 or ids.size == 0:
    raise ValueError(f"user {user}: empty or non-1-D item sequence (shape {ids.shape})")
  bad = (ids < 1) | (ids > spec.num_items)
  if bad.any():
    raise ValueError(f"user {user}: item id {int(ids[bad][0])} out of range "
                     f"[1, {spec.num_items}] in field {SEQ_ITEM_IDS!r}")
  _check_vocab(spec.event_features, seq[SEQ_EVENT_FEATURES], f"user {user} event_features")
  _check_vocab(spec.user_features, seq[SEQ_USER_FEATURES], f"user {user} user_features")
  labels = np.asarray(seq[SEQ_LABELS])
  if labels.shape != (ids.size, len(spec.objectives)):
    raise ValueError(f"user {user}: labels shape {labels.shape}, expected "
                     f"{(ids.size, len(spec.objectives))}")


def _check_vocab(features: Sequence[tuple[str, int]], values: np.ndarray, where: str) -> None:
  values = np.asarray(values)
  if values.shape[-1] != len(features):
    raise ValueError(f"{where}: {values.shape[-1]} columns, expected {len(features)}")
  if not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f"{where}: categorical features must be integers, got {values.dtype}")
  for col, (name, vocab) in enumerate(features):
    column = values[..., col]
    bad = (column < 0) | (column >= vocab)
    if bad.any():
      raise ValueError(f"{where}: feature {name!r} value {int(column[bad].flat[0])} out of "
                       f"range [0, {vocab})")


def validate_batch(spec: DatasetSpec, batch: Mapping[str, np.ndarray]) -> None:
  """Check a host batch before it reaches the device: ranges, NaNs, shapes."""
  missing = [k for k in BATCH_KEYS if k not in batch]
  if missing:
    raise ValueError(f"batch is missing keys {missing}")
  for key in (HISTORY_IDS, TARGET_ID):
    ids = np.asarray(batch[key])
    bad = (ids < 0) | (ids > spec.num_items)
    if bad.any():
      raise ValueError(f"{key}: item id {int(ids[bad].flat[0])} out of range "
                       f"[0, {spec.num_items}]")
  if (np.asarray(batch[TARGET_ID]) == 0).any():
    raise ValueError(f"{TARGET_ID}: padding id 0 used as a target")
  if (np.asarray(batch[HISTORY_IDS]) != 0).sum(axis=-1).min() == 0:
    raise ValueError(f"{HISTORY_IDS}: an example has an empty history")
  _check_vocab(spec.item_features, batch[HISTORY_ITEM_FEATURES], HISTORY_ITEM_FEATURES)
  _check_vocab(spec.item_features, batch[TARGET_ITEM_FEATURES], TARGET_ITEM_FEATURES)
  _check_vocab(spec.event_features, batch[HISTORY_EVENT_FEATURES], HISTORY_EVENT_FEATURES)
  _check_vocab(spec.user_features, batch[USER_FEATURES], USER_FEATURES)
  for key in (TARGET_LABELS, TARGET_LOGQ):
    if not np.isfinite(np.asarray(batch[key])).all():
      raise ValueError(f"{key}: NaN or infinite value")
