"""The run's config is part of the run: saved at the first start, checked on every resume.

`<workdir>/config.json` holds the resolved config, the package version, the data fingerprint
and the process count of the first start, and every change accepted since. On resume a change
to anything that shapes the parameters, the data order or the schedule is a `ConfigDrift`
error naming each field, because the checkpoint's iterator position and optimizer state only
mean what they meant under the saved values. Three kinds of field:

  * free: evaluation, logging and checkpoint cadence, threads, paths and the device mesh
    (checkpoints restore onto any mesh): changed values are logged and used;
  * overridable: `train.num_steps`, accepted with `--allow_config_changes=train.num_steps`;
    the schedule policy is that the learning-rate schedule is re-derived from the new value
    (warmup unchanged, the cosine decay stretched or shrunk to end at the new last step), so
    the learning rate jumps once at the resumed step (both values are logged);
  * everything else: an error; use a new workdir, or rerun with the saved values.

`launch.evaluate` uses the saved config unless `--config` is given (then its model and data
fields are checked against the saved ones).
"""
from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
from typing import Any, Iterable

import jax
import ml_collections
from absl import logging

from mpformer_jax.train import recipe

RUN_FILE = "config.json"
# recipe.*: the rules' parameters; every value they derive is a field checked on its own.
FREE_PREFIXES = ("eval.", "mesh.", "parallel.", "export.", "recipe.")
FREE_FIELDS = frozenset({
    "train.log_every_steps", "train.eval_every_steps", "train.checkpoint_every_steps",
    "train.max_checkpoints", "train.nonfinite", "train.export_every_steps",
    "data.num_threads", "data.dir", "data.tfds_dir", "data.interactions.memory_limit"})
OVERRIDABLE = {"train.num_steps": "the learning-rate schedule is re-derived from the new "
                                  "num_steps (warmup unchanged, cosine decay to the new end)"}


READ_FIELDS = ("model.", "data.")   # what evaluating or exporting a run depends on
# Fields added to the configs after runs were saved, with the value that computes what the
# runs did before them: absent from a saved config and at this value now, they are no change.
ADDED_FIELDS = {"train.nonfinite": "stop", "data.invalid_users": "error",
                "data.sampling": "event", "loss.next_item_targets": 0,
                "model.param_dtype": "float32", "train.export_every_steps": 0,
                "eval.objectives": (), "model.long_history": "compress",
                "model.solar.rank": 16, "model.solar.recent": 48,
                "data.recurring.items": 0, "data.recurring.period": 512,
                "data.recurring.burst": 8, "data.recurring.quiet": 256,
                "data.recurring.return_prob": 0.5, "data.objective_story": False,
                "model.freq_mix": 0.0, "model.freq_window": 10,
                "model.item_encoder": "mlp", "model.positions": "rope",
                "model.ffn": "swiglu", "loss.mask_seen": False,
                "model.norm": "rms", "model.output_skip": "none"}


class ConfigDrift(ValueError):
  """The config (or data) of a resumed run differs from the one it was started with."""


def package_version() -> str:
  try:
    return importlib.metadata.version("mpformer_jax")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def data_fingerprint(source, data_cfg) -> str:
  """What identifies the data: the build's input fingerprint, or the generator's settings."""
  data_dir = getattr(source, "data_dir", None)
  if data_dir:   # TFDS builds live in <tfds_dir>/<name>/<fingerprint>/<version>
    return f"{data_cfg.name}:{os.path.basename(os.path.dirname(os.fspath(data_dir)))}"
  blob = json.dumps(plain(data_cfg.get(data_cfg.name, {})), sort_keys=True)
  return f"{data_cfg.name}:config-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def plain(value: Any) -> Any:
  """ConfigDict / tuple values -> JSON values (tuples become lists), for saving and comparing."""
  if isinstance(value, (ml_collections.ConfigDict, dict)):
    return {k: plain(v) for k, v in value.items()}
  if isinstance(value, (tuple, list)):
    return [plain(v) for v in value]
  return value


def _tuples(value: Any) -> Any:
  """JSON values -> config values: lists back to tuples, as the config files write them."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def kind_of(field: str) -> str:
  if field in FREE_FIELDS or field.startswith(FREE_PREFIXES):
    return "free"
  return "overridable" if field in OVERRIDABLE else "fixed"


def path(workdir: str) -> str:
  return os.path.join(workdir, RUN_FILE)


def read(workdir: str) -> dict | None:
  """The saved run record, or None for a workdir that never started a run."""
  try:
    with open(path(workdir)) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except json.JSONDecodeError as e:
    raise ConfigDrift(f"{path(workdir)} is not valid JSON ({e}); it is the config the run "
                      "was started with: restore it from a backup or use a new workdir") from e


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The saved config as a locked ConfigDict (what `launch.evaluate` uses by default)."""
  record = read(workdir)
  if record is None:
    raise FileNotFoundError(f"{path(workdir)} not found: {workdir!r} holds no training run "
                            "started by this version; pass --config explicitly")
  config = ml_collections.ConfigDict(_tuples(record["config"]))
  config.lock()
  return config


def write(workdir: str, config, fingerprint: str, changes: Iterable[dict] = (),
          fresh: bool = False) -> None:
  """Write the run record atomically (process 0 only); `changes` are appended to its log.

  `fresh` starts a new record (a first start) instead of amending the saved one.
  """
  if jax.process_index() != 0:
    return
  record = (None if fresh else read(workdir)) or {
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "package_version": package_version(), "data_fingerprint": fingerprint,
      "process_count": jax.process_count(), "changes": []}
  record["config"] = plain(config)
  record["changes"] = record["changes"] + list(changes)
  tmp = path(workdir) + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
  os.replace(tmp, path(workdir))


def diff(saved: dict, config) -> list[tuple[str, Any, Any]]:
  """(field, saved value, current value) for every field that differs, in name order."""
  old, new = flatten(saved), flatten(plain(config))
  for field, value in ADDED_FIELDS.items():
    if field not in old and new.get(field) == plain(value):
      old[field] = plain(value)
  return [(k, old.get(k, "<absent>"), new.get(k, "<absent>"))
          for k in sorted(set(old) | set(new)) if old.get(k, "<absent>") != new.get(k, "<absent>")]


def check(record: dict, config, fingerprint: str | None, allow: Iterable[str] = (),
          step: int | None = None, where: str = RUN_FILE,
          only: tuple[str, ...] = ("",)) -> list[dict]:
  """Raise `ConfigDrift` for changes not allowed; return the accepted ones (to be logged).

  `fingerprint` None skips the data and process checks (reading a run, not resuming it);
  `allow` lists overridable fields the user accepts; `only` limits the check to fields with
  these prefixes.
  """
  allow = set(allow)
  unknown = sorted(f for f in allow if f not in OVERRIDABLE)
  if unknown:
    raise ValueError(f"--allow_config_changes: {unknown} cannot be overridden on resume; "
                     f"only {sorted(OVERRIDABLE)} can")
  changes, refused = [], []
  for field, old, new in diff(record["config"], config):
    if not field.startswith(only):
      continue
    kind = kind_of(field)
    if kind == "free" or (kind == "overridable" and field in allow):
      changes.append({"field": field, "saved": old, "now": new, "kind": kind, "step": step})
    else:
      refused.append((field, old, new, kind))
  problems = [f"  {f}: {old!r} (saved) -> {new!r} (now)" +
              (f" [overridable with --allow_config_changes={f}: {OVERRIDABLE[f]}]"
               if kind == "overridable" else "") for f, old, new, kind in refused]
  if fingerprint is not None and fingerprint != record["data_fingerprint"]:
    problems.append(f"  data: fingerprint {record['data_fingerprint']} (saved) -> {fingerprint}"
                    " (now): the input files or their shaping changed")
  if record.get("process_count", 1) != jax.process_count() and fingerprint is not None:
    problems.append(f"  processes: {record['process_count']} (saved) -> {jax.process_count()} "
                    "(now): each host reads its own data shard, so the data order changes")
  if problems:
    raise ConfigDrift(
        "this workdir's run was started with a different config (saved in "
        f"{where}); resuming would change what it computes:\n"
        + "\n".join(problems) + "\nTo proceed: use a new --workdir, or rerun with the saved "
        "values. Fields free to change on resume: eval.*, mesh.*, parallel.*, "
        + ", ".join(sorted(FREE_FIELDS)) + ".")
  return changes


def for_reading(workdir: str, given=None, overrides: dict | None = None):
  """The config to evaluate or export a run with.

  Without `given` (no --config on the command line): the run's saved config, with
  `overrides` ({field: value}, from --config.x=... flags) applied to free fields only. With
  `given`: that config, checked against the saved one on what reading depends on
  (`READ_FIELDS`: the model and the data; free fields may differ).
  """
  if given is None:
    config = load_config(workdir)
    with config.unlocked():
      for field, value in (overrides or {}).items():
        if kind_of(field) != "free":
          raise ConfigDrift(f"--config.{field}: only evaluation-time fields may be changed "
                            f"when reading a trained run; {field} is fixed by the run "
                            f"({path(workdir)})")
        node = config
        *parents, leaf = field.split(".")
        for name in parents:
          node = node[name]
        node[leaf] = value
    return config
  record = read(workdir)
  if record is None:
    logging.warning("%s has no saved config; using the --config given", workdir)
    return given
  if recipe.auto_fields(given):  # the recipe's AUTO fields: the values the run derived
    recipe.fill_from(given, load_config(workdir))
  check(record, given, None, where=path(workdir), only=READ_FIELDS)
  return given
