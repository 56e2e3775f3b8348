"""A `SequenceSource` over a dataset built by `tfds_builders`, read with `tfds.data_source`.

Why: the pipeline needs random access to one user's sequence (`user(i)`), every user's length
(`lengths()`) and an item side-feature lookup; array_record gives the first, the builder's
metadata (a few hundred KB of JSON) the other two, so opening a dataset reads no records.
"""
from __future__ import annotations

import os
import threading
from typing import Mapping

import numpy as np
import tensorflow_datasets as tfds

from mpformer_jax.data import raw_formats
from mpformer_jax.data import schema
from mpformer_jax.data import tfds_builders

DATASETS = tuple(tfds_builders.BUILDERS)
RAW_DATA_ENV = "MPFORMER_DATA"       # folder holding ml-1m/, ml-100k/, amazon-beauty/


class TfdsSource:
  """Random access to a built dataset's users; a `schema.SequenceSource`.

  `cache` keeps every decoded user in memory after its first read (these datasets are at
  most a few million events, so this stays within tens of MB and saves ~50 us per read).
  `incomplete_users` lists user indices whose sequence misses an event (ML-1M), for
  reporting metrics on complete users only.
  """

  def __init__(self, name: str, data_dir: os.PathLike | str | None = None,
               cache: bool = True):
    builder = tfds.builder(name, data_dir=data_dir)
    if not (builder.data_path.exists() and builder.is_prepared()):
      raise FileNotFoundError(f"dataset {name!r} is not built in {builder.data_dir}; "
                              "build it with tfds_source.load_source")
    meta = builder.info.metadata
    self.name, self.data_dir = name, os.fspath(builder.data_dir)
    self.spec = tfds_builders.spec_from_json(meta["spec"])
    n_item = len(self.spec.item_features)
    self._item_table = np.asarray(meta["item_features"], np.int32).reshape(
        self.spec.item_vocab_size, n_item)
    self._item_table.setflags(write=False)
    self._lengths = np.asarray(meta["lengths"], np.int64)
    self._lengths.setflags(write=False)
    self.incomplete_users = np.asarray(meta["incomplete_users"], np.int64)
    self._records = tfds.data_source(name, split=tfds_builders.SPLIT,
                                     data_dir=builder.data_dir_root, download=False)
    if len(self._records) != self._lengths.size:
      raise ValueError(f"{self.data_dir}: {len(self._records)} records but metadata lists "
                       f"{self._lengths.size} users; rebuild the dataset")
    self._cache_enabled = cache
    self._cache: dict[int, dict[str, np.ndarray]] = {}
    self._lock = threading.Lock()

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


def build(name: str, data_dir: os.PathLike | str | None = None,
          manual_dir: os.PathLike | str | None = None) -> tfds.core.DatasetBuilder:
  """Build dataset `name` into `data_dir` unless already built; returns the builder.

  `manual_dir` (default: $MPFORMER_DATA) is the dataset folder or one holding it as ml-1m/,
  ml-100k/ or amazon-beauty/. `data_dir` None means TFDS's default ($TFDS_DATA_DIR or
  ~/tensorflow_datasets).
  """
  if name not in tfds_builders.BUILDERS:
    raise ValueError(f"unknown TFDS dataset {name!r}; choose one of {DATASETS}")
  builder = tfds_builders.BUILDERS[name](data_dir=data_dir, file_format="array_record")
  if builder.data_path.exists():    # TFDS renames a finished build into place
    return builder
  manual_dir = manual_dir or default_raw_dir()
  if not manual_dir:
    raise FileNotFoundError(
        f"dataset {name!r} is not built in {builder.data_dir_root} and no raw data folder is "
        f"given: set config data.dir or ${RAW_DATA_ENV}\n{raw_formats.INSTRUCTIONS[name]}")
  folder = raw_formats.resolve_dir(name, manual_dir)
  raw_formats.check_files(folder, raw_formats.FILES[name], raw_formats.INSTRUCTIONS[name])
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=folder))
  return builder


def load_source(name: str, data_dir: os.PathLike | str | None = None,
                manual_dir: os.PathLike | str | None = None, cache: bool = True) -> TfdsSource:
  """Build `name` if needed (see `build`) and open it as a `TfdsSource`."""
  builder = build(name, data_dir, manual_dir)
  return TfdsSource(name, data_dir=builder.data_dir_root, cache=cache)
