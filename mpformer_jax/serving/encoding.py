"""A raw request (original ids, behaviours, times) -> the user tower's input arrays.

The same encoding as the training data (`data.interactions`, `data.synthetic`): item ids are
mapped through the build's vocabulary, an event's behaviour feature is its objective bitmask
+ 1, its time_gap the `GAP_EDGES_S` bucket of the seconds since the previous kept event
(the first event starts a session), features missing from the request are 0 (unknown), and
the history is left-padded to max_len with the newest event last.

A request (JSON) is {"user": id?, "history": [event, ...] oldest first, "n": int?}; an
event is {"item": id, "behaviour": raw value?, "objectives": [names]?, "time": seconds?,
"features": {event feature: code}?}. Unknown item ids are dropped and counted; a history
longer than max_len keeps its newest events. Anything else malformed is a `RequestError`
naming the field. numpy only: the loader must not import the training code.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

BEHAVIOUR, TIME_GAP = "behaviour", "time_gap"


class RequestError(ValueError):
  """A malformed request (HTTP 400), with a message naming the offending field."""


@dataclasses.dataclass(frozen=True)
class Encoded:
  """One request's model inputs plus what was done to its history."""
  history_ids: np.ndarray             # [L] int32
  history_item_features: np.ndarray   # [L, F_item] int32
  history_event_features: np.ndarray  # [L, F_event] int32
  user_features: np.ndarray           # [F_user] int32
  n: int
  events: int            # events in the request
  unknown_items: int     # dropped: item id not in the vocabulary
  truncated: int         # dropped: older than the newest max_len known events
  known_user: bool

  @property
  def used(self) -> int:
    return self.events - self.unknown_items - self.truncated


class Vocabulary:
  """Original ids (text) <-> dense ids 1..N by binary search over a sorted copy."""

  def __init__(self, ids: np.ndarray, first: int):
    self.ids = np.asarray(ids).astype(str)
    self._order = np.argsort(self.ids, kind="stable")
    self._sorted = self.ids[self._order]
    self._first = first

  def __len__(self) -> int:
    return self.ids.size

  def lookup(self, values: list[str]) -> np.ndarray:
    """Dense ids of `values`, -1 where unknown."""
    if not values or not self.ids.size:
      return np.full(len(values), -1, np.int64)
    query = np.asarray(values).astype(str)
    pos = np.minimum(np.searchsorted(self._sorted, query), self.ids.size - 1)
    found = self._sorted[pos] == query
    return np.where(found, self._order[pos] + self._first, -1).astype(np.int64)

  def original(self, dense: np.ndarray) -> list[str]:
    return self.ids[np.asarray(dense, np.int64) - self._first].tolist()


class HistoryEncoder:
  """Encodes requests for one artifact (its manifest's "encoding" and its tables)."""

  def __init__(self, encoding: Mapping[str, Any], items: Vocabulary, item_features: np.ndarray,
               users: Vocabulary | None, user_features: np.ndarray | None,
               max_n: int):
    self.max_len = int(encoding["max_len"])
    self.objectives = tuple(encoding["dataset_objectives"])
    self.event_features = [tuple(f) for f in encoding["event_features"]]
    self.user_feature_names = [f[0] for f in encoding["user_features"]]
    self.behaviours = {str(k): tuple(v) for k, v in (encoding.get("behaviours") or {}).items()}
    self.gap_edges = np.asarray(encoding["gap_edges_s"], np.float64)
    self.items, self.item_features = items, item_features
    self.users, self.user_features = users, user_features
    self.max_n = max_n

  def encode(self, request: Any, default_n: int) -> Encoded:
    if not isinstance(request, Mapping):
      raise RequestError(f"a request is a JSON object, got {type(request).__name__}")
    unknown = sorted(set(request) - {"user", "history", "n"})
    if unknown:
      raise RequestError(f"unknown request fields {unknown}; use user, history, n")
    n = request.get("n", default_n)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.max_n:
      raise RequestError(f"n must be an integer in [1, {self.max_n}], got {n!r}")
    history = request.get("history", [])
    if not isinstance(history, list):
      raise RequestError(f"history must be a list of events, got {type(history).__name__}")
    items = [_item_id(e, i) for i, e in enumerate(history)]
    dense = self.items.lookup(items)
    known = np.flatnonzero(dense > 0)
    # The newest max_len known events, plus the one before them for the first one's gap.
    tail = known[-(self.max_len + 1):]
    coded = [self._event(history[i], int(i)) for i in tail]
    events = np.zeros((tail.size, len(self.event_features)), np.int32)
    for row, (codes, _) in enumerate(coded):
      events[row] = codes
    self._time_gaps(events, [t for _, t in coded])
    kept = min(known.size, self.max_len)
    ids = np.zeros(self.max_len, np.int32)
    ids[self.max_len - kept:] = dense[tail[tail.size - kept:]]
    padded = np.zeros((self.max_len, len(self.event_features)), np.int32)
    padded[self.max_len - kept:] = events[tail.size - kept:]
    user_feats, known_user = self._user(request)
    return Encoded(history_ids=ids, history_item_features=self.item_features[ids],
                   history_event_features=padded, user_features=user_feats, n=n,
                   events=len(history), unknown_items=int(len(history) - known.size),
                   truncated=int(known.size - kept), known_user=known_user)

  def _event(self, event: Mapping[str, Any], i: int) -> tuple[np.ndarray, float | None]:
    """(event feature codes, time or None) of history[i]; time_gap is filled in later."""
    allowed = {"item", "behaviour", "objectives", "time", "features"}
    extra = sorted(set(event) - allowed)
    if extra:
      raise RequestError(f"history[{i}]: unknown fields {extra}; use {sorted(allowed)}")
    codes = np.zeros(len(self.event_features), np.int32)
    names = [name for name, _ in self.event_features]
    bits = self._bits(event, i)
    if bits is not None:
      if BEHAVIOUR not in names:
        raise RequestError(f"history[{i}]: this model takes no behaviour feature")
      codes[names.index(BEHAVIOUR)] = bits + 1
    coded = [n for n in names if n not in (BEHAVIOUR, TIME_GAP)]
    for name, code in (event.get("features") or {}).items():
      if name not in coded:
        raise RequestError(f"history[{i}].features: {name!r} is not a coded event feature "
                           f"of this model ({coded})")
      vocab = self.event_features[names.index(name)][1]
      if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < vocab:
        raise RequestError(f"history[{i}].features.{name} must be an integer code in "
                           f"[0, {vocab}), got {code!r}")
      codes[names.index(name)] = code
    t = event.get("time")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))
                          or not math.isfinite(t)):
      raise RequestError(f"history[{i}].time must be a finite number of seconds, got {t!r}")
    return codes, None if t is None else float(t)

  def _bits(self, event: Mapping[str, Any], i: int) -> int | None:
    """The event's objective bitmask from its behaviour or objectives, None if neither."""
    if "behaviour" in event:
      value = str(event["behaviour"])
      if value not in self.behaviours:
        raise RequestError(f"history[{i}].behaviour {value!r} is unknown; this model knows "
                           f"{sorted(self.behaviours)}")
      names = self.behaviours[value]
    elif "objectives" in event:
      names = event["objectives"]
      if not isinstance(names, list) or any(n not in self.objectives for n in names):
        raise RequestError(f"history[{i}].objectives must be a list of {list(self.objectives)}"
                           f", got {names!r}")
    else:
      return None
    return sum(1 << self.objectives.index(name) for name in set(names))

  def _time_gaps(self, events: np.ndarray, times: list) -> None:
    names = [name for name, _ in self.event_features]
    if TIME_GAP not in names or not times:
      return
    col, prev = names.index(TIME_GAP), -math.inf
    for row, t in enumerate(times):
      if t is None:   # unknown time: unknown gap, and the next gap is unknown too
        prev = None
        continue
      if prev is not None:
        events[row, col] = int(np.searchsorted(self.gap_edges, t - prev, side="right")) + 1
      prev = t

  def _user(self, request: Mapping[str, Any]) -> tuple[np.ndarray, bool]:
    feats = np.zeros(len(self.user_feature_names), np.int32)
    user = request.get("user")
    if user is None or self.users is None or not feats.size:
      return feats, False
    if not isinstance(user, (str, int)) or isinstance(user, bool):
      raise RequestError(f"user must be an id (string or integer), got {user!r}")
    row = int(self.users.lookup([str(user)])[0])
    if row < 0:
      return feats, False
    return self.user_features[row], True


def _item_id(event: Any, i: int) -> str:
  if not isinstance(event, Mapping):
    raise RequestError(f"history[{i}] must be an object with an item, got {event!r}")
  item = event.get("item")
  if isinstance(item, bool) or not isinstance(item, (str, int)):
    raise RequestError(f"history[{i}].item must be an item id (string or integer), got "
                       f"{item!r}")
  return str(item)
