"""Publish a trained run as a serving artifact (README "Serve").

  python -m launch.export --workdir=/tmp/mpformer                # -> /tmp/mpformer/export/v...
  python -m launch.export --workdir=/tmp/mpformer --out=/srv/mpformer --config.export.index=scann

Reads the run's saved config (`<workdir>/config.json`); `--config.export.*` and `--config.eval.*`
may be changed on top of it. Restores the newest intact checkpoint, writes the next version
under `--out` (default `export.dir`, else `<workdir>/export`) atomically, keeps the newest
`export.keep`, and prints the version's path and its ScaNN recall against exact search.
"""
from absl import app, flags
from ml_collections import config_flags

from launch.reading import run_config_from_flags
from mpformer_jax.serving import artifact
from mpformer_jax.train.export import export_run

_CONFIG = config_flags.DEFINE_config_file("config", "configs/base.py",
                                          "Config file; default: the run's saved config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/mpformer", "Workdir of the training run.")
_OUT = flags.DEFINE_string("out", "", "Artifact root (default export.dir or <workdir>/export).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = run_config_from_flags(_WORKDIR.value)
  path = export_run(config, _WORKDIR.value, _OUT.value)
  manifest = artifact.read_manifest(path)
  index = manifest["index"]
  recall = {k: round(v, 4) for k, v in index.items() if k.startswith("recall@")}
  print(f"published {path} (step {manifest['step']}, {manifest['num_items']} items, "
        f"{index['kind']} search{', ScaNN ' + str(recall) + ' against exact' if recall else ''})",
        flush=True)


if __name__ == "__main__":
  app.run(main)
