"""Shared start of the CLIs that read a trained run (evaluate, export): logging and config."""
from absl import flags, logging
from ml_collections import config_flags

from configs import base
from mpformer_jax.train import console_log, run_config


def run_config_from_flags(workdir: str):
  """Quiet console unless --verbosity; the run's saved config (or --config, checked against
  it) with --config.* overrides. A section added to configs/base.py after the run was saved
  (e.g. `export`) gets its defaults, so older runs stay readable."""
  verbose = flags.FLAGS["verbosity"].present
  console_log.quiet_console(verbose)
  if not verbose:
    logging.set_verbosity(logging.INFO)
  config_flag = flags.FLAGS["config"]
  overrides = config_flags.get_override_values(config_flag)
  saved = run_config.read(workdir)
  defaults = base.get_config()
  missing = [k for k in defaults if saved is not None and k not in saved["config"]]
  given = config_flag.value if config_flag.present else None
  if not missing:
    return run_config.for_reading(workdir, given, overrides)
  config = run_config.for_reading(workdir, given, {k: v for k, v in overrides.items()
                                                   if k.split(".")[0] not in missing})
  with config.unlocked():
    for section in missing:
      config[section] = defaults[section]
  config.update_from_flattened_dict({k: v for k, v in overrides.items()
                                     if k.split(".")[0] in missing})
  return config
