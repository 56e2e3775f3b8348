"""`config.data.interactions` as a checked dataclass, and the dataset layout it implies.

Why separate from the build: the TFDS builder must know its feature layout (objectives,
event and user feature columns) before it reads any data, and a bad setting should fail
before a long read. The fields are documented in configs/interactions.py.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from mpformer_jax.data.log_readers import FILE_TYPES, TableFormat
from mpformer_jax.data.synthetic import GAP_EDGES_S

FORMATS = ("log", "sequences", "pairs")
SPLITS = ("leave_one_out", "time")
UNKNOWN_BEHAVIOUR = ("error", "drop")
DEFAULT_OBJECTIVE = "interaction"   # the one objective of a log without behaviours or labels
MAX_OBJECTIVES = 8                  # the behaviour feature is a bitmask over objectives


@dataclasses.dataclass(frozen=True)
class SideTable:
  """An optional item or user table: `columns` are categorical, joined on `id_col`."""
  path: str
  fmt: TableFormat
  id_col: str
  columns: tuple[str, ...]

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any], what: str) -> SideTable | None:
    if not cfg["path"]:
      if cfg["columns"]:
        raise ValueError(f"data.interactions.{what}.columns is set but its path is empty")
      return None
    columns = tuple(str(c) for c in cfg["columns"])
    if not columns:
      raise ValueError(f"data.interactions.{what}: name the categorical columns to use")
    if cfg["id_col"] in columns:
      raise ValueError(f"data.interactions.{what}: the id column {cfg['id_col']!r} cannot also "
                       "be a feature column")
    return cls(path=str(cfg["path"]), fmt=_table_format(cfg, f"{what}."), id_col=cfg["id_col"],
               columns=columns)


def _table_format(cfg: Mapping[str, Any], where: str) -> TableFormat:
  if cfg["file_type"] not in FILE_TYPES + ("auto",):
    raise ValueError(f"data.interactions.{where}file_type={cfg['file_type']!r}; use one of "
                     f"{('auto',) + FILE_TYPES}")
  return TableFormat(cfg["file_type"], cfg["delimiter"], bool(cfg.get("header", True)))


@dataclasses.dataclass(frozen=True)
class InteractionsOptions:
  """Resolved, validated `config.data.interactions` (see configs/interactions.py)."""
  path: str
  format: str
  fmt: TableFormat
  user_col: str
  item_col: str
  time_col: str
  time_format: str
  behaviour_col: str
  behaviour_objectives: tuple[tuple[str, tuple[str, ...]], ...]
  label_cols: tuple[str, ...]
  unknown_behaviour: str
  item_table: SideTable | None
  user_table: SideTable | None
  min_user_events: int
  min_item_events: int
  dedup_consecutive: bool
  max_events_per_user: int
  split: str
  time_cutoffs: tuple[float, ...]    # split="time": (validation start, test start), seconds
  memory_limit: str

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any]) -> InteractionsOptions:
    if not cfg["path"]:
      raise ValueError("data.interactions.path is empty: set it to your log, sequence or pair "
                       "file (or a folder of such files); see configs/interactions.py")
    if cfg["format"] not in FORMATS:
      raise ValueError(f"data.interactions.format={cfg['format']!r}; use one of {FORMATS}")
    if cfg["split"] not in SPLITS:
      raise ValueError(f"data.interactions.split={cfg['split']!r}; use one of {SPLITS}")
    cutoffs = _time_cutoffs(cfg) if cfg["split"] == "time" else ()
    if cfg["split"] != "time" and cfg["time_cutoffs"]:
      raise ValueError("data.interactions.time_cutoffs is set but split is "
                       f"{cfg['split']!r}; set split='time' to use it")
    if cfg["unknown_behaviour"] not in UNKNOWN_BEHAVIOUR:
      raise ValueError(f"data.interactions.unknown_behaviour={cfg['unknown_behaviour']!r}; use "
                       f"one of {UNKNOWN_BEHAVIOUR}")
    for key in ("min_user_events", "min_item_events", "max_events_per_user"):
      if cfg[key] < 0:
        raise ValueError(f"data.interactions.{key} must be >= 0, got {cfg[key]}")
    log = cfg["format"] == "log"
    behaviour = _behaviour_objectives(cfg["objectives"])
    labels = tuple(str(c) for c in cfg["label_cols"])
    if not log and (cfg["time_col"] or cfg["behaviour_col"] or labels):
      raise ValueError(f"data.interactions.format={cfg['format']!r} has no columns: time_col, "
                       "behaviour_col and label_cols need format='log'")
    if bool(cfg["behaviour_col"]) != bool(behaviour):
      raise ValueError("data.interactions.behaviour_col and .objectives go together: the "
                       "objectives map behaviour values to objectives, e.g. "
                       "objectives=(('click', ('view',)), ('buy', ('buy',)))")
    names = [name for name, _ in behaviour] + list(labels)
    if len(set(names)) != len(names):
      raise ValueError(f"data.interactions: objective names repeat: {names}")
    if len(names) > MAX_OBJECTIVES:
      raise ValueError(f"data.interactions: {len(names)} objectives; at most {MAX_OBJECTIVES}")
    if log:
      used = [cfg["user_col"], cfg["item_col"], cfg["time_col"], cfg["behaviour_col"], *labels]
      used = [c for c in used if c]
      if len(set(used)) != len(used):
        raise ValueError(f"data.interactions: a column is used twice: {used}")
    return cls(
        path=str(cfg["path"]), format=cfg["format"], fmt=_table_format(cfg, ""),
        user_col=cfg["user_col"], item_col=cfg["item_col"], time_col=cfg["time_col"],
        time_format=cfg["time_format"], behaviour_col=cfg["behaviour_col"],
        behaviour_objectives=behaviour, label_cols=labels,
        unknown_behaviour=cfg["unknown_behaviour"],
        item_table=SideTable.from_config(cfg["item_table"], "item_table"),
        user_table=SideTable.from_config(cfg["user_table"], "user_table"),
        min_user_events=int(cfg["min_user_events"]), min_item_events=int(cfg["min_item_events"]),
        dedup_consecutive=bool(cfg["dedup_consecutive"]),
        max_events_per_user=int(cfg["max_events_per_user"]), split=cfg["split"],
        time_cutoffs=cutoffs, memory_limit=str(cfg["memory_limit"]))

  @property
  def objectives(self) -> tuple[str, ...]:
    names = tuple(name for name, _ in self.behaviour_objectives) + self.label_cols
    return names or (DEFAULT_OBJECTIVE,)

  @property
  def has_behaviour_feature(self) -> bool:
    return bool(self.behaviour_col or self.label_cols)

  def event_features(self) -> tuple[tuple[str, int], ...]:
    """(name, vocab) of the event features: behaviour = objective bitmask + 1 (the model's
    convention, `schema.DatasetSpec.behaviour_feature`) and time_gap, as for ML-100K."""
    out = []
    if self.has_behaviour_feature:
      out.append(("behaviour", 2**len(self.objectives) + 1))
    if self.time_col:
      out.append(("time_gap", len(GAP_EDGES_S) + 2))
    return tuple(out)

  def shaping(self) -> dict[str, Any]:
    """What shapes the build, for its fingerprint (everything but the input path)."""
    out = dataclasses.asdict(self)
    out.pop("memory_limit")
    return out


def _time_cutoffs(cfg) -> tuple[float, float]:
  """(validation start, test start) in seconds; date-times (ISO-8601) as UTC seconds."""
  where = "data.interactions.time_cutoffs"
  if not cfg["time_col"]:
    raise ValueError("data.interactions.split='time' needs time_col (the cut-offs are times)")
  values = tuple(cfg["time_cutoffs"])
  if len(values) != 2:
    raise ValueError(f"{where} must be (validation start, test start), got {values!r}")
  out = []
  for value in values:
    if isinstance(value, (int, float)):
      out.append(float(value))
      continue
    try:
      out.append(float(np.datetime64(str(value), "us").astype(np.int64)) / 1e6)
    except ValueError:
      raise ValueError(f"{where}: {value!r} is neither a number of seconds nor an ISO-8601 "
                       "date-time") from None
  if not out[0] < out[1]:
    raise ValueError(f"{where}: the validation start {values[0]!r} must come before the test "
                     f"start {values[1]!r}")
  return out[0], out[1]


def _behaviour_objectives(value) -> tuple[tuple[str, tuple[str, ...]], ...]:
  out = []
  for entry in value or ():
    if (not isinstance(entry, (tuple, list)) or len(entry) != 2
        or not isinstance(entry[1], (tuple, list)) or not entry[1]):
      raise ValueError("data.interactions.objectives must be pairs (objective, (behaviour "
                       f"value, ...)), e.g. (('click', ('view',)),); got entry {entry!r}")
    out.append((str(entry[0]), tuple(str(v) for v in entry[1])))
  return tuple(out)
