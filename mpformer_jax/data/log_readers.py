"""Streaming readers for interaction logs, sequence files and side tables (pyarrow).

Why pyarrow: it parses CSV, TSV, JSON Lines and Parquet in C++ in bounded blocks, so a
log of any size is read as a stream of record batches with no Python object per event.
Every reader yields batches of the requested columns as strings (ids, behaviours and
categorical values are text until the build maps them to dense integers) plus `ROW`, the
0-based position of the event in the input (files of a folder in name order), which is the
tie-break that keeps the file order of events with equal timestamps.

Errors name the file and the line (text formats) or row (Parquet): a missing column (with
the columns found), an empty file, a malformed row, non-UTF-8 bytes (with their byte offset).
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import os
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from mpformer_jax.data.fingerprint import input_files

ROW = "__row"               # int64 event position in the input
USER, ITEMS = "user", "items"
FILE_TYPES = ("csv", "tsv", "parquet", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet",
               ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
BLOCK_BYTES = 16 << 20      # text read per block: bounds memory, amortises the per-batch cost


class InputError(ValueError):
  """Bad input data: the message names the file and where in it."""


@dataclasses.dataclass(frozen=True)
class TableFormat:
  """How to parse a tabular file. `file_type` "auto" goes by extension; `delimiter` ""
  means "," for csv and a tab for tsv; `header` False names the columns f0, f1, ..."""
  file_type: str = "auto"
  delimiter: str = ""
  header: bool = True

  def resolve(self, path: str) -> TableFormat:
    kind = self.file_type
    if kind == "auto":
      ext = os.path.splitext(path[:-3] if path.endswith(".gz") else path)[1].lower()
      if ext not in _EXTENSIONS:
        raise InputError(f"{path}: cannot tell the file type from the extension {ext!r}; "
                         f"set file_type to one of {FILE_TYPES}")
      kind = _EXTENSIONS[ext]
    if kind not in FILE_TYPES:
      raise InputError(f"file_type {kind!r} is not one of {FILE_TYPES}")
    delimiter = self.delimiter or ("\t" if kind == "tsv" else ",")
    if len(delimiter) != 1:
      raise InputError(f"delimiter must be one character, got {delimiter!r}")
    return TableFormat(kind, delimiter, self.header)


def first_utf8_error(path: str) -> int | None:
  """Byte offset of the first invalid UTF-8 sequence in `path`, or None (error path only)."""
  decoder = codecs.getincrementaldecoder("utf-8")()
  offset = 0
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      try:
        decoder.decode(chunk)
      except UnicodeDecodeError as e:
        return offset + e.start - len(decoder.getstate()[0])
      offset += len(chunk)
  return None


def _read_error(path: str, error: Exception, where: str = "") -> InputError:
  text = str(error)
  if "UTF8" in text or "UTF-8" in text:
    offset = first_utf8_error(path)
    if offset is not None:
      return InputError(f"{path}: not UTF-8 text: invalid byte at offset {offset}")
  if "Empty CSV file" in text:
    return InputError(f"{path}: the file is empty")
  return InputError(f"{path}{where}: cannot parse: {text}")


def _header(path: str, fmt: TableFormat) -> list[str]:
  if fmt.file_type == "parquet":
    return list(pq.ParquetFile(path).schema_arrow.names)
  if fmt.file_type == "jsonl":
    with open(path, "rb") as f:
      first = f.readline()
    return list(pa_json.read_json(pa.py_buffer(first)).column_names) if first.strip() else []
  with open(path, encoding="utf-8", errors="replace", newline="") as f:
    row = next(csv.reader(f, delimiter=fmt.delimiter), [])
  return row if fmt.header else [f"f{i}" for i in range(len(row))]


def _check_columns(path: str, fmt: TableFormat, columns: Sequence[str]) -> None:
  if os.path.getsize(path) == 0:
    raise InputError(f"{path}: the file is empty")
  found = _header(path, fmt)
  missing = [c for c in columns if c not in found]
  if missing:
    raise InputError(f"{path}: missing column(s) {missing}; the header has {found}"
                     + ("" if fmt.header or fmt.file_type not in ("csv", "tsv") else
                        " (header=False: columns are named f0, f1, ...)"))


def _text_batches(path: str, fmt: TableFormat, columns: Sequence[str]
                  ) -> Iterator[tuple[pa.RecordBatch, int]]:
  """(batch, line number of its first row) of a CSV/TSV file."""
  bad = []

  def on_invalid(row):
    bad.append(row)
    return "skip"

  read = pa_csv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES,
                            autogenerate_column_names=not fmt.header)
  parse = pa_csv.ParseOptions(delimiter=fmt.delimiter, invalid_row_handler=on_invalid)
  convert = pa_csv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                  include_columns=list(columns), strings_can_be_null=False,
                                  quoted_strings_can_be_null=False)
  line = 2 if fmt.header else 1
  try:
    reader = pa_csv.open_csv(path, read_options=read, parse_options=parse,
                             convert_options=convert)
    for batch in reader:
      if bad:
        row = bad[0]
        raise InputError(f"{path}:{row.number}: malformed row: expected "
                         f"{row.expected_columns} fields, got {row.actual_columns}: "
                         f"{row.text[:200]!r}")
      yield batch, line
      line += batch.num_rows
  except (pa.ArrowInvalid, pa.ArrowKeyError) as e:
    raise _read_error(path, e) from None
  if bad:
    row = bad[0]
    raise InputError(f"{path}:{row.number}: malformed row: expected {row.expected_columns} "
                     f"fields, got {row.actual_columns}: {row.text[:200]!r}")


def _as_strings(batch: pa.RecordBatch, columns: Sequence[str]) -> list[pa.Array]:
  out = []
  for name in columns:
    col = batch.column(name)
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
      col = pc.cast(col, pa.string())
    out.append(col)
  return out


def read_table(path: os.PathLike | str, columns: Sequence[str], fmt: TableFormat
               ) -> Iterator[tuple[pa.RecordBatch, str, int]]:
  """(batch of `columns` as strings + ROW, file, first line/row of the batch) of every file.

  `path` is a file or a folder of files of one format (read in name order; ROW runs on
  across files). Lines are 1-based file lines (CSV/TSV/JSONL); Parquet gives 0-based rows.
  """
  columns = list(dict.fromkeys(columns))
  files = input_files(path)
  if not files:
    raise InputError(f"{path}: the folder holds no files")
  row = 0
  for file in files:
    f = fmt.resolve(file)
    _check_columns(file, f, columns)
    if f.file_type in ("csv", "tsv"):
      batches = _text_batches(file, f, columns)
    elif f.file_type == "parquet":
      batches = _numbered(pq.ParquetFile(file).iter_batches(columns=columns,
                                                            batch_size=1 << 20), 0)
    else:
      batches = _numbered(pa_json.open_json(file, read_options=pa_json.ReadOptions(
          use_threads=False, block_size=BLOCK_BYTES)), 1)
    try:
      for batch, first in batches:
        arrays = _as_strings(batch, columns)
        arrays.append(pa.array(np.arange(row, row + batch.num_rows, dtype=np.int64)))
        yield pa.RecordBatch.from_arrays(arrays, names=columns + [ROW]), file, first
        row += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowKeyError, pa.ArrowTypeError) as e:
      raise _read_error(file, e) from None


def _numbered(batches, first: int) -> Iterator[tuple[pa.RecordBatch, int]]:
  for batch in batches:
    yield batch, first
    first += batch.num_rows


def read_sequences(path: os.PathLike | str, pairs: bool
                   ) -> Iterator[tuple[pa.RecordBatch, str, pa.Array]]:
  """Events of a sequence file (`user item item ...` a line) or a pair file (`user item`).

  Yields (batch of USER, ITEMS-as-item + ROW, file, [events] int64 1-based line numbers).
  Blank lines are skipped; fields are split on any whitespace.
  """
  row = 0
  for file in input_files(path):
    if os.path.getsize(file) == 0:
      raise InputError(f"{file}: the file is empty")
    read = pa_csv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES, column_names=["l"])
    parse = pa_csv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False,
                                ignore_empty_lines=False)
    convert = pa_csv.ConvertOptions(column_types={"l": pa.string()}, strings_can_be_null=False)
    line0 = 1
    try:
      for batch in pa_csv.open_csv(file, read_options=read, parse_options=parse,
                                   convert_options=convert):
        tokens = pc.utf8_split_whitespace(batch.column(0))
        counts = pc.list_value_length(tokens)
        lines = pa.array(np.arange(line0, line0 + batch.num_rows, dtype=np.int64))
        line0 += batch.num_rows
        keep = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(batch.column(0))), 0)
        wrong = pc.and_(keep, pc.not_equal(counts, 2) if pairs else pc.less(counts, 2))
        if pc.any(wrong).as_py():
          at = pc.index(wrong, True).as_py()
          want = "2 fields `user item`" if pairs else "`user item item ...` (2+ fields)"
          raise InputError(f"{file}:{lines[at].as_py()}: malformed line: expected {want}, "
                           f"got {counts[at].as_py()}: {batch.column(0)[at].as_py()[:200]!r}")
        tokens, lines = tokens.filter(keep), lines.filter(keep)
        items = pc.list_slice(tokens, 1)
        parent = pc.list_parent_indices(items)
        users = pc.take(pc.list_element(tokens, 0), parent)
        flat = pc.list_flatten(items)
        n = len(flat)
        rows = pa.array(np.arange(row, row + n, dtype=np.int64))
        row += n
        yield (pa.RecordBatch.from_arrays([users, flat, rows], names=[USER, ITEMS, ROW]),
               file, pc.take(lines, parent))
    except (pa.ArrowInvalid, pa.ArrowKeyError) as e:
      raise _read_error(file, e) from None
