"""TFDS builders for the real datasets, written as array_record (no TensorFlow needed).

Why TFDS: a built dataset is versioned, self-describing and read with random access by
`tfds.data_source` (`tfds_source.TfdsSource`), which Grain consumes directly.

Layout of every builder (`ml1m`, `ml100k`, `amazon_beauty`, `interactions`):
  * one BuilderConfig per input fingerprint (`fingerprint.fingerprint`: the input files, the
    parser version and the data-shaping config), so the build lives in
    `<tfds_dir>/<name>/<fingerprint>/<version>` and a changed input is a new build;
  * one split, `SPLIT` ("users"), one example per user, record i = user i (users sorted by
    their raw id; shuffling is disabled and the key is the user index). Features:
    `user_id` (the raw user id when it is an integer, else the user index, int64),
    `item_ids` [n] int32, `labels` [n, O] int8, and, only when the dataset has any,
    `event_features` [n, F_event] and `user_features` [F_user] int32 (TFDS cannot decode
    zero-width tensors, so empty groups are left out).
  * `info.metadata` (metadata.json beside the records) holds the small tables: `spec` (the
    `DatasetSpec` as JSON), `item_features` ([num_items + 1][F_item] side-feature table,
    row 0 = padding), `lengths` (events per user, in record order) and `incomplete_users`
    (user indices flagged in ML-1M's incomplete_users.txt).
  * beside them: `vocab_users.parquet` / `vocab_items.parquet` (column `id`: the original id
    of user index k / item id k + 1, as text), `feature_vocabs.json` (side-feature values,
    code = position + 1), `fingerprint.json` and `build_report.json`.
TFDS writes into a temporary folder and renames it into place when done, so an interrupted
build is never taken for a complete one. The raw files of the named datasets come from a
manual directory; parsing lives in `raw_formats`, the generic path in `interactions`.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import resource
import time
from typing import Any, Callable

from array_record.python.array_record_module import ArrayRecordWriter
from etils import epath
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow_datasets as tfds
from tensorflow_datasets.core import naming
from tensorflow_datasets.core import splits as splits_lib

from mpformer_jax.data import raw_formats
from mpformer_jax.data import schema
from mpformer_jax.data.interactions import InteractionLog
from mpformer_jax.data.interactions_options import InteractionsOptions

SPLIT = "users"
EXAMPLES_PER_SHARD = 100_000     # users per array_record shard
DATASET_VERSION = "1.0.0"
_BYTES = tfds.features.Encoding.BYTES     # raw little-endian bytes: no int64 upcast on disk


def spec_to_json(spec: schema.DatasetSpec) -> dict[str, Any]:
  return {"name": spec.name, "num_items": spec.num_items,
          "item_features": [list(f) for f in spec.item_features],
          "event_features": [list(f) for f in spec.event_features],
          "user_features": [list(f) for f in spec.user_features],
          "objectives": list(spec.objectives), "behaviour_feature": spec.behaviour_feature}


def spec_from_json(data: dict[str, Any]) -> schema.DatasetSpec:
  def feats(key: str) -> tuple[tuple[str, int], ...]:
    return tuple((str(n), int(v)) for n, v in data[key])
  return schema.DatasetSpec(
      name=data["name"], num_items=int(data["num_items"]), item_features=feats("item_features"),
      event_features=feats("event_features"), user_features=feats("user_features"),
      objectives=tuple(data["objectives"]), behaviour_feature=data["behaviour_feature"])


@dataclasses.dataclass(eq=False, repr=False)
class BuildConfig(tfds.core.BuilderConfig):
  """A build keyed by its input fingerprint (`name`); `options` for `interactions`."""
  fingerprint: dict[str, Any] | None = None
  options: InteractionsOptions | None = None

  def __repr__(self) -> str:      # TFDS logs custom configs; the fingerprint is long
    return f"BuildConfig(fingerprint {self.name})"


class _SequenceBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared builder: parse the input, store the tables, write one record per user."""

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: "One example per user; side tables in the metadata."}
  DATASET: str = ""            # key of raw_formats.PARSERS
  HOMEPAGE: str = ""
  DESCRIPTION: str = ""
  # Static layout (the features dict needs it before parsing): widths and objectives.
  NUM_EVENT_FEATURES = 0
  NUM_USER_FEATURES = 0
  OBJECTIVES: tuple[str, ...] = ()

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This file. TFDS's default probes the optional `importlib_resources` backport for
    builders defined in an installed package and fails where it is absent."""
    return epath.Path(inspect.getfile(cls))

  def _layout(self) -> tuple[int, int, tuple[str, ...]]:
    """(event features, user features, objectives): known before any data is read."""
    return self.NUM_EVENT_FEATURES, self.NUM_USER_FEATURES, self.OBJECTIVES

  def _info(self) -> tfds.core.DatasetInfo:
    num_event, num_user, objectives = self._layout()
    features = {
        "user_id": tfds.features.Scalar(np.int64),
        schema.SEQ_ITEM_IDS: tfds.features.Tensor(shape=(None,), dtype=np.int32,
                                                  encoding=_BYTES),
        schema.SEQ_LABELS: tfds.features.Tensor(shape=(None, len(objectives)),
                                                dtype=np.int8, encoding=_BYTES),
    }
    if num_event:
      features[schema.SEQ_EVENT_FEATURES] = tfds.features.Tensor(
          shape=(None, num_event), dtype=np.int32, encoding=_BYTES)
    if num_user:
      features[schema.SEQ_USER_FEATURES] = tfds.features.Tensor(
          shape=(num_user,), dtype=np.int32, encoding=_BYTES)
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION, homepage=self.HOMEPAGE,
        features=tfds.features.FeaturesDict(features), disable_shuffling=True,
        metadata=tfds.core.MetadataDict())

  def _manual_dir(self, dl_manager) -> str:
    """The dataset folder under the manual dir; a clear error naming the missing file."""
    files, instructions = raw_formats.FILES[self.DATASET], raw_formats.INSTRUCTIONS[self.DATASET]
    try:
      manual = os.fspath(dl_manager.manual_dir)
    except AssertionError as e:     # TFDS: the manual dir does not exist or is empty
      raise FileNotFoundError(f"{self.name}: missing raw dataset file {files[0]} (the manual "
                              f"directory is absent or empty: {e})\n{instructions}") from e
    return raw_formats.resolve_dir(self.DATASET, manual)

  def _parse(self, dl_manager):
    """The parsed dataset: a `raw_formats.ParsedDataset` or `interactions.InteractionLog`
    (both give spec, lengths(), examples(), original_ids(), user_ids, explicit_split(),
    item_table, incomplete_users, feature_vocabs and report)."""
    return raw_formats.PARSERS[self.DATASET](self._manual_dir(dl_manager))

  def _split_generators(self, dl_manager):
    start = time.perf_counter()
    parsed = self._parse(dl_manager)
    spec = parsed.spec
    layout = (len(spec.event_features), len(spec.user_features), spec.objectives)
    if layout != self._layout():
      raise AssertionError(f"{self.name}: parser layout {layout} differs from the builder's")
    self.info.metadata.update({
        "spec": spec_to_json(spec),
        "item_features": parsed.item_table.tolist(),
        "lengths": parsed.lengths().tolist(),
        "incomplete_users": parsed.incomplete_users.tolist(),
    })
    points = parsed.explicit_split()
    if points is not None:
      self.info.metadata["split_points"] = {k: getattr(points, k).tolist()
                                            for k in ("train_end", "valid", "test")}
    json.dumps(dict(self.info.metadata))     # fail now, not after writing, if not JSON-able
    folder = epath.Path(self.data_dir)
    for what in ("users", "items"):
      pq.write_table(pa.table({"id": parsed.original_ids(what)}),
                     os.fspath(folder / f"vocab_{what}.parquet"))
    (folder / "feature_vocabs.json").write_text(json.dumps(parsed.feature_vocabs))
    (folder / "fingerprint.json").write_text(json.dumps(self.builder_config.fingerprint,
                                                        indent=1))
    return {SPLIT: self._generate_examples(parsed, start)}

  def _download_and_prepare(self, dl_manager, download_config=None):
    """Writes the examples in user order, shard by shard, straight to array_record.

    Why not the GeneratorBasedBuilder default: its writer buffers every serialized example
    to sort them, in memory up to 1 GB and past that in temporary files opened through
    TensorFlow, which we do not install; our examples arrive in key order already. TFDS's
    `download_and_prepare` still writes into a temporary folder, the dataset info, and
    renames the folder into place at the end.
    """
    del download_config
    examples = self._split_generators(dl_manager)[SPLIT]
    num_shards = max(1, -(-len(self.info.metadata["lengths"]) // EXAMPLES_PER_SHARD))
    template = naming.ShardedFileTemplate(data_dir=self.data_dir, dataset_name=self.name,
                                          split=SPLIT, filetype_suffix="array_record")
    shard_lengths, num_bytes, writer = [], 0, None
    try:
      for index, example in examples:
        if index // EXAMPLES_PER_SHARD == len(shard_lengths):
          if writer is not None:
            writer.close()
          path = template.sharded_filepath(shard_index=len(shard_lengths), num_shards=num_shards)
          writer = ArrayRecordWriter(os.fspath(path), "group_size:1")
          shard_lengths.append(0)
        data = self.info.features.serialize_example(example)
        writer.write(data)
        shard_lengths[-1] += 1
        num_bytes += len(data)
    finally:
      if writer is not None:
        writer.close()
    self.info.set_splits(splits_lib.SplitDict([splits_lib.SplitInfo(
        name=SPLIT, shard_lengths=shard_lengths, num_bytes=num_bytes,
        filename_template=template)]))

  def _generate_examples(self, parsed, start: float):
    lengths = parsed.lengths()
    report = {"users": int(lengths.size), "items": parsed.spec.num_items,
              "events": int(lengths.sum()), **parsed.report,
              "name": self.name, "fingerprint": self.builder_config.name}
    user_ids = parsed.user_ids
    for index, seq in parsed.examples():
      example = {"user_id": int(user_ids[index]),
                 schema.SEQ_ITEM_IDS: seq[schema.SEQ_ITEM_IDS],
                 schema.SEQ_LABELS: seq[schema.SEQ_LABELS]}
      if seq[schema.SEQ_EVENT_FEATURES].shape[-1]:
        example[schema.SEQ_EVENT_FEATURES] = seq[schema.SEQ_EVENT_FEATURES]
      if seq[schema.SEQ_USER_FEATURES].shape[-1]:
        example[schema.SEQ_USER_FEATURES] = seq[schema.SEQ_USER_FEATURES]
      yield index, example
    report["seconds"] = time.perf_counter() - start
    report["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    (epath.Path(self.data_dir) / "build_report.json").write_text(json.dumps(report, indent=1))


class Ml1m(_SequenceBuilder):
  """MovieLens-1M, SASRec version (3,416 items): next-item, one objective "watch"."""

  DATASET = "ml1m"
  MANUAL_DOWNLOAD_INSTRUCTIONS = raw_formats.ML1M_INSTRUCTIONS
  HOMEPAGE = "https://grouplens.org/datasets/movielens/1m/"
  DESCRIPTION = ("MovieLens-1M as preprocessed by SASRec (5-core, ids 1..3416), one example "
                 "per user; item genres/year and user gender/age/occupation from GroupLens.")
  NUM_USER_FEATURES = len(raw_formats.MOVIE_USER_FEATURES)
  OBJECTIVES = ("watch",)


class Ml100k(_SequenceBuilder):
  """MovieLens-100K (RecBole atomic files) with ratings: objectives watch / like / love."""

  DATASET = "ml100k"
  MANUAL_DOWNLOAD_INSTRUCTIONS = raw_formats.ML100K_INSTRUCTIONS
  HOMEPAGE = "https://grouplens.org/datasets/movielens/100k/"
  DESCRIPTION = ("MovieLens-100K, one example per user sorted by timestamp; objectives "
                 "watch (any rating), like (>= 4), love (5); behaviour and time-gap events.")
  NUM_EVENT_FEATURES = len(raw_formats.ML100K_EVENT_FEATURES)
  NUM_USER_FEATURES = len(raw_formats.MOVIE_USER_FEATURES)
  OBJECTIVES = raw_formats.ML100K_OBJECTIVES


class AmazonBeauty(_SequenceBuilder):
  """Amazon Beauty, S3-Rec 5-core preprocessing: one objective "purchase", no features."""

  DATASET = "amazon_beauty"
  MANUAL_DOWNLOAD_INSTRUCTIONS = raw_formats.BEAUTY_INSTRUCTIONS
  HOMEPAGE = "https://github.com/RUCAIBox/CIKM2020-S3Rec"
  DESCRIPTION = "Amazon Beauty reviews as S3-Rec sequences (5-core), one example per user."
  OBJECTIVES = ("purchase",)


class Interactions(_SequenceBuilder):
  """Your own interaction log, sequence file or pair file (`config.data.interactions`)."""

  DATASET = "interactions"
  DESCRIPTION = ("A user's own interaction log, one example per user; vocabularies map dense "
                 "ids back to the original ids (vocab_*.parquet).")

  @property
  def _options(self) -> InteractionsOptions:
    return self.builder_config.options

  def _layout(self) -> tuple[int, int, tuple[str, ...]]:
    o = self._options
    users = len(o.user_table.columns) if o.user_table else 0
    return len(o.event_features()), users, o.objectives

  def _parse(self, dl_manager) -> InteractionLog:
    del dl_manager
    return InteractionLog(self._options, name=self.name)


BUILDERS: dict[str, Callable[..., _SequenceBuilder]] = {
    "ml1m": Ml1m, "ml100k": Ml100k, "amazon_beauty": AmazonBeauty,
    "interactions": Interactions}
