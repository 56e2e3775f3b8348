"""Train and evaluate a retriever.

  python -m launch.train --config=configs/base.py --workdir=/tmp/mpformer
  python -m launch.train --config=configs/base.py:tiny --config.train.num_steps=100 ...

Rerunning with the same --workdir resumes from its latest checkpoint.

Scale-out (DESIGN 4): --config.mesh.data=2 --config.mesh.model=4 shards the batch over 2
and the item table over 4 devices (on a CPU: XLA_FLAGS=--xla_force_host_platform_device_count=8);
--config.parallel.fsdp=True also shards dense weights. Multi-host: start one process per host
with --config.parallel.distributed=True (or $JAX_COORDINATOR_ADDRESS set); each reads its own
data shard, process 0 logs and writes metrics.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from mpformer_jax.parallel import distributed
from mpformer_jax.train.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", "configs/base.py",
                                          "Config file (path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/mpformer", "Checkpoints, metrics, TensorBoard.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  distributed.maybe_initialize(_CONFIG.value.get("parallel", {}))  # before any JAX backend use
  logging.set_verbosity(logging.INFO if distributed.is_writer() else logging.WARNING)
  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
