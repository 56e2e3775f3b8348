"""Train and evaluate a retriever.

  python -m launch.train --config=configs/base.py --workdir=/tmp/mpformer
  python -m launch.train --config=configs/base.py:tiny --config.train.num_steps=100 ...

Rerunning with the same --workdir resumes from its latest checkpoint.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from mpformer_jax.train.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", "configs/base.py",
                                          "Config file (path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/mpformer", "Checkpoints, metrics, TensorBoard.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
