"""Evaluate a trained checkpoint offline, with exact or ScaNN retrieval.

  python -m launch.evaluate --workdir=/tmp/mpformer
  python -m launch.evaluate --workdir=/tmp/tiny --retrieval=scann --config.eval.num_users=100

Uses the config the run was trained with (`<workdir>/config.json`); `--config.eval.*` and
other evaluation-time fields may be changed on top of it. An explicit `--config=...` is
checked against the saved one. Restores the newest intact checkpoint in
`<workdir>/checkpoints`, prints a per-objective table (all items / seen removed) and writes
`<workdir>/eval_<retrieval>.json`. ScaNN settings: `config.eval.scann` (-1 = automatic).
With `--top_items=N` it also writes every held-out user's top-N items per objective, as the
original ids of the input files, to `<workdir>/top_items_<split>.jsonl`.
With `--export_embeddings=PATH.npz` it instead writes the corpus and the held-out users'
interest vectors for `python benchmarks/retrieval.py --embeddings PATH.npz`.
"""
from absl import app, flags
from ml_collections import config_flags

from launch.reading import run_config_from_flags
from mpformer_jax.train.offline_eval import (RETRIEVALS, SPLITS, evaluate, export_embeddings,
                                             format_table, top_items)

_CONFIG = config_flags.DEFINE_config_file("config", "configs/base.py",
                                          "Config file; default: the run's saved config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/mpformer", "Workdir of the training run.")
_RETRIEVAL = flags.DEFINE_enum("retrieval", "exact", RETRIEVALS, "Retrieval method.")
_SPLIT = flags.DEFINE_enum("split", "test", SPLITS, "Held-out split to evaluate.")
_TOP = flags.DEFINE_integer("top_items", 0, "Also write each held-out user's top-N items per "
                            "objective, as original ids, to <workdir>/top_items_<split>.jsonl.")
_EXPORT = flags.DEFINE_string("export_embeddings", "", "Write item and user embeddings to "
                              "this .npz (for benchmarks/retrieval.py) instead of evaluating.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = run_config_from_flags(_WORKDIR.value)
  if _EXPORT.value:
    shapes = export_embeddings(config, _WORKDIR.value, _EXPORT.value, _SPLIT.value)
    print(f"wrote {_EXPORT.value}: {shapes}", flush=True)
    return
  result = evaluate(config, _WORKDIR.value, _RETRIEVAL.value, _SPLIT.value)
  print(format_table(result, config.model.objectives), flush=True)
  if _TOP.value:
    path = top_items(config, _WORKDIR.value, _TOP.value, _SPLIT.value,
                     remove_seen=config.eval.remove_seen)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
  app.run(main)
