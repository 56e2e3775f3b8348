"""Build a dataset's `SequenceSource` from `config.data`."""
from __future__ import annotations

from mpformer_jax.data.schema import SequenceSource

DATASETS = ("synthetic", "ml1m", "ml100k", "amazon_beauty", "interactions")


def make_source(data_cfg) -> SequenceSource:
  recurring = data_cfg.get("recurring", {}).get("items", 0)
  if recurring and data_cfg.name != "synthetic":
    raise ValueError(f"data.recurring.items={recurring} adds recurring interests to the "
                     f"synthetic platform only; data.name is {data_cfg.name!r}")
  story = data_cfg.get("objective_story", False)
  if story and data_cfg.name != "synthetic":
    raise ValueError("data.objective_story=True gives the synthetic platform one cause per "
                     f"objective; data.name is {data_cfg.name!r}")
  if recurring and story:
    raise ValueError("data.recurring and data.objective_story are separate workloads: "
                     "turn one off")
  if data_cfg.name == "synthetic":
    from mpformer_jax.data.synthetic import SyntheticPlatform  # pylint: disable=g-import-not-at-top
    source = SyntheticPlatform(**data_cfg.synthetic)
    if recurring:
      from mpformer_jax.data.recurring import RecurringInterests  # pylint: disable=g-import-not-at-top
      source = RecurringInterests(source, **data_cfg.recurring)
    if story:
      from mpformer_jax.data.objective_story import ObjectiveStory  # pylint: disable=g-import-not-at-top
      source = ObjectiveStory(source)
    return source
  if data_cfg.name in DATASETS:
    # Real datasets and your own logs: built once with TFDS into data.tfds_dir (default:
    # TFDS's own, $TFDS_DATA_DIR or ~/tensorflow_datasets), keyed by the inputs' fingerprint.
    from mpformer_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
    return tfds_source.load_source(data_cfg)
  raise ValueError(f"data.name={data_cfg.name!r} is not a known dataset; choose one of "
                   f"{DATASETS}")
