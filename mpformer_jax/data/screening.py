"""Which users give examples: malformed users dropped by policy, too-short users counted.

Why one place: with `invalid_users="drop"` a malformed user must leave every consumer
(training examples, logQ / popularity counts, evaluation users) and stay out on resume; a
wrapper source whose split points exclude the user does that without touching any of them.
"""
from __future__ import annotations

import collections
import dataclasses

from absl import logging
import numpy as np

from mpformer_jax.data import examples
from mpformer_jax.data import schema

INVALID_USERS_POLICIES = ("error", "drop")
LOGGED_ERRORS = 3     # dropped users quoted in the log line


class ScreenedSource:
  """A `SequenceSource` whose split gives the `dropped` users no example at all.

  User indices are unchanged (so `user_index` and the source's vocabularies still agree);
  every other attribute is the wrapped source's. `drop_counts` counts the dropped users by
  "<field> <kind>" of their first `schema.InvalidRecord`, e.g. "item_ids out of range".
  """

  def __init__(self, base: schema.SequenceSource, dropped: np.ndarray,
               drop_counts: dict[str, int]):
    self.base, self.spec = base, base.spec
    self.dropped = np.asarray(dropped, np.int64)
    self.drop_counts = dict(drop_counts)
    self._points = examples.SplitPoints.of(base).without(self.dropped)

  def __getattr__(self, name: str):
    if name.startswith("_") or name == "base":    # not set yet (unpickling): no recursion
      raise AttributeError(name)
    return getattr(self.base, name)

  def __len__(self) -> int:
    return len(self.base)

  def lengths(self) -> np.ndarray:
    return self.base.lengths()

  def user(self, index: int):
    return self.base.user(index)

  def item_features(self, item_ids: np.ndarray) -> np.ndarray:
    return self.base.item_features(item_ids)

  def split_points(self) -> examples.SplitPoints:
    return self._points


def screen_users(source: schema.SequenceSource,
                 invalid_users: str = "error") -> schema.SequenceSource:
  """`source` with the policy for malformed users applied; call once, before the pipeline.

  "error": `source` itself; a malformed user raises `schema.InvalidRecord` when an example
  of it is built (no up-front cost). "drop": a `ScreenedSource` without the users whose
  sequence fails `schema.validate_sequence`, and one warning line counting them by reason.
  Cost of "drop", paid at every start (resumes included): one validation pass over every
  user that gives an example, reading each sequence once: ~30 us per user plus the read; a
  `SyntheticPlatform` user is generated for it (~0.3 ms with the default lengths, so ~5 min
  per million users). Item side features are per item, not per user: a bad one still
  raises, from `schema.validate_batch`.
  """
  if invalid_users not in INVALID_USERS_POLICIES:
    raise ValueError(f"invalid_users must be one of {INVALID_USERS_POLICIES}, "
                     f"got {invalid_users!r}")
  if invalid_users == "error":
    return source
  candidates = np.flatnonzero(examples.SplitPoints.of(source).gives_example())
  errors = _invalid_users(source, candidates)
  counts = collections.Counter(f"{e.field} {e.kind}" for e in errors)
  _log_drops(source.spec.name, candidates.size, errors, counts)
  return ScreenedSource(source, np.array([e.user for e in errors], np.int64), counts)


def _invalid_users(source: schema.SequenceSource,
                   users: np.ndarray) -> list[schema.InvalidRecord]:
  """The first `InvalidRecord` of each malformed user among `users` (ascending)."""
  errors = []
  for user in users.tolist():
    try:
      schema.validate_sequence(source.spec, source.user(user), user)
    except schema.InvalidRecord as err:
      errors.append(err)
  return errors


def _log_drops(dataset: str, screened: int, errors: list[schema.InvalidRecord],
               counts: collections.Counter) -> None:
  if not errors:
    logging.info("dataset %r: all %s users with examples are valid (invalid_users='drop')",
                 dataset, f"{screened:,}")
    return
  reasons = ", ".join(f"{n:,} {reason}" for reason, n in counts.most_common())
  first = "; ".join(str(e) for e in errors[:LOGGED_ERRORS])
  logging.warning("dataset %r: dropped %s of %s users with examples as invalid "
                  "(invalid_users='drop'): %s. First: %s", dataset, f"{len(errors):,}",
                  f"{screened:,}", reasons, first)


@dataclasses.dataclass(frozen=True)
class SplitSummary:
  """User counts of a source's split; `too_short` users give no example at all."""
  dataset: str
  users: int
  too_short: int
  dropped: int | None     # None: no `invalid_users="drop"` screening
  train: int              # users with a training target
  valid: int
  test: int
  leave_one_out: bool

  def line(self) -> str:
    short = (f"have fewer than {examples.MIN_EVENTS_FOR_TRAINING} events" if self.leave_one_out
             else "have no train, valid or test target under the dataset's split")
    dropped = "" if self.dropped is None else f"; {self.dropped:,} dropped as invalid"
    return (f"dataset {self.dataset!r}: {self.users:,} users; {self.too_short:,} {short} and "
            f"give no example (too short){dropped}; {self.train:,} train, {self.valid:,} "
            f"valid, {self.test:,} test users")


def split_summary(source: schema.SequenceSource) -> SplitSummary:
  """Counts of `source`'s users (screened or not) by what they give; no record is read."""
  base = source.base if isinstance(source, ScreenedSource) else source
  own = examples.SplitPoints.of(base)      # before any drop: too short, not invalid
  points = examples.SplitPoints.of(source)
  return SplitSummary(
      dataset=source.spec.name, users=len(source),
      too_short=int((~own.gives_example()).sum()),
      dropped=source.dropped.size if isinstance(source, ScreenedSource) else None,
      train=int((points.train_end >= 2).sum()), valid=int(points.users("valid").size),
      test=int(points.users("test").size),
      leave_one_out=_same(own, examples.SplitPoints.leave_one_out(base.lengths())))


def _same(a: examples.SplitPoints, b: examples.SplitPoints) -> bool:
  return all(np.array_equal(getattr(a, f.name), getattr(b, f.name))
             for f in dataclasses.fields(a))


def log_split_summary(source: schema.SequenceSource) -> SplitSummary:
  """Log (and return) `split_summary`, so users dropped for being too short are visible."""
  summary = split_summary(source)
  logging.info("%s", summary.line())
  return summary
