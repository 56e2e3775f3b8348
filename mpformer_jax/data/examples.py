"""Held-out splits and examples: (user, target position) pairs -> fixed-shape schema batches.

Split (DESIGN 3), per user as `SplitPoints`: training targets are positions
1..train_end - 1, and `valid` / `test` are the held-out target positions (-1: none).
Leave-one-out (the default, derived from the lengths): for a user with n events (0-indexed)
the event at n - 1 is the test target, n - 2 the validation target and positions 1..n-3 are
training targets, so users with n < 4 give no example. A source may define its own split
(`source.split_points()`, e.g. a global time cut-off of `data.interactions`). The example for
target position p has the history events[max(0, p - max_len):p], left-padded to max_len
(newest event in the last column).

Why batched: building B examples at once lets one vectorised `item_features` call cover the
whole [B, max_len] history, which dominates the per-example cost otherwise.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from mpformer_jax.data import schema

MIN_EVENTS_FOR_TRAINING = 4     # 1 history event + 1 train target + valid + test targets
SPLITS = ("valid", "test")


@dataclasses.dataclass(frozen=True)
class SplitPoints:
  """Per user: train targets at positions 1..train_end - 1; `valid` / `test` positions."""
  train_end: np.ndarray     # [U] int64
  valid: np.ndarray         # [U] int64, -1 = no validation target
  test: np.ndarray          # [U] int64, -1 = no test target

  @classmethod
  def leave_one_out(cls, lengths: np.ndarray) -> SplitPoints:
    n = np.asarray(lengths, np.int64)
    ok = n >= MIN_EVENTS_FOR_TRAINING
    return cls(train_end=np.where(ok, n - 2, 0), valid=np.where(ok, n - 2, -1),
               test=np.where(ok, n - 1, -1))

  @classmethod
  def of(cls, source) -> SplitPoints:
    """The source's own split if it defines one, else leave-one-out on its lengths."""
    if hasattr(source, "split_points"):
      return source.split_points()
    return cls.leave_one_out(source.lengths())

  def positions(self, split: str) -> np.ndarray:
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return self.valid if split == "valid" else self.test

  def users(self, split: str) -> np.ndarray:
    """Users with a target in `split` (int64 indices, ascending)."""
    return np.flatnonzero(self.positions(split) >= 1)

  def gives_example(self) -> np.ndarray:
    """[U] bool: the user has a training, validation or test target (else: too short)."""
    return (self.train_end >= 2) | (self.valid >= 1) | (self.test >= 1)

  def without(self, users: np.ndarray) -> SplitPoints:
    """These points with `users` giving no example at all (dropped users)."""
    keep = np.ones(self.train_end.shape, bool)
    keep[np.asarray(users, np.int64)] = False
    return SplitPoints(train_end=np.where(keep, self.train_end, 0),
                       valid=np.where(keep, self.valid, -1), test=np.where(keep, self.test, -1))


def num_train_examples(train_end: np.ndarray) -> np.ndarray:
  """Training examples per user: positions 1..train_end - 1."""
  return np.maximum(np.asarray(train_end, np.int64) - 1, 0)


SAMPLING = ("event", "user")


class ExampleIndex:
  """Maps flat training-example indices to (user, target position) pairs.

  sampling="event": every training position of every user is an example, so a pass weighs
  users by their length. sampling="user" (SASRec's): one example per user, the newest
  training target with the max_len events before it, so a pass weighs users equally, as
  the evaluation does; with a next-item loss at every position it still trains on all of
  them. Only the [num_users] cumulative counts are stored, so a 1M-user source costs 8 MB
  and a lookup is one `np.searchsorted`.
  """

  def __init__(self, train_end: np.ndarray, sampling: str = "event"):
    if sampling not in SAMPLING:
      raise ValueError(f"data.sampling must be one of {SAMPLING}, got {sampling!r}")
    self._train_end = np.asarray(train_end, np.int64)
    self._per_user = sampling == "user"
    counts = num_train_examples(train_end)
    if self._per_user:
      counts = np.minimum(counts, 1)
    if counts.ndim != 1:
      raise ValueError(f"lengths must be 1-D, got shape {counts.shape}")
    self._ends = np.cumsum(counts, dtype=np.int64)    # exclusive end of each user's block
    self._starts = self._ends - counts
    if self.num_examples == 0:
      raise ValueError("no training examples: no user has a training target (leave-one-out "
                       f"needs users with {MIN_EVENTS_FOR_TRAINING} or more events)")

  @classmethod
  def from_source(cls, source: schema.SequenceSource, sampling: str = "event") -> ExampleIndex:
    return cls(SplitPoints.of(source).train_end, sampling)

  @property
  def num_examples(self) -> int:
    return int(self._ends[-1]) if self._ends.size else 0

  def __len__(self) -> int:
    return self.num_examples

  def lookup(self, index: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """(user, position) int64 arrays of flat example indices (any shape)."""
    index = np.asarray(index, np.int64)
    if index.size and (index.min() < 0 or index.max() >= self.num_examples):
      bad = index[(index < 0) | (index >= self.num_examples)].flat[0]
      raise ValueError(f"example index {int(bad)} out of range [0, {self.num_examples})")
    user = np.searchsorted(self._ends, index, side="right")
    if self._per_user:
      return user, self._train_end[user] - 1
    return user, index - self._starts[user] + 1


def check_logq_table(spec: schema.DatasetSpec, logq_table: np.ndarray) -> np.ndarray:
  """The logQ table as float32 [num_items + 1]; ValueError on a wrong shape or non-finite."""
  table = _logq_of_shape(spec, logq_table)
  if not np.isfinite(table).all():
    bad = int(np.flatnonzero(~np.isfinite(table))[0])
    raise ValueError(f"dataset {spec.name!r}, logq_table: NaN or infinite value "
                     f"{table[bad]} at item {bad}")
  return table


def _logq_of_shape(spec: schema.DatasetSpec, logq_table: np.ndarray) -> np.ndarray:
  table = np.asarray(logq_table, np.float32)
  if table.shape != (spec.item_vocab_size,):
    raise ValueError(f"dataset {spec.name!r}, logq_table: shape {table.shape}, expected "
                     f"({spec.item_vocab_size},)")
  return table


def make_examples(source: schema.SequenceSource, users: np.ndarray, positions: np.ndarray,
                  max_len: int, logq_table: np.ndarray, *,
                  validate: bool = True) -> dict[str, np.ndarray]:
  """Stacked examples (schema batch keys, leading dim B) for target (user, position) pairs.

  Every sequence's layout is checked (`schema.check_layout`, O(1) per user). With
  `validate`, the values of the assembled batch go through `schema.validate_batch` (one
  vectorised check, not B per-user ones); on failure the failing row's sequence is
  re-checked with `schema.validate_sequence`, so the `InvalidRecord` names the event too, or
  else the batch error is raised with the example's target position.
  """
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1, got {max_len}")
  spec = source.spec
  users = np.asarray(users, np.int64).reshape(-1)
  positions = np.asarray(positions, np.int64).reshape(-1)
  if users.shape != positions.shape:
    raise ValueError(f"users {users.shape} and positions {positions.shape} differ in shape")
  table = _logq_of_shape(spec, logq_table)    # finiteness: per target, in validate_batch
  b, n_ev, n_obj = users.size, len(spec.event_features), len(spec.objectives)
  hist_ids = np.zeros((b, max_len), np.int32)
  hist_events = np.zeros((b, max_len, n_ev), np.int32)
  user_feats = np.zeros((b, len(spec.user_features)), np.int32)
  target_ids = np.zeros((b,), np.int32)
  labels = np.zeros((b, n_obj), np.float32)
  seqs = []
  for row, (user, pos) in enumerate(zip(users.tolist(), positions.tolist())):
    seq = source.user(user)
    schema.check_layout(spec, seq, user)
    seqs.append(seq)
    ids = seq[schema.SEQ_ITEM_IDS]
    n = len(ids)
    if not 1 <= pos < n:
      raise schema.InvalidRecord(
          spec.name, schema.SEQ_ITEM_IDS, f"no target event at position {pos}: the sequence "
          f"has {n} events (targets 1..{n - 1})", kind=schema.OUT_OF_RANGE, user=user,
          row=row, position=pos)
    lo = max(0, pos - max_len)
    hist_ids[row, max_len - (pos - lo):] = ids[lo:pos]
    hist_events[row, max_len - (pos - lo):] = seq[schema.SEQ_EVENT_FEATURES][lo:pos]
    user_feats[row] = seq[schema.SEQ_USER_FEATURES]
    target_ids[row] = ids[pos]
    labels[row] = seq[schema.SEQ_LABELS][pos]
  if validate:   # ids must be checked before they index the logQ table / feature lookup
    _check_ids(spec, hist_ids, target_ids, users, seqs)
  batch = {
      schema.HISTORY_IDS: hist_ids,
      schema.HISTORY_ITEM_FEATURES: np.asarray(source.item_features(hist_ids), np.int32),
      schema.HISTORY_EVENT_FEATURES: hist_events,
      schema.USER_FEATURES: user_feats,
      schema.TARGET_ID: target_ids,
      schema.TARGET_ITEM_FEATURES: np.asarray(source.item_features(target_ids), np.int32),
      schema.TARGET_LABELS: labels,
      schema.TARGET_LOGQ: table[target_ids],
      schema.USER_INDEX: users.astype(np.int32),
  }
  if validate:
    try:
      schema.validate_batch(spec, batch)
    except schema.InvalidRecord as err:
      if err.row is None:
        raise
      schema.validate_sequence(spec, seqs[err.row], int(users[err.row]))
      raise err.at_position(int(positions[err.row])) from None
  return batch


def _check_ids(spec: schema.DatasetSpec, hist_ids: np.ndarray, target_ids: np.ndarray,
               users: np.ndarray, seqs: list[Mapping[str, np.ndarray]]) -> None:
  bad_rows = (((hist_ids < 0) | (hist_ids > spec.num_items)).any(axis=1)
              | (target_ids < 1) | (target_ids > spec.num_items))
  for row in np.flatnonzero(bad_rows):
    schema.validate_sequence(spec, seqs[row], int(users[row]))    # raises, naming the id


def make_example(source: schema.SequenceSource, user: int, position: int, max_len: int,
                 logq_table: np.ndarray) -> dict[str, np.ndarray]:
  """One example (schema keys without the batch dim) with target `position` of `user`."""
  batch = make_examples(source, np.array([user]), np.array([position]), max_len, logq_table)
  return {key: value[0] for key, value in batch.items()}


def seen_ids(source: schema.SequenceSource, users: np.ndarray,
             positions: np.ndarray) -> np.ndarray:
  """[B, S] int32: per (user, target position), the distinct items before the target other
  than the target itself, ascending then 0-padded (S = the most any row has, at least 1)."""
  rows = []
  for user, pos in zip(np.asarray(users).tolist(), np.asarray(positions).tolist()):
    ids = np.asarray(source.user(user)[schema.SEQ_ITEM_IDS])
    seen = np.unique(ids[:pos])
    rows.append(seen[seen != ids[pos]])
  out = np.zeros((len(rows), max([1] + [r.size for r in rows])), np.int32)
  for row, seen in enumerate(rows):
    out[row, :seen.size] = seen
  return out


def split_positions(points: SplitPoints, users: np.ndarray, split: str) -> np.ndarray:
  """Target positions of `split` for `users`; an error names a user without one."""
  positions = points.positions(split)
  users = np.asarray(users, np.int64)
  if users.size and (users.min() < 0 or users.max() >= len(positions)):
    bad = users[(users < 0) | (users >= len(positions))][0]
    raise ValueError(f"users: user index {int(bad)} out of range [0, {len(positions)})")
  out = positions[users]
  if (out < 1).any():
    raise ValueError(f"users: user {int(users[out < 1][0])} has no {split} target (leave-one-"
                     f"out needs >= {MIN_EVENTS_FOR_TRAINING} events)")
  return out
