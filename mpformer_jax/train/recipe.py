"""The one recipe: data-dependent settings derived from the dataset's statistics.

configs/recipe.py marks fields `AUTO` and sets the rules' parameters under `config.recipe`;
`resolve` replaces each AUTO field by its rule's value before anything is built, logs why,
and leaves every other field alone (an explicit `--config.data.max_len=100` wins). The
resolved config is what `<workdir>/config.json` records, so resume and evaluation see the
values, not the markers. The rules (B = train.batch_size):
  model.objectives        the dataset's objectives, equally weighted in the loss
  data.max_len            the 99th length percentile, rounded up to 8, at most max_len_cap
  compression.schedule    the history older than raw_tokens: its older half in windows of
                          32, the rest in windows of 16 (none if under 32 events)
  model.dropout           dense_dropout if events per item >= dense_events_per_item, else
                          sparse_dropout
  loss.negatives / kind   the exact softmax over the catalogue if the data are sparse (as for
                          dropout) and num_items <= catalogue_max_items (its cost), else
                          in-batch negatives with logQ correction
  loss.next_item_targets  B * mean + 4 * sqrt(B) * std of an example's next-item rows, up to
                          a multiple of 128 (0 = dense if that saves under 10%)
  train.num_steps         epochs passes over the training examples, within [min_steps,
                          max_steps]
  train.eval_every_steps  num_steps / evaluations (the validation curve's points)
"""
from __future__ import annotations

import math

from absl import logging

from mpformer_jax.data.stats import DatasetStats

# The AUTO marker of each derivable field, of the field's own type (configs stay typed).
AUTO = -1
AUTO_STR = "auto"
AUTO_SCHEDULE = ((AUTO, AUTO),)
AUTO_OBJECTIVES = (AUTO_STR,)
AUTO_WEIGHTS = (float(AUTO),)
MARKERS = {"model.objectives": AUTO_OBJECTIVES, "loss.objective_weights": AUTO_WEIGHTS,
           "data.max_len": AUTO, "model.compression.schedule": AUTO_SCHEDULE,
           "model.dropout": float(AUTO), "loss.negatives": AUTO_STR, "loss.kind": AUTO_STR,
           "loss.next_item_targets": AUTO, "train.num_steps": AUTO,
           "train.eval_every_steps": AUTO}


def get_field(config, path: str):
  node = config
  for key in path.split("."):
    node = node[key]
  return node


def _plain(value):
  return tuple(_plain(v) for v in value) if isinstance(value, (tuple, list)) else value


def is_auto(config, path: str) -> bool:
  return _plain(get_field(config, path)) == MARKERS[path]


def auto_fields(config) -> list[str]:
  return [f for f in MARKERS if is_auto(config, f)]


def fill_from(config, saved) -> None:
  """AUTO fields of `config` take `saved`'s values (a trained run's derived ones)."""
  for field in auto_fields(config):
    config.update_from_flattened_dict({field: get_field(saved, field)})


def compression_schedule(max_len: int, raw_tokens: int) -> tuple[tuple[int, int], ...]:
  old = max_len - raw_tokens
  if old < 32:
    return ()
  coarse = old // 64                       # windows of 32 over the older half
  fine = (old - 32 * coarse) // 16         # windows of 16 over the rest
  return tuple((w, g) for w, g in ((32, coarse), (16, fine)) if g > 0)


def next_item_budget(stats: DatasetStats, sampling: str, raw: int, batch_size: int) -> int:
  mean, std = stats.valid_targets(sampling, raw)
  budget = 128 * math.ceil((batch_size * mean + 4 * math.sqrt(batch_size) * std) / 128)
  return 0 if budget >= 0.9 * batch_size * raw else budget


def derive(config, stats: DatasetStats) -> dict[str, tuple[object, str]]:
  """{field: (value, why)} for every field the recipe rules set (AUTO or not)."""
  r, b = config.recipe, config.train.batch_size
  n = len(stats.objectives)
  out = {"model.objectives": (stats.objectives, "the dataset's objectives"),
         "loss.objective_weights": ((1.0,) * n, "equal weights")}
  max_len = config.data.max_len
  if is_auto(config, "data.max_len"):
    max_len = min(r.max_len_cap, 8 * math.ceil(stats.length_p99 / 8))
    out["data.max_len"] = (max_len, f"99th length percentile {stats.length_p99:.0f}, "
                                    f"cap {r.max_len_cap}")
  schedule = config.model.compression.schedule
  if is_auto(config, "model.compression.schedule"):
    schedule = compression_schedule(max_len, r.raw_tokens)
    older = max(max_len - r.raw_tokens, 0)
    out["model.compression.schedule"] = (
        schedule, f"{older} of {max_len} tokens older than the newest {r.raw_tokens}"
        + ("" if schedule else ", under 32: nothing compressed"))
  dense = stats.events_per_item >= r.dense_events_per_item
  density = (f"{stats.events_per_item:.0f} events per item "
             f"({'>=' if dense else '<'} {r.dense_events_per_item})")
  out["model.dropout"] = (r.dense_dropout if dense else r.sparse_dropout, density)
  small = stats.num_items <= r.catalogue_max_items
  exact = small and not dense
  why = (f"{'dense' if dense else 'sparse'} data, {stats.num_items} items "
         f"({'<=' if small else '>'} {r.catalogue_max_items})")
  out["loss.negatives"] = ("catalogue" if exact else "in_batch", why)
  out["loss.kind"] = ("softmax" if exact else "smooth_logq", why)
  raw = max_len - sum(w * g for w, g in schedule)
  sampling = config.data.sampling
  out["loss.next_item_targets"] = (next_item_budget(stats, sampling, raw, b),
                                   f"next-item rows of {b} {sampling}-sampled examples, "
                                   f"{raw} raw tokens")
  per_epoch = math.ceil(stats.num_examples(sampling) / b)
  steps = min(max(r.epochs * per_epoch, r.min_steps), r.max_steps)
  out["train.num_steps"] = (steps, f"{r.epochs} passes of {per_epoch} steps, within "
                                   f"[{r.min_steps}, {r.max_steps}]")
  if not is_auto(config, "train.num_steps"):
    steps = config.train.num_steps
  every = max(1, math.ceil(steps / r.evaluations))
  out["train.eval_every_steps"] = (every, f"{r.evaluations} validation points")
  return out


def resolve(config, stats_of):
  """The config with its AUTO fields derived (in place); `stats_of()` -> DatasetStats.

  A config without AUTO fields is returned untouched (the statistics are not computed).
  """
  auto = auto_fields(config)
  if not auto:
    return config
  if "recipe" not in config:
    raise ValueError(f"{', '.join(auto)} set to auto (-1 / 'auto') but the config has no "
                     "`recipe` section with the rules' parameters (configs/recipe.py)")
  stats = stats_of()
  logging.info("recipe: dataset %s: %d users, %d items, %d events (%.0f per item), length "
               "p50 / p90 / p99 %.0f / %.0f / %.0f", stats.name, stats.num_users,
               stats.num_items, stats.num_events, stats.events_per_item, stats.length_p50,
               stats.length_p90, stats.length_p99)
  derived = derive(config, stats)
  for field in auto:
    value, why = derived[field]
    config.update_from_flattened_dict({field: value})
    logging.info("recipe: %s = %s (%s)", field, value, why)
  return config
