"""Recurring interests: a long-history workload whose signal lies far back (issue 22).

Why: on the synthetic platform a user's next event depends on its recent interests, so a
model that reads the newest few dozen events loses little by ignoring the rest; long-history
encoders (compression, SOLAR) cannot show what reading thousands of events is worth there.

Generative story, on top of the platform's users (`data.synthetic.recurring`, off when
`items=0`):
  * every user has `items` favourite items (drawn by a hash of the user from the whole
    catalogue, so none is tied to the user's platform interests);
  * the favourites recur in bursts: `burst` consecutive events, one favourite each, every
    `period` events, at a phase drawn per user;
  * no burst falls within the `quiet` events before the user's last three, so there the
    favourites come up only by the platform's chance (0.2 of them a user in configs/
    recurring.py's 256 events, against 8 a burst);
  * each of the last three events (the newest training target, validation, test) is, with
    probability `return_prob`, one of the favourites (a return to a lifelong interest); its
    event features and labels stay the platform's. With `data.sampling="user"` every
    training example ends in such an event, as every held-out one does.
A model that sees only the recent window, or pools old events into coarse groups, can guess
that a return happens but not to which items; reading the individual old events can.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from mpformer_jax.data import schema
from mpformer_jax.data.platform_variant import PlatformVariant
from mpformer_jax.data.synthetic import SyntheticPlatform, hash_u64

_S_FAVOURITES, _S_PHASE, _S_RETURN = 41, 42, 43
RETURNS = 3  # the last events that may return: newest training target, validation, test


class RecurringInterests(PlatformVariant):
  """A `SequenceSource`: the platform's users with recurring favourites (module docstring)."""

  def __init__(self, base: SyntheticPlatform, items: int, period: int, burst: int,
               quiet: int, return_prob: float):
    checks = {"items": items >= 1, "period": period >= 1, "burst": 1 <= burst <= period,
              "quiet": quiet >= 0, "return_prob": 0.0 <= return_prob <= 1.0}
    for name, ok in checks.items():
      if not ok:
        raise ValueError(f"data.synthetic.recurring: invalid {name}={locals()[name]!r}")
    super().__init__(base)
    self.items, self.period, self.burst = items, period, burst
    self.quiet, self.return_prob = quiet, return_prob

  def favourites(self, index: int) -> np.ndarray:
    """The user's favourite item ids [items] (1-based ids)."""
    keys = np.uint64(index) * np.uint64(self.items) + np.arange(self.items, dtype=np.uint64)
    return (hash_u64(self.base.seed, _S_FAVOURITES, keys)
            % np.uint64(self.base.num_items)).astype(np.int32) + 1

  def burst_positions(self, index: int, n: int) -> np.ndarray:
    """Positions (of n events) that show a favourite: bursts ending before the quiet span
    that precedes the last RETURNS events."""
    phase = int(hash_u64(self.base.seed, _S_PHASE, np.array([index]))[0] % self.period)
    pos = np.arange(n)
    in_burst = (pos + phase) % self.period < self.burst
    starts_ok = (pos - (pos + phase) % self.period) < n - RETURNS - self.quiet - self.burst
    return pos[in_burst & starts_ok & (pos < n - RETURNS)]

  def user(self, index: int) -> Mapping[str, np.ndarray]:
    seq = dict(self.base.user(index))
    ids = np.array(seq[schema.SEQ_ITEM_IDS], copy=True)
    n = len(ids)
    fav = self.favourites(index)
    pos = self.burst_positions(index, n)
    ids[pos] = fav[np.arange(len(pos)) % self.items]
    draws = hash_u64(self.base.seed, _S_RETURN, np.uint64(index) * np.uint64(2 * RETURNS)
                     + np.arange(2 * RETURNS, dtype=np.uint64))
    for j in range(RETURNS):
      end = n - RETURNS + j
      if end >= 0 and (draws[j] >> np.uint64(11)) * 2.0**-53 < self.return_prob:
        ids[end] = fav[int(draws[RETURNS + j] % np.uint64(self.items))]
    seq[schema.SEQ_ITEM_IDS] = ids
    return seq
