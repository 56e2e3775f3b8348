"""Train and evaluate a retriever.

  python -m launch.train --config=configs/base.py --workdir=/tmp/mpformer
  python -m launch.train --config=configs/base.py:tiny --config.train.num_steps=100 ...

Rerunning with the same --workdir resumes from its newest intact checkpoint, after checking
the config against the one saved in `<workdir>/config.json` (a change that would alter the
run is an error naming the fields; `--allow_config_changes=train.num_steps` accepts a new
length). SIGTERM or Ctrl-C stops after the current step with a checkpoint, exit status 0.
The console shows the project's log lines; everything, storage libraries included, goes to
`<workdir>/train.log` (`--verbosity=0` shows it all on the console too).

Scale-out (DESIGN 4): --config.mesh.data=2 --config.mesh.model=4 shards the batch over 2
and the item table over 4 devices (on a CPU: XLA_FLAGS=--xla_force_host_platform_device_count=8);
--config.parallel.fsdp=True also shards dense weights. Multi-host: start one process per host
with --config.parallel.distributed=True (or $JAX_COORDINATOR_ADDRESS set); each reads its own
data shard, process 0 logs and writes metrics.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from mpformer_jax.parallel import distributed
from mpformer_jax.train import console_log
from mpformer_jax.train.loop import prepare_workdir, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", "configs/base.py",
                                          "Config file (path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/mpformer", "Checkpoints, metrics, TensorBoard.")
_ALLOW = flags.DEFINE_list("allow_config_changes", [], "Fields that may differ from the run's "
                           "saved config on resume (only train.num_steps: the learning-rate "
                           "schedule is re-derived from the new value).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  verbose = flags.FLAGS["verbosity"].present
  console_log.quiet_console(verbose)
  distributed.maybe_initialize(_CONFIG.value.get("parallel", {}))  # before any JAX backend use
  if not verbose:
    logging.set_verbosity(logging.INFO if distributed.is_writer() else logging.WARNING)
  workdir = prepare_workdir(_WORKDIR.value)
  console_log.log_to_file(workdir, "train")
  result = train_and_evaluate(_CONFIG.value, workdir, tuple(_ALLOW.value))
  if result.get("preempted"):
    print(f"Stopped by {result['signal']} at step {result['step']} with a checkpoint; rerun "
          "the same command to resume.", flush=True)


if __name__ == "__main__":
  app.run(main)
