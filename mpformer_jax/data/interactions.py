"""Your own data: an interaction log, sequence file or pair file -> per-user sequences.

How (DuckDB on a disk-backed temporary database, so memory stays under
`interactions.memory_limit` however long the log; pyarrow streams the files in):
  1. read: every event with its user, item, timestamp, behaviour and label columns as text,
     plus its position in the input (`log_readers`); empty ids, unparseable timestamps and
     labels are errors naming the file and line;
  2. objectives: behaviour values -> objective bits (several values may feed one objective;
     a value may feed several), label columns -> one bit each; an event's bits are its labels;
  3. order: by user, then timestamp, then input position (ties keep the file order);
  4. filter, each counted in the report: unknown behaviours (with unknown_behaviour='drop'),
     consecutive duplicates (same item and labels as the user's previous event), the
     iterated k-core on users and items, keep-newest truncation to max_events_per_user;
  5. ids: users and items get dense ids in the order of their original id (numerically
     when it is an integer, else as text); item ids start at 1 (0 = padding);
  6. side tables: per column vocabularies (value rank + 1; 0 = unknown), joined by the
     original id; ids missing from a table get 0s and are counted;
  7. stream the users out in order as `schema` sequences for the TFDS writer.
The build report (counts by reason, per objective, length percentiles) goes beside the build.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mpformer_jax.data import log_readers, schema
from mpformer_jax.data.examples import SplitPoints, num_train_examples
from mpformer_jax.data.interactions_options import InteractionsOptions, SideTable
from mpformer_jax.data.log_readers import ROW, InputError
from mpformer_jax.data.synthetic import GAP_EDGES_S

PARSER_VERSION = "interactions-1"
_ORDER_IDS = "TRY_CAST({c} AS BIGINT) NULLS LAST, {c}"   # integers numerically, then text


def _first_bad(mask: pa.Array) -> int:
  return pc.index(mask, True).as_py()


def _place(file: str, line: int) -> str:
  """`file:line` for text files; `file row N` (0-based) for Parquet, which has no lines."""
  return f"{file} row {line}" if file.endswith((".parquet", ".pq")) else f"{file}:{line}"


class _Locator:
  """Maps a log event's input position back to its file and line for error messages."""

  def __init__(self):
    self._spans: list[tuple[int, str, int]] = []    # (first ROW, file, its first line)

  def add(self, first_row: int, file: str, first_line: int) -> None:
    self._spans.append((first_row, file, first_line))

  def __call__(self, row: int) -> str:
    starts = [s[0] for s in self._spans]
    first_row, file, line = self._spans[int(np.searchsorted(starts, row, side="right")) - 1]
    return _place(file, line + row - first_row)


def _to_seconds(col: pa.Array, time_format: str, where) -> pa.Array:
  """Timestamps as float64 seconds: numbers as they are, or date-times (ISO-8601 or
  `time_format`, strptime syntax) as seconds since the epoch."""
  try:
    return pc.cast(col, pa.float64())
  except pa.ArrowInvalid:
    pass
  def parse(values: pa.Array) -> pa.Array:
    return (pc.strptime(values, format=time_format, unit="us") if time_format
            else pc.cast(values, pa.timestamp("us")))

  try:
    return pc.divide(pc.cast(pc.cast(parse(col), pa.int64()), pa.float64()), 1e6)
  except pa.ArrowInvalid:
    pass
  for k, value in enumerate(col.to_pylist()):    # error path: find the offending row
    try:
      float(value)
      continue
    except ValueError:
      pass
    try:
      parse(pa.array([value]))
    except pa.ArrowInvalid:
      want = f"format {time_format!r}" if time_format else "a number or an ISO-8601 date-time"
      raise InputError(f"{where(k)}: timestamp {value!r} is not {want}") from None
  raise AssertionError("unreachable")


def _label_bits(batch: pa.RecordBatch, cols, first_bit: int, where) -> pa.Array:
  bits = pa.array(np.zeros(batch.num_rows, np.int32))
  for j, name in enumerate(cols):
    col = batch.column(name)
    try:
      value = pc.cast(col, pa.float64())
    except pa.ArrowInvalid:
      value = None
    if value is None or not pc.all(pc.is_finite(value)).as_py():
      bad = [k for k, v in enumerate(col.to_pylist()) if not _is_finite_number(v)][0]
      raise InputError(f"{where(bad)}: label column {name!r} value {col[bad].as_py()!r} is "
                       "not a number (use 0/1)")
    bits = pc.bit_wise_or(bits, pc.multiply(pc.cast(pc.not_equal(value, 0.0), pa.int32()),
                                            1 << (first_bit + j)))
  return bits


def _is_finite_number(value: str) -> bool:
  try:
    return bool(np.isfinite(float(value)))
  except ValueError:
    return False


class InteractionLog:
  """A built interaction log: spec, per-user lengths, side tables, vocabularies, report.

  Holds a DuckDB database in a temporary folder until `close()` (or the end of `examples()`).
  """

  def __init__(self, opts: InteractionsOptions, name: str = "interactions"):
    self.opts, self.name = opts, name
    self._tmp = tempfile.mkdtemp(prefix="mpformer_interactions_")
    self._db = duckdb.connect(os.path.join(self._tmp, "build.duckdb"))
    self._db.execute(f"SET memory_limit = '{opts.memory_limit}'; SET preserve_insertion_order"
                     f" = false; SET temp_directory = '{os.path.join(self._tmp, 'spill')}'")
    self._where = _Locator()
    self.incomplete_users = np.zeros(0, np.int64)
    self.report: dict[str, Any] = {"input": os.path.abspath(opts.path), "format": opts.format,
                                   "dropped": {}}
    try:
      self._read()
      self._shape()
      self._index()
      self._side_tables()
    except BaseException:
      self.close()
      raise

  # ------------------------------------------------------------------ 1-2: read, objectives
  def _read(self) -> None:
    o = self.opts
    self.objectives = o.objectives
    n_beh = len(o.behaviour_objectives)
    self._db.execute("CREATE TABLE raw (u VARCHAR, i VARCHAR, t DOUBLE, b VARCHAR, "
                     "bits INTEGER, r BIGINT)")
    rows = 0
    for batch, where in self._batches():
      for key in ("u", "i"):
        empty = pc.equal(pc.utf8_length(batch[key]), 0)
        if pc.any(empty).as_py():
          what = "user" if key == "u" else "item"
          raise InputError(f"{where(_first_bad(empty))}: empty {what} id")
      n = batch.num_rows
      t = (_to_seconds(batch["t"], o.time_format, where) if o.time_col
           else pa.nulls(n, pa.float64()))
      if o.time_col and not pc.all(pc.is_finite(t)).as_py():
        bad = _first_bad(pc.invert(pc.is_finite(t)))
        raise InputError(f"{where(bad)}: timestamp {batch['t'][bad].as_py()!r} is not finite")
      bits = (_label_bits(batch, o.label_cols, n_beh, where) if o.label_cols
              else pa.array(np.full(n, 0 if n_beh else 1, np.int32)))
      b = batch["b"] if o.behaviour_col else pa.nulls(n, pa.string())
      chunk = pa.table({"u": batch["u"], "i": batch["i"], "t": t, "b": b, "bits": bits,
                        "r": batch[ROW]})
      self._db.register("chunk", chunk)
      self._db.execute("INSERT INTO raw SELECT * FROM chunk")
      self._db.unregister("chunk")
      rows += n
    if rows == 0:
      raise InputError(f"{o.path}: no events (the input has a header or blank lines only)")
    self.report["rows_in"] = rows
    if n_beh:
      mapping = [(value, 1 << k) for k, (_, values) in enumerate(o.behaviour_objectives)
                 for value in values]
      self._db.execute("CREATE TABLE bmap AS SELECT value AS b, bit_or(bit) AS bbits FROM "
                       "(SELECT unnest($1) AS value, unnest($2) AS bit) GROUP BY value",
                       [[m[0] for m in mapping], [m[1] for m in mapping]])
      unknown = self._db.execute(
          "SELECT b, count(*), min(r) FROM raw ANTI JOIN bmap USING (b) GROUP BY b "
          "ORDER BY min(r)").fetchall()
      if unknown and o.unknown_behaviour == "error":
        value, _, row = unknown[0]
        raise InputError(f"{self._where(row)}: behaviour {value!r} is not in "
                         f"data.interactions.objectives (values {sorted(m[0] for m in mapping)})"
                         "; add it, or set unknown_behaviour='drop' to drop such events")
      self._count("unknown_behaviour", sum(c for _, c, _ in unknown))
      self._db.execute("CREATE TABLE ev AS SELECT u, i, t, bits | bbits AS bits, r FROM raw "
                       "JOIN bmap USING (b)")
    else:
      self._db.execute("CREATE TABLE ev AS SELECT u, i, t, bits, r FROM raw")
    self._db.execute("DROP TABLE raw")

  def _batches(self) -> Iterator[tuple[pa.RecordBatch, Any]]:
    """Record batches with columns u, i (+ t, b, label columns) and ROW; and a row -> place
    function for errors."""
    o = self.opts
    if o.format != "log":
      for batch, file, lines in log_readers.read_sequences(o.path, pairs=o.format == "pairs"):
        line_of = lines.to_numpy()
        yield (pa.RecordBatch.from_arrays(
            [pc.utf8_trim_whitespace(batch[log_readers.USER]),
             pc.utf8_trim_whitespace(batch[log_readers.ITEMS]), batch[ROW]],
            names=["u", "i", ROW]), lambda k, f=file, ln=line_of: f"{f}:{ln[k]}")
      return
    names = {"u": o.user_col, "i": o.item_col, "t": o.time_col, "b": o.behaviour_col}
    names = {k: v for k, v in names.items() if v}
    columns = list(names.values()) + list(o.label_cols)
    for batch, file, first in log_readers.read_table(o.path, columns, o.fmt):
      first_row = batch[ROW][0].as_py() if batch.num_rows else 0
      self._where.add(first_row, file, first)
      arrays = [pc.utf8_trim_whitespace(batch[names[k]]) for k in names]
      arrays += [batch[c] for c in o.label_cols] + [batch[ROW]]
      yield (pa.RecordBatch.from_arrays(arrays, names=list(names) + list(o.label_cols) + [ROW]),
             lambda k, f=file, s=first: _place(f, s + k))

  # ------------------------------------------------------------------ 3-4: order and filter
  def _count(self, reason: str, n: int) -> None:
    self.report["dropped"][reason] = self.report["dropped"].get(reason, 0) + int(n)

  def _events(self) -> int:
    return self._scalar("SELECT count(*) FROM ev")

  def _scalar(self, query: str):
    return self._db.execute(query).fetchall()[0][0]

  def _replace(self, reason: str, select: str) -> None:
    before = self._events()
    self._db.execute(f"CREATE TABLE ev2 AS {select}; DROP TABLE ev; ALTER TABLE ev2 RENAME TO ev")
    self._count(reason, before - self._events())

  def _shape(self) -> None:
    o = self.opts
    if o.dedup_consecutive:
      self._replace("consecutive_duplicate",
                    "SELECT * FROM ev WINDOW w AS (PARTITION BY u ORDER BY t, r) QUALIFY NOT "
                    "coalesce(lag(i) OVER w = i AND lag(bits) OVER w = bits, false)")
    if o.min_user_events > 1 or o.min_item_events > 1:
      while True:
        before = self._events()
        for key, reason, k in (("u", "k_core_user", o.min_user_events),
                               ("i", "k_core_item", o.min_item_events)):
          if k > 1:
            self._replace(reason, f"SELECT * FROM ev WHERE {key} NOT IN (SELECT {key} FROM ev "
                                  f"GROUP BY {key} HAVING count(*) < {k})")
        if self._events() == before:
          break
    if o.max_events_per_user > 0:
      self._replace("truncated_oldest",
                    "SELECT * FROM ev QUALIFY row_number() OVER (PARTITION BY u ORDER BY t "
                    f"DESC, r DESC) <= {o.max_events_per_user}")
    if self._events() == 0:
      raise InputError(f"{o.path}: every event was dropped ({self.report['dropped']}); "
                       "loosen the filters")

  # ------------------------------------------------------------------ 5: dense ids
  def _index(self) -> None:
    self._db.execute(f"""
      CREATE TABLE users AS SELECT u, (row_number() OVER (ORDER BY {_ORDER_IDS.format(c='u')})
        - 1)::BIGINT AS uid, n FROM (SELECT u, count(*) AS n FROM ev GROUP BY u);
      CREATE TABLE items AS SELECT i, (row_number() OVER (ORDER BY {_ORDER_IDS.format(c='i')})
        )::INTEGER AS iid FROM (SELECT DISTINCT i FROM ev);""")
    self._lengths = self._db.execute("SELECT n FROM users ORDER BY uid").fetchnumpy()["n"]
    self._lengths = self._lengths.astype(np.int64)
    self.num_items = self._scalar("SELECT count(*) FROM items")
    per_objective = self._db.execute(", ".join(
        f"sum((bits >> {k}) & 1)::BIGINT" for k in range(len(self.objectives))).join(
            ("SELECT ", " FROM ev"))).fetchall()[0]
    pct = np.percentile(self._lengths, (50, 90, 99)) if self._lengths.size else (0, 0, 0)
    self.report.update(
        users=int(self._lengths.size), items=int(self.num_items),
        events=int(self._lengths.sum()),
        events_per_objective=dict(zip(self.objectives, map(int, per_objective))),
        length_percentiles={"min": int(self._lengths.min()), "p50": float(pct[0]),
                            "p90": float(pct[1]), "p99": float(pct[2]),
                            "max": int(self._lengths.max())})
    self._split_points = None
    if self.opts.split == "time":
      valid_start, test_start = self.opts.time_cutoffs
      counts = self._db.execute(
          "SELECT count_if(t < $1)::BIGINT AS before_valid, count_if(t < $2)::BIGINT AS "
          "before_test FROM ev JOIN users USING (u) GROUP BY uid ORDER BY uid",
          [valid_start, test_start]).fetchnumpy()
      train_end, before_test = counts["before_valid"], counts["before_test"]
      n = self._lengths
      valid = np.where((train_end < before_test) & (train_end >= 1), train_end, -1)
      test = np.where((before_test < n) & (before_test >= 1), before_test, -1)
      self._split_points = SplitPoints(train_end=train_end.astype(np.int64),
                                                valid=valid.astype(np.int64),
                                                test=test.astype(np.int64))
    points = self._split_points or SplitPoints.leave_one_out(self._lengths)
    self.report.update(
        split=self.opts.split,
        train_examples=int(num_train_examples(points.train_end).sum()),
        valid_users=int(points.users("valid").size), test_users=int(points.users("test").size))
    if self.opts.split == "leave_one_out":
      self.report["users_below_4_events"] = int((self._lengths < 4).sum())

  def explicit_split(self) -> SplitPoints | None:
    """The time cut-off split, or None for leave-one-out (derived from the lengths)."""
    return self._split_points

  @property
  def user_ids(self) -> np.ndarray:
    """The `user_id` feature: the user index (the original ids are in vocab_users)."""
    return np.arange(self._lengths.size, dtype=np.int64)

  def lengths(self) -> np.ndarray:
    """[users] int64 events per user, in user-index order."""
    return self._lengths

  def original_ids(self, what: str) -> pa.Array:
    """Original user ids (row = user index) or item ids (row k = dense id k + 1), as text."""
    key, table, dense = ("u", "users", "uid") if what == "users" else ("i", "items", "iid")
    return self._db.sql(f"SELECT {key} FROM {table} ORDER BY {dense}").to_arrow_table()[key]

  # ------------------------------------------------------------------ 6: side tables
  def _side_tables(self) -> None:
    self.item_features, item_vocabs, self.item_table = self._side(
        self.opts.item_table, "items", "i", "iid", self.num_items + 1, 1)
    self.user_features, user_vocabs, self.user_table = self._side(
        self.opts.user_table, "users", "u", "uid", int(self._lengths.size), 0)
    self.feature_vocabs = {"item": item_vocabs, "user": user_vocabs}

  def _side(self, table: SideTable | None, ids: str, key: str, dense: str, rows: int,
            first: int):
    """(features spec, vocabularies, [rows, F] int32 codes) of an item or user table."""
    if table is None:
      return (), {}, np.zeros((rows, 0), np.int32)
    name = f"side_{ids}"
    cols = [table.id_col, *table.columns]
    self._db.execute(f"CREATE TABLE {name} (id VARCHAR, "
                     + ", ".join(f"c{j} VARCHAR" for j in range(len(table.columns))) + ")")
    for batch, _, _ in log_readers.read_table(table.path, cols, table.fmt):
      arrays = [pc.utf8_trim_whitespace(batch[c]) for c in cols]
      part = pa.table(arrays, names=["id"] + [f"c{j}" for j in range(len(table.columns))])
      self._db.register("part", part)
      self._db.execute(f"INSERT INTO {name} SELECT * FROM part")
      self._db.unregister("part")
    dup = self._db.execute(f"SELECT id, count(*) FROM {name} GROUP BY id HAVING count(*) > 1 "
                           "ORDER BY id LIMIT 1").fetchall()
    if dup:
      dup = dup[0]
      raise InputError(f"{table.path}: id {dup[0]!r} appears {dup[1]} times in the "
                       f"{ids[:-1]} table; give each id one row")
    codes = np.zeros((rows, len(table.columns)), np.int32)
    vocabs, spec = {}, []
    for j, column in enumerate(table.columns):
      self._db.execute(f"CREATE TABLE {name}_v{j} AS SELECT v, (row_number() OVER (ORDER BY v)"
                       f")::INTEGER AS code FROM (SELECT DISTINCT c{j} AS v FROM {name} "
                       f"WHERE c{j} <> '')")
      vocabs[column] = self._db.sql(f"SELECT v FROM {name}_v{j} ORDER BY code"
                                    ).to_arrow_table()["v"].to_pylist()
      spec.append((column, len(vocabs[column]) + 1))
    joined = self._db.sql(
        f"SELECT {dense}, " + ", ".join(f"coalesce(v{j}.code, 0) AS f{j}"
                                        for j in range(len(table.columns)))
        + f" FROM {ids} JOIN {name} s ON s.id = {ids}.{key} " + " ".join(
            f"LEFT JOIN {name}_v{j} v{j} ON v{j}.v = s.c{j}"
            for j in range(len(table.columns)))).fetchnumpy()
    rows_found = joined[dense].astype(np.int64)
    for j in range(len(table.columns)):
      codes[rows_found, j] = joined[f"f{j}"]
    known = self._scalar(f"SELECT count(*) FROM {name}")
    self.report[f"{ids}_without_features"] = int(rows - first - rows_found.size)
    self.report[f"{ids[:-1]}_table_rows_unused"] = int(known - rows_found.size)
    return tuple(spec), vocabs, codes

  # ------------------------------------------------------------------ 7: output
  @property
  def spec(self) -> schema.DatasetSpec:
    return schema.DatasetSpec(
        name=self.name, num_items=int(self.num_items), item_features=self.item_features,
        event_features=self.opts.event_features(), user_features=self.user_features,
        objectives=self.objectives,
        behaviour_feature="behaviour" if self.opts.has_behaviour_feature else None)

  def examples(self, rows_per_batch: int = 1 << 20) -> Iterator[tuple[int, dict]]:
    """(user index, SEQ_* sequence) of every user in index order; closes the log at the end."""
    shifts = np.arange(len(self.objectives), dtype=np.int32)
    reader = self._db.sql(
        "SELECT uid, iid, t, bits FROM ev JOIN users USING (u) JOIN items USING (i) "
        "ORDER BY uid, t, r").to_arrow_reader(rows_per_batch)
    try:
      pending = None
      for batch in reader:
        cols = {k: batch.column(k).to_numpy(zero_copy_only=False) for k in batch.schema.names}
        if pending is not None:
          cols = {k: np.concatenate([pending[k], cols[k]]) for k in cols}
        starts = np.concatenate([[0], np.flatnonzero(np.diff(cols["uid"])) + 1])
        for lo, hi in zip(starts[:-1], starts[1:]):
          yield self._sequence(cols, lo, hi, shifts)
        pending = {k: v[starts[-1]:] for k, v in cols.items()}
      if pending is not None and pending["uid"].size:
        yield self._sequence(pending, 0, pending["uid"].size, shifts)
    finally:
      self.close()

  def _sequence(self, cols, lo: int, hi: int, shifts) -> tuple[int, dict]:
    user = int(cols["uid"][lo])
    bits = cols["bits"][lo:hi].astype(np.int32)
    events = []
    if self.opts.has_behaviour_feature:
      events.append(bits + 1)
    if self.opts.time_col:
      gap = np.diff(cols["t"][lo:hi], prepend=-np.inf)   # first event: a new session
      events.append(np.searchsorted(np.asarray(GAP_EDGES_S), gap, side="right") + 1)
    n = hi - lo
    return user, {
        schema.SEQ_ITEM_IDS: cols["iid"][lo:hi].astype(np.int32),
        schema.SEQ_LABELS: ((bits[:, None] >> shifts) & 1).astype(np.int8),
        schema.SEQ_EVENT_FEATURES: (np.stack(events, -1).astype(np.int32) if events
                                    else np.zeros((n, 0), np.int32)),
        schema.SEQ_USER_FEATURES: self.user_table[user]}

  def close(self) -> None:
    if self._db is not None:
      self._db.close()
      self._db = None
      shutil.rmtree(self._tmp, ignore_errors=True)
