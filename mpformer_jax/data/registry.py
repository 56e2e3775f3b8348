"""Build a dataset's `SequenceSource` from `config.data`."""
from __future__ import annotations

from mpformer_jax.data.schema import SequenceSource

DATASETS = ("synthetic", "ml1m", "ml100k", "amazon_beauty")


def make_source(data_cfg) -> SequenceSource:
  if data_cfg.name == "synthetic":
    from mpformer_jax.data.synthetic import SyntheticPlatform  # pylint: disable=g-import-not-at-top
    return SyntheticPlatform(**data_cfg.synthetic)
  if data_cfg.name in DATASETS:
    # Real datasets: built once with TFDS into data.tfds_dir (default: TFDS's own,
    # $TFDS_DATA_DIR or ~/tensorflow_datasets) from the raw files in data.dir ($MPFORMER_DATA).
    from mpformer_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
    return tfds_source.load_source(data_cfg.name, data_dir=data_cfg.get("tfds_dir", "") or None,
                                   manual_dir=data_cfg.get("dir", "") or None)
  raise ValueError(f"data.name={data_cfg.name!r} is not a known dataset; choose one of "
                   f"{DATASETS}")
