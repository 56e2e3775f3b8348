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

# Evaluation examples only (not a model input): every distinct item the user had before the
# target, the target itself spared, 0-padded: what "seen removed" takes out of the ranking.
# The history above holds only the newest max_len events; published "seen removed" numbers
# remove the whole history (gSASRec's filter_rated, aprec's FilterSeenRecommender).
SEEN_IDS = "seen_ids"                        # [S] int32

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


# Kinds of `InvalidRecord` (with the field, what a dropped user is counted by).
EMPTY, PADDING, OUT_OF_RANGE, MISSING = "empty", "padding", "out of range", "missing"
NON_FINITE, WRONG_DTYPE, WRONG_SHAPE = "NaN or inf", "wrong dtype", "wrong shape"


class InvalidRecord(ValueError):
  """A record that breaks the schema, named by dataset, record and field.

  Why a subclass: `screening` drops exactly these (a malformed user) and counts them by
  (field, kind); any other error (an unreadable build, a bug) still stops the run.
  """

  def __init__(self, dataset: str, field: str, problem: str, *, kind: str,
               user: int | None = None, row: int | None = None,
               position: int | None = None, event: int | None = None):
    self.dataset, self.field, self.problem, self.kind = dataset, field, problem, kind
    self.user, self.row, self.position, self.event = user, row, position, event
    super().__init__(f"dataset {dataset!r}, {self.record}, field {field!r}: {problem}")

  @property
  def record(self) -> str:
    """E.g. "user 17 (batch row 3), target position 5"; "batch" when no record is known."""
    parts = []
    if self.user is not None:
      parts.append(f"user {self.user}" + (f" (batch row {self.row})" if self.row is not None
                                          else ""))
    elif self.row is not None:
      parts.append(f"batch row {self.row}")
    if self.position is not None:
      parts.append(f"target position {self.position}")
    if self.event is not None:
      parts.append(f"event {self.event}")
    return ", ".join(parts) or "batch"

  def at_position(self, position: int) -> InvalidRecord:
    """The same error naming the example's target position (known to the caller only)."""
    return InvalidRecord(self.dataset, self.field, self.problem, kind=self.kind,
                         user=self.user, row=self.row, position=position, event=self.event)


def _first(bad: np.ndarray) -> tuple[int, ...]:
  """Index of the first True of a mask (which record / column failed)."""
  return tuple(int(i) for i in np.argwhere(bad)[0])


def check_layout(spec: DatasetSpec, seq: Mapping[str, np.ndarray], user: int) -> None:
  """Raise `InvalidRecord` on an empty sequence or a field of the wrong dtype or shape.

  O(1) (no value is read), so the pipeline runs it on every example: numpy would otherwise
  cast a float id or feature to int silently, or fail on a mis-shaped one with no names.
  """
  ids = np.asarray(seq[SEQ_ITEM_IDS])
  if ids.size == 0:
    raise InvalidRecord(spec.name, SEQ_ITEM_IDS, "empty sequence (no events)", kind=EMPTY,
                        user=user)
  n = ids.size
  fields = ((SEQ_ITEM_IDS, ids, (n,), (), "iu"),
            (SEQ_EVENT_FEATURES, seq[SEQ_EVENT_FEATURES], (n, len(spec.event_features)),
             [f for f, _ in spec.event_features], "iu"),
            (SEQ_USER_FEATURES, seq[SEQ_USER_FEATURES], (len(spec.user_features),),
             [f for f, _ in spec.user_features], "iu"),
            (SEQ_LABELS, seq[SEQ_LABELS], (n, len(spec.objectives)), spec.objectives, "biuf"))
  for field, values, shape, names, kinds in fields:
    values = np.asarray(values)
    _check_shape(spec.name, field, values.shape, shape, names, user=user)
    if values.dtype.kind not in kinds:
      raise InvalidRecord(spec.name, field, f"dtype {values.dtype}, expected "
                          f"{'integers' if kinds == 'iu' else 'numbers'}", kind=WRONG_DTYPE,
                          user=user)


def _check_shape(dataset: str, field: str, shape: tuple[int, ...], expected: tuple[int, ...],
                 names: Sequence[str], **record) -> None:
  """Shape check; a wrong last dimension names the columns the spec expects."""
  if shape == expected:
    return
  if names and shape[:-1] == expected[:-1]:
    extra = " (labels for objectives the dataset does not have)" if (
        field in (SEQ_LABELS, TARGET_LABELS) and shape[-1] > expected[-1]) else ""
    problem = f"{shape[-1]} columns, expected {expected[-1]}: {tuple(names)}{extra}"
  else:
    problem = f"shape {shape}, expected {expected}"
  raise InvalidRecord(dataset, field, problem, kind=WRONG_SHAPE, **record)


def validate_sequence(spec: DatasetSpec, seq: Mapping[str, np.ndarray], user: int) -> None:
  """Raise `InvalidRecord` naming dataset, user, event and field if a sequence is malformed.

  Checks the layout (`check_layout`), then the values: item ids in [1, num_items] and not all
  padding, categorical features in their vocabularies, labels finite and in {0, 1}.
  """
  check_layout(spec, seq, user)
  ids = np.asarray(seq[SEQ_ITEM_IDS])
  if not ids.any():
    raise InvalidRecord(spec.name, SEQ_ITEM_IDS, "all-padding sequence: every item id is 0",
                        kind=PADDING, user=user)
  bad = (ids < 1) | (ids > spec.num_items)
  if bad.any():
    (event,) = _first(bad)
    raise InvalidRecord(spec.name, SEQ_ITEM_IDS, f"item id {int(ids[event])} out of range "
                        f"[1, {spec.num_items}]", kind=OUT_OF_RANGE, user=user, event=event)
  _check_vocab(spec.name, SEQ_EVENT_FEATURES, spec.event_features, seq[SEQ_EVENT_FEATURES],
               lambda at: dict(user=user, event=at[0]))
  _check_vocab(spec.name, SEQ_USER_FEATURES, spec.user_features, seq[SEQ_USER_FEATURES],
               lambda at: dict(user=user))
  _check_labels(spec, SEQ_LABELS, seq[SEQ_LABELS], lambda at: dict(user=user, event=at[0]))


def _check_vocab(dataset: str, field: str, features: Sequence[tuple[str, int]],
                 values: np.ndarray, record_at) -> None:
  """Categorical columns [..., F]: count and integer dtype, then each in [0, vocab).

  `record_at(index)` names the record of a bad value from its index (without the column); a
  wrong count or dtype concerns the whole array, so it names none.
  """
  values = np.asarray(values)
  _check_shape(dataset, field, values.shape, values.shape[:-1] + (len(features),),
               [name for name, _ in features])
  if not np.issubdtype(values.dtype, np.integer):
    raise InvalidRecord(dataset, field, f"categorical features must be integers, got "
                        f"{values.dtype}", kind=WRONG_DTYPE)
  for col, (name, vocab) in enumerate(features):
    column = values[..., col]
    bad = (column < 0) | (column >= vocab)
    if bad.any():
      at = _first(bad)
      raise InvalidRecord(dataset, field, f"feature {name!r} value {int(column[at])} out of "
                          f"range [0, {vocab})", kind=OUT_OF_RANGE, **record_at(at))


def _check_labels(spec: DatasetSpec, field: str, labels: np.ndarray, record_at) -> None:
  """Objective labels [..., O]: finite and in {0, 1}, naming the objective of a bad one."""
  labels = np.asarray(labels)
  non_finite = ~np.isfinite(labels)
  not_binary = (labels != 0) & (labels != 1)
  for bad, kind, problem in ((non_finite, NON_FINITE, "is {}"),
                             (not_binary, OUT_OF_RANGE, "value {} not in {{0, 1}}")):
    if bad.any():
      at = _first(bad)
      raise InvalidRecord(spec.name, field, f"label {spec.objectives[at[-1]]!r} "
                          + problem.format(labels[at]), kind=kind, **record_at(at[:-1]))


def validate_batch(spec: DatasetSpec, batch: Mapping[str, np.ndarray]) -> None:
  """Check a host batch before it reaches the device: keys, dtypes, ranges, NaNs, shapes.

  Vectorised over the batch; an error names the batch row and its `user_index`.
  """
  missing = [k for k in BATCH_KEYS if k not in batch]
  if missing:
    raise InvalidRecord(spec.name, missing[0], f"batch is missing keys {missing}",
                        kind=MISSING)
  users = np.asarray(batch[USER_INDEX]).reshape(-1)

  def record_at(at: tuple[int, ...]) -> dict[str, int | None]:
    return dict(row=at[0], user=int(users[at[0]]) if at[0] < users.size else None)

  for key in (HISTORY_IDS, TARGET_ID):
    _check_batch_ids(spec, key, np.asarray(batch[key]), record_at)
  for key, features in ((HISTORY_ITEM_FEATURES, spec.item_features),
                        (TARGET_ITEM_FEATURES, spec.item_features),
                        (HISTORY_EVENT_FEATURES, spec.event_features),
                        (USER_FEATURES, spec.user_features)):
    _check_vocab(spec.name, key, features, batch[key], record_at)
  labels = np.asarray(batch[TARGET_LABELS])
  _check_shape(spec.name, TARGET_LABELS, labels.shape,
               labels.shape[:-1] + (len(spec.objectives),), spec.objectives)
  _check_labels(spec, TARGET_LABELS, labels, record_at)
  bad = ~np.isfinite(np.asarray(batch[TARGET_LOGQ]))
  if bad.any():
    raise InvalidRecord(spec.name, TARGET_LOGQ, "NaN or infinite value", kind=NON_FINITE,
                        **record_at(_first(bad)))


def _check_batch_ids(spec: DatasetSpec, key: str, ids: np.ndarray, record_at) -> None:
  """Batch item ids: integers in [0, num_items], no padding target, no all-padding history."""
  if ids.dtype.kind not in "iu":
    raise InvalidRecord(spec.name, key, f"item ids must be integers, got {ids.dtype}",
                        kind=WRONG_DTYPE)
  bad = (ids < 0) | (ids > spec.num_items)
  if bad.any():
    at = _first(bad)
    raise InvalidRecord(spec.name, key, f"item id {int(ids[at])} out of range "
                        f"[0, {spec.num_items}]", kind=OUT_OF_RANGE, **record_at(at))
  is_target = key == TARGET_ID
  padding = (ids == 0) if is_target else ~ids.any(axis=-1)
  if padding.any():
    problem = ("padding id 0 used as a target" if is_target
               else "all-padding history: the example has no non-zero item id")
    raise InvalidRecord(spec.name, key, problem, kind=PADDING, **record_at(_first(padding)))
