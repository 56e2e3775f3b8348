"""Build a dataset's `SequenceSource` from `config.data`."""
from __future__ import annotations

from mpformer_jax.data.schema import SequenceSource

DATASETS = ("synthetic", "ml1m", "ml100k", "amazon_beauty", "interactions")


def make_source(data_cfg) -> SequenceSource:
  if data_cfg.name == "synthetic":
    from mpformer_jax.data.synthetic import SyntheticPlatform  # pylint: disable=g-import-not-at-top
    return SyntheticPlatform(**data_cfg.synthetic)
  if data_cfg.name in DATASETS:
    # Real datasets and your own logs: built once with TFDS into data.tfds_dir (default:
    # TFDS's own, $TFDS_DATA_DIR or ~/tensorflow_datasets), keyed by the inputs' fingerprint.
    from mpformer_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
    return tfds_source.load_source(data_cfg)
  raise ValueError(f"data.name={data_cfg.name!r} is not a known dataset; choose one of "
                   f"{DATASETS}")
