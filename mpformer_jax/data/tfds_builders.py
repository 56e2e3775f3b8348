"""TFDS builders for the real datasets, written as array_record (no TensorFlow needed).

Why TFDS: a built dataset is versioned, self-describing and read with random access by
`tfds.data_source` (`tfds_source.TfdsSource`), which Grain consumes directly.

Layout of every builder (`ml1m`, `ml100k`, `amazon_beauty`):
  * one split, `SPLIT` ("users"), one example per user, record i = user i (users sorted by
    their raw id; shuffling is disabled and the key is the user index). Features:
    `user_id` (the raw user id, int64), `item_ids` [n] int32, `labels` [n, O] int8, and,
    only when the dataset has any, `event_features` [n, F_event] and `user_features`
    [F_user] int32 (TFDS cannot decode zero-width tensors, so empty groups are left out).
  * `info.metadata` (metadata.json beside the records) holds the small tables: `spec` (the
    `DatasetSpec` as JSON), `item_features` ([num_items + 1][F_item] side-feature table,
    row 0 = padding), `lengths` (events per user, in record order) and `incomplete_users`
    (user indices flagged in ML-1M's incomplete_users.txt).
The raw files come from a manual directory (`DownloadConfig(manual_dir=...)`); parsing lives
in `raw_formats`.
"""
from __future__ import annotations

import inspect
import json
import os
from typing import Any, Callable

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from mpformer_jax.data import raw_formats
from mpformer_jax.data import schema

SPLIT = "users"
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


class _SequenceBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared builder: parse the manual directory, store the tables, write one record per user."""

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

  def _info(self) -> tfds.core.DatasetInfo:
    features = {
        "user_id": tfds.features.Scalar(np.int64),
        schema.SEQ_ITEM_IDS: tfds.features.Tensor(shape=(None,), dtype=np.int32,
                                                  encoding=_BYTES),
        schema.SEQ_LABELS: tfds.features.Tensor(shape=(None, len(self.OBJECTIVES)),
                                                dtype=np.int8, encoding=_BYTES),
    }
    if self.NUM_EVENT_FEATURES:
      features[schema.SEQ_EVENT_FEATURES] = tfds.features.Tensor(
          shape=(None, self.NUM_EVENT_FEATURES), dtype=np.int32, encoding=_BYTES)
    if self.NUM_USER_FEATURES:
      features[schema.SEQ_USER_FEATURES] = tfds.features.Tensor(
          shape=(self.NUM_USER_FEATURES,), dtype=np.int32, encoding=_BYTES)
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

  def _split_generators(self, dl_manager):
    parsed = raw_formats.PARSERS[self.DATASET](self._manual_dir(dl_manager))
    spec = parsed.spec
    layout = (len(spec.event_features), len(spec.user_features), spec.objectives)
    if layout != (self.NUM_EVENT_FEATURES, self.NUM_USER_FEATURES, self.OBJECTIVES):
      raise AssertionError(f"{self.name}: parser layout {layout} differs from the builder's")
    self.info.metadata.update({
        "spec": spec_to_json(spec),
        "item_features": parsed.item_table.tolist(),
        "lengths": parsed.lengths().tolist(),
        "incomplete_users": parsed.incomplete_users.tolist(),
    })
    json.dumps(dict(self.info.metadata))     # fail now, not after writing, if not JSON-able
    return {SPLIT: self._generate_examples(parsed)}

  def _generate_examples(self, parsed: raw_formats.ParsedDataset):
    for index in range(len(parsed)):
      seq = parsed.user(index)
      example = {"user_id": int(parsed.user_ids[index]),
                 schema.SEQ_ITEM_IDS: seq[schema.SEQ_ITEM_IDS],
                 schema.SEQ_LABELS: seq[schema.SEQ_LABELS]}
      if self.NUM_EVENT_FEATURES:
        example[schema.SEQ_EVENT_FEATURES] = seq[schema.SEQ_EVENT_FEATURES]
      if self.NUM_USER_FEATURES:
        example[schema.SEQ_USER_FEATURES] = seq[schema.SEQ_USER_FEATURES]
      yield index, example


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


BUILDERS: dict[str, Callable[..., _SequenceBuilder]] = {
    "ml1m": Ml1m, "ml100k": Ml100k, "amazon_beauty": AmazonBeauty}
