"""Build a config's dataset (once; keyed by the inputs' fingerprint) and print its report.

  python -m launch.prepare --config=configs/interactions.py \
      --config.data.interactions.path=my_log.csv
  python -m launch.prepare --config=configs/ml1m.py

`launch.train` with the same config builds the same dataset if this was not run first; a
changed input file, parser or data-shaping setting is a new build. The report (users, items,
events per objective, length percentiles, rows dropped by reason) is also written beside the
build as build_report.json; --report_json copies it elsewhere.
"""
import json

from absl import app, flags, logging
from ml_collections import config_flags

from mpformer_jax.data.build_report import format_report, read_report
from mpformer_jax.data.tfds_source import build

_CONFIG = config_flags.DEFINE_config_file("config", "configs/interactions.py",
                                          "Config file (path[:variant]).", lock_config=True)
_REPORT = flags.DEFINE_string("report_json", "", "Also write the build report here.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  builder = build(_CONFIG.value.data)
  report = read_report(builder.data_path)
  print(format_report(report, builder.data_path), flush=True)
  if _REPORT.value:
    with open(_REPORT.value, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  app.run(main)
