"""Build a config's dataset with `tfds_builders` (once per input fingerprint) and read it.

Why: the pipeline needs random access to one user's sequence (`user(i)`), every user's length
(`lengths()`) and an item side-feature lookup; array_record (TFDS's data source over the
build folder) gives the first, the builder's metadata (JSON) the other two, so opening a
dataset reads no records. The vocabularies beside the build map ids back to the originals.
"""
from __future__ import annotations

import os
import threading
from typing import Mapping

from absl import logging
from etils import epath
import numpy as np
import pyarrow.parquet as pq
import tensorflow_datasets as tfds

from mpformer_jax.data import interactions
from mpformer_jax.data import raw_formats
from mpformer_jax.data import schema
from mpformer_jax.data import tfds_builders
from mpformer_jax.data.examples import SplitPoints
from mpformer_jax.data.fingerprint import fingerprint
from mpformer_jax.data.interactions_options import InteractionsOptions

DATASETS = tuple(tfds_builders.BUILDERS)
RAW_DATA_ENV = "MPFORMER_DATA"       # folder holding ml-1m/, ml-100k/, amazon-beauty/
PARSER_VERSION = "raw_formats-1"     # bump when a raw_formats parser changes its output


class TfdsSource:
  """Random access to a built dataset's users; a `schema.SequenceSource`.

  `cache` keeps every decoded user in memory after its first read (these datasets are at
  most a few million events, so this stays within tens of MB and saves ~50 us per read).
  `incomplete_users` lists user indices whose sequence misses an event (ML-1M), for
  reporting metrics on complete users only.
  """

  def __init__(self, builder_dir: os.PathLike | str, cache: bool = True):
    builder_dir = epath.Path(builder_dir)
    if not (builder_dir / "dataset_info.json").exists():
      raise FileNotFoundError(f"no built dataset in {builder_dir}; build it with "
                              "tfds_source.load_source or `python -m launch.prepare`")
    builder = tfds.builder_from_directory(builder_dir)
    meta = builder.info.metadata
    self.name, self.data_dir = builder.name, os.fspath(builder_dir)
    self.spec = tfds_builders.spec_from_json(meta["spec"])
    n_item = len(self.spec.item_features)
    self._item_table = np.asarray(meta["item_features"], np.int32).reshape(
        self.spec.item_vocab_size, n_item)
    self._item_table.setflags(write=False)
    self._lengths = np.asarray(meta["lengths"], np.int64)
    self._lengths.setflags(write=False)
    self.incomplete_users = np.asarray(meta["incomplete_users"], np.int64)
    points = meta.get("split_points")
    self._split_points = (SplitPoints(**{k: np.asarray(v, np.int64) for k, v in points.items()})
                          if points else SplitPoints.leave_one_out(self._lengths))
    self._records = builder.as_data_source(split=tfds_builders.SPLIT)
    if len(self._records) != self._lengths.size:
      raise ValueError(f"{self.data_dir}: {len(self._records)} records but metadata lists "
                       f"{self._lengths.size} users; rebuild the dataset")
    self._cache_enabled = cache
    self._cache: dict[int, dict[str, np.ndarray]] = {}
    self._vocabs: dict[str, np.ndarray] = {}
    self._lock = threading.Lock()

  def split_points(self) -> SplitPoints:
    """The build's held-out split (leave-one-out unless built with a time cut-off)."""
    return self._split_points

  def original_ids(self, what: str) -> np.ndarray:
    """Original ids as text: of user index k ("users") or of item id k + 1 ("items")."""
    if what not in ("users", "items"):
      raise ValueError(f"original_ids: what={what!r}; use 'users' or 'items'")
    if what not in self._vocabs:     # read once: callers map ids batch by batch
      path = os.path.join(self.data_dir, f"vocab_{what}.parquet")
      self._vocabs[what] = np.asarray(pq.read_table(path)["id"].to_pylist(), dtype=object)
    return self._vocabs[what]

  def __len__(self) -> int:
    return self._lengths.size

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_cache"], state["_lock"] = {}, None
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def lengths(self) -> np.ndarray:
    """[num_users] int64 events per user (from the metadata; no record is read)."""
    return self._lengths

  def user(self, index: int) -> Mapping[str, np.ndarray]:
    """One user's full sequence (SEQ_* keys), read-only arrays."""
    index = int(index)
    if not 0 <= index < len(self):
      raise ValueError(f"user index {index} out of range [0, {len(self)})")
    seq = self._cache.get(index)
    if seq is not None:
      return seq
    record = self._records[index]
    ids = np.asarray(record[schema.SEQ_ITEM_IDS], np.int32)
    spec, n = self.spec, ids.size
    seq = {
        schema.SEQ_ITEM_IDS: ids,
        schema.SEQ_EVENT_FEATURES: np.asarray(
            record.get(schema.SEQ_EVENT_FEATURES, np.zeros((n, 0), np.int32)), np.int32),
        schema.SEQ_LABELS: np.asarray(record[schema.SEQ_LABELS], np.int8),
        schema.SEQ_USER_FEATURES: np.asarray(
            record.get(schema.SEQ_USER_FEATURES, np.zeros((0,), np.int32)), np.int32),
    }
    if n != self._lengths[index]:
      raise ValueError(f"{self.data_dir}: user {index} has {n} events, metadata says "
                       f"{int(self._lengths[index])}; rebuild the dataset")
    for key, width in ((schema.SEQ_EVENT_FEATURES, len(spec.event_features)),
                       (schema.SEQ_LABELS, len(spec.objectives))):
      seq[key] = seq[key].reshape(n, width)
    for value in seq.values():
      value.setflags(write=False)
    if self._cache_enabled:
      with self._lock:
        self._cache[index] = seq
    return seq

  def item_features(self, item_ids: np.ndarray) -> np.ndarray:
    """[..., F_item] int32 side features of item ids (0 -> zeros) from the stored table."""
    ids = np.asarray(item_ids)
    if ids.size and (ids.min() < 0 or ids.max() > self.spec.num_items):
      bad = ids[(ids < 0) | (ids > self.spec.num_items)].flat[0]
      raise ValueError(f"item_ids: item id {int(bad)} out of range [0, {self.spec.num_items}]")
    return self._item_table[ids]


def default_raw_dir() -> str | None:
  return os.environ.get(RAW_DATA_ENV) or None


def _builder(data_cfg):
  """(builder of `config.data`, keyed by the fingerprint of its inputs; raw-file folder of a
  named dataset, or None)."""
  name = data_cfg.name
  if name not in tfds_builders.BUILDERS:
    raise ValueError(f"unknown TFDS dataset {name!r}; choose one of {DATASETS}")
  data_dir = data_cfg.get("tfds_dir", "") or None
  options = None
  if name == "interactions":
    options = InteractionsOptions.from_config(data_cfg.interactions)
    inputs = [options.path] + [t.path for t in (options.item_table, options.user_table) if t]
    key, record = fingerprint(inputs, interactions.PARSER_VERSION, options.shaping())
    manual = None
  else:
    manual = data_cfg.get("dir", "") or default_raw_dir()
    if not manual:
      raise FileNotFoundError(
          f"dataset {name!r}: no raw data folder is given: set config data.dir or "
          f"${RAW_DATA_ENV}\n{raw_formats.INSTRUCTIONS[name]}")
    manual = raw_formats.resolve_dir(name, manual)
    raw_formats.check_files(manual, raw_formats.FILES[name], raw_formats.INSTRUCTIONS[name])
    key, record = fingerprint([manual], PARSER_VERSION)
  config = tfds_builders.BuildConfig(name=key, fingerprint=record, options=options,
                                     description=f"inputs fingerprinted as {key}")
  builder = tfds_builders.BUILDERS[name](data_dir=data_dir, config=config,
                                         file_format="array_record")
  return builder, manual


def build(data_cfg) -> tfds.core.DatasetBuilder:
  """Build `config.data`'s dataset unless a build of exactly these inputs exists.

  The named datasets read their raw files from `data.dir` (default: $MPFORMER_DATA): the
  dataset folder or one holding it as ml-1m/, ml-100k/ or amazon-beauty/; `interactions`
  reads `data.interactions`. `data.tfds_dir` "" means TFDS's default ($TFDS_DATA_DIR or
  ~/tensorflow_datasets). Returns the prepared builder; its `data_path` is the build.
  """
  builder, manual = _builder(data_cfg)
  if builder.data_path.exists():    # TFDS renames a finished build into place
    return builder
  logging.info("building %s into %s", builder.name, builder.data_path)
  download = tfds.download.DownloadConfig(manual_dir=manual) if manual else None
  builder.download_and_prepare(download_config=download)
  return builder


def load_source(data_cfg, cache: bool = True) -> TfdsSource:
  """Build `config.data`'s dataset if needed (see `build`) and open it as a `TfdsSource`."""
  return TfdsSource(build(data_cfg).data_path, cache=cache)
