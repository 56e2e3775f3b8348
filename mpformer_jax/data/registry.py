"""Build a dataset's `SequenceSource` from `config.data`."""
from __future__ import annotations

from mpformer_jax.data.schema import SequenceSource

DATASETS = ("synthetic",)


def make_source(data_cfg) -> SequenceSource:
  if data_cfg.name == "synthetic":
    from mpformer_jax.data.synthetic import SyntheticPlatform  # pylint: disable=g-import-not-at-top
    return SyntheticPlatform(**data_cfg.synthetic)
  raise ValueError(f"data.name={data_cfg.name!r} is not a known dataset; choose one of "
                   f"{DATASETS}")
