"""Quality on real data: our retriever vs a SASRec baseline vs published numbers (issue 4).

Does our retriever reach published full-ranking quality, at what training cost, and how much
does ScaNN lose? Protocol of shared/data/README.md: leave-one-out, held-out TEST split, every
user, the target ranked against all items, in both variants: `all items` (keys `test/...`,
HSTU's protocol) and `seen removed` (`test_seen_removed/...`, gSASRec's); a published number is
only compared with the variant it used. Runs per dataset:
  ml1m, beauty: `ours` (configs/ml1m.py, configs/beauty.py: the one recipe, configs/recipe.py)
  and `sasrec` (configs/sasrec_*.py);
  ml100k: `mpformer` (configs/ml100k.py: watch / like / love) and `single/<o>` (the same
  config with one objective and configs/kuaiformer.py's MPFormer switches).
Each run is `python -m launch.train`, then `python -m launch.evaluate --retrieval=exact` and
`--retrieval=scann`, in fresh subprocesses and a workdir under `--scratch`. Recorded: NDCG and
Recall@{10,50,200} of exact retrieval (per objective `test/<o>/hr@K` on ML-100K), ScaNN's
recall@200 against exact, queries/s of both (offline_eval.py), `train_seconds` (training-loop
wall time from metrics.jsonl, as in benchmarks/multi_objective.py), parameters, and the
validation curve (NDCG@10 against training minutes, benchmarks/quality_curves.py), plotted in
`quality_time.png` against gSASRec's 0.1726 on ML-1M and SASRec+SS's 0.0531 on Beauty.

  python benchmarks/quality.py --update_readme                  # full configs: hours on a CPU
  python benchmarks/quality.py --datasets ml100k --quick        # 30 steps a run, ~2 min in all
  python benchmarks/quality.py --datasets ml1m --only ours --steps 500
  python benchmarks/quality.py --datasets beauty --steps 500 --seeds 0 1 2   # seed spread
  python benchmarks/quality.py --tables_only --update_readme   # baselines + tables, no runs

Writes `<out>/quality_<dataset>.json` ({run: metrics, "published": {...}, "meta": {...}}) and
`<out>/quality.png` (tables and plot: benchmarks/quality_tables.py). A run already in the
JSON with the same resolved config (its file and the files it imports) and overrides is read
back, not retrained (`--overwrite` retrains, `--reevaluate` evaluates its checkpoint again);
an interrupted run resumes from its workdir.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from tqdm import tqdm

if not __package__:  # Run as `python benchmarks/quality.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # pylint: disable=wrong-import-position
from benchmarks import runs as trainer  # pylint: disable=wrong-import-position
from benchmarks import quality_baselines  # pylint: disable=wrong-import-position
from benchmarks import quality_curves  # pylint: disable=wrong-import-position
from benchmarks import quality_published  # pylint: disable=wrong-import-position
from benchmarks.quality_tables import (  # pylint: disable=wrong-import-position
    COMPLETE, EVAL_PROTOCOL, KS, README_END, README_START, VARIANTS, flat_keys, metric_key,
    plot, readme_section, table)
from mpformer_jax.data import screening  # pylint: disable=wrong-import-position
from mpformer_jax.data.registry import make_source  # pylint: disable=wrong-import-position
from mpformer_jax.data.stats import DatasetStats  # pylint: disable=wrong-import-position
from mpformer_jax.train import recipe, run_config  # pylint: disable=wrong-import-position

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("ml1m", "ml100k", "beauty")
ML100K_OBJECTIVES = ("watch", "like", "love")  # configs/ml100k.py's, in its order.
QUICK = {"train.num_steps": 30, "eval.num_users": 256}

PUBLISHED = quality_published.PUBLISHED


def single_switches() -> dict:
  """`model.<switch>: value` for each MPFormer switch configs/kuaiformer.py sets apart from
  configs/base.py (its mechanisms off, the user token kept)."""
  sys.path.insert(0, str(REPO))
  from configs import base, kuaiformer  # pylint: disable=import-outside-toplevel
  mp, kf = base.get_config().model, kuaiformer.get_config().model
  return {f"model.{k}": v for k, v in kf.items() if isinstance(v, bool) and v != mp[k]}


def run_specs(dataset: str) -> dict[str, tuple[str, dict]]:
  """run name -> (config file relative to the repo, overrides) for one dataset."""
  if dataset != "ml100k":
    return {"ours": (f"configs/{dataset}.py", {}),
            "sasrec": (f"configs/sasrec_{dataset}.py", {})}
  runs = {"mpformer": ("configs/ml100k.py", {})}
  for o in ML100K_OBJECTIVES:
    runs[f"single/{o}"] = ("configs/ml100k.py", {"model.objectives": (o,),
                                                 "loss.objective_weights": (1.0,),
                                                 **single_switches()})
  return runs


def size_overrides(args) -> dict:
  """Overrides every run shares: none for the full benchmark (the configs as they are)."""
  size = dict(QUICK) if args.quick else {}
  if args.steps:
    size["train.num_steps"] = args.steps
  if "train.num_steps" in size:  # Short runs: log often, no intermediate evaluation.
    steps = size["train.num_steps"]
    size.update({"train.log_every_steps": max(1, min(50, steps // 4)),
                 "train.eval_every_steps": steps, "train.checkpoint_every_steps": steps})
  if args.tfds_dir:
    size["data.tfds_dir"] = args.tfds_dir
  return size


def commands(config: str, overrides: dict, workdir: Path) -> tuple[list, dict]:
  """The launch.train argv and the launch.evaluate argv per retrieval of one run."""
  flags = [f"--config={REPO / config}", f"--workdir={workdir}"] + [  # str flags: unquoted.
      f"--config.{k}={v!r}" if isinstance(v, tuple) else f"--config.{k}={v}"
      for k, v in overrides.items()]
  evals = {r: [sys.executable, "-m", "launch.evaluate", *flags, f"--retrieval={r}"]
           for r in ("exact", "scann")}
  return [sys.executable, "-m", "launch.train", *flags], evals


def _evaluate(argv: list, workdir: Path, retrieval: str) -> dict:
  """Runs launch.evaluate (output in eval_<retrieval>.log); returns eval_<retrieval>.json."""
  path, log_path = workdir / f"eval_{retrieval}.json", workdir / f"eval_{retrieval}.log"
  if not path.exists():
    with open(log_path, "w") as log:
      rc = subprocess.run(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                          check=False).returncode
    if rc != 0:
      tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
      raise RuntimeError(f"{' '.join(argv[2:4])} failed (exit {rc}); log {log_path}:\n{tail}")
  return json.loads(path.read_text())


def entry(dataset: str, config: str, overrides: dict, workdir: Path, proc: dict) -> dict:
  """One run's JSON entry from its workdir: exact metrics, ScaNN recall, QPS, cost."""
  final = trainer.final_record(workdir)
  exact, scann = (json.loads((workdir / f"eval_{r}.json").read_text()) for r in ("exact", "scann"))
  found = {k.split("/")[1] for k in exact if k.startswith("test/") and k.endswith("/count")}
  objectives = [o for o in ML100K_OBJECTIVES if o in found] + sorted(found - {*ML100K_OBJECTIVES})
  flat = flat_keys(dataset)
  e = dict(config=config, overrides=overrides, objectives=objectives, step=exact["step"],
           num_users=exact["num_users"], num_items=exact["num_items"], params=final["params"],
           train_seconds=trainer.train_seconds(workdir), **proc,
           curve=quality_curves.validation_curve(workdir),
           examples_per_sec=final.get("train/examples_per_sec"),
           **{"qps/exact": exact["qps/exact"], "qps/scann": scann["qps/scann"],
              "scann/build_s": scann["scann/build_s"], "scann/params": scann["scann_params"]})
  for o in objectives:
    e[metric_key("test", o, "count", flat)] = exact[f"test/{o}/count"]  # targets labelled o
    for prefix in VARIANTS.values():
      for m in (f"{name}@{k}" for k in KS for name in ("hr", "ndcg")):
        e[metric_key(prefix, o, m, flat)] = exact[f"{prefix}/{o}/{m}"]
      e[metric_key(f"scann/{prefix}", o, f"hr@{KS[0]}", flat)] = scann[
          f"{prefix}/{o}/hr@{KS[0]}"]
      e[metric_key(prefix, o, f"scann_recall@{KS[-1]}", flat)] = scann[
          f"{prefix}/{o}/scann_recall@{KS[-1]}"]
    for m in (f"{name}@{k}" for k in KS for name in ("hr", "ndcg")):
      if f"{COMPLETE[1]}/{o}/{m}" in exact:
        e[metric_key(COMPLETE[1], o, m, flat)] = exact[f"{COMPLETE[1]}/{o}/{m}"]
  return e


def load_config(config: str, overrides: dict):
  """The ConfigDict of `config` ("configs/x.py[:arg]", relative to the repo) with overrides."""
  if str(REPO) not in sys.path:  # Config files import `configs.*`.
    sys.path.insert(0, str(REPO))
  path, _, arg = config.partition(":")
  spec = importlib.util.spec_from_file_location("_quality_config", REPO / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config(arg or None)
  cfg.update_from_flattened_dict(dict(overrides))
  return cfg


def config_digest(config: str, overrides: dict, training_only: bool = False) -> str:
  """Hash of the effective config: the config file (and all it imports) with the overrides.

  The recipe's AUTO fields are derived from the dataset's statistics first, as the run
  derives them, so a change of the recipe's parameters retrains only the runs whose derived
  settings it changes. Editing a config file, or the base it builds on, changes it: the
  run is retrained in a
  new workdir instead of resuming a checkpoint trained under the old settings. Moving a
  setting between a run's overrides and its config file does not: the trained model is the
  same. With `training_only` (the workdir's name) `eval.*` is left out: new evaluation
  settings, such as ScaNN's, re-evaluate the trained checkpoint instead of retraining it.
  """
  cfg = load_config(config, overrides)
  if recipe.auto_fields(cfg):  # the values the run derives, not the markers or the rules
    source = screening.screen_users(make_source(cfg.data), cfg.data.invalid_users)
    recipe.resolve(cfg, lambda: DatasetStats.of(source))
  resolved = json.loads(cfg.to_json_best_effort())
  resolved.pop("recipe", None)
  resolved.pop("export", None)    # serving artifacts: no effect on training or evaluation
  if resolved["data"]["name"] != "interactions":   # settings of the generic path only
    resolved["data"].pop("interactions", None)
  for field, default in run_config.ADDED_FIELDS.items():  # at these values: no change
    *sections, key = field.split(".")
    nodes = [resolved]
    for section in sections:
      nodes.append(nodes[-1].get(section, {}))
    if nodes[-1].get(key) == json.loads(json.dumps(default)):
      nodes[-1].pop(key)
      for parent, section, node in zip(nodes[-2::-1], sections[::-1], nodes[:0:-1]):
        if node or len(nodes) <= 2:  # an added section left empty goes too (not data/model)
          break
        parent.pop(section)
  if training_only:
    resolved.pop("eval", None)
  else:  # a change of protocol re-evaluates every run (its checkpoint, not retrained)
    resolved["eval_protocol"] = EVAL_PROTOCOL
  return hashlib.sha1(json.dumps(resolved, sort_keys=True, default=repr)
                      .encode()).hexdigest()[:10]


def _up_to_date(entry: dict, config: str, overrides: dict) -> bool:
  """Whether a JSON entry was measured with this config (as resolved now) and overrides."""
  return (entry.get("config"), entry.get("overrides"), entry.get("config_digest")) == (
      config, json.loads(json.dumps(overrides)), config_digest(config, overrides))


def run_one(dataset: str, name: str, config: str, overrides: dict, args, bar) -> dict:
  """Trains (or resumes) one run and evaluates it twice; returns its JSON entry."""
  digest = config_digest(config, overrides)
  train_digest = config_digest(config, overrides, training_only=True)
  workdir = Path(args.scratch) / dataset / f"{name.replace('/', '_')}_{train_digest}"
  if args.overwrite and workdir.exists():
    shutil.rmtree(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  train_argv, eval_argv = commands(config, overrides, workdir)
  meta = workdir / "bench.json"
  if trainer.final_record(workdir) is None:
    bar.set_postfix_str(f"{dataset}/{name}: training")
    for stale in workdir.glob("eval_*.json"):
      stale.unlink()
    meta.write_text(json.dumps(trainer.train(f"{dataset}/{name}", train_argv, workdir)))
  proc = json.loads(meta.read_text()) if meta.exists() else {}
  evaluated = workdir / "eval_digest"  # The full config the eval_*.json were made under.
  if args.reevaluate or not evaluated.exists() or evaluated.read_text() != digest:
    for stale in workdir.glob("eval_*.json"):
      stale.unlink()
    evaluated.write_text(digest)
  for retrieval, argv in eval_argv.items():
    bar.set_postfix_str(f"{dataset}/{name}: {retrieval} evaluation")
    _evaluate(argv, workdir, retrieval)
  keep = ("wall_seconds", "train_cpu_seconds", "peak_memory_bytes")
  return dict(entry(dataset, config, overrides, workdir, {k: proc.get(k) for k in keep}),
              config_digest=digest, eval_protocol=EVAL_PROTOCOL)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
  p.add_argument("--only", default="", help="comma-separated run names or prefixes "
                 "(ours, sasrec, mpformer, single, single/like; default: all)")
  p.add_argument("--steps", type=int, default=None, help="train.num_steps for every run")
  p.add_argument("--seeds", type=int, nargs="+", default=None, help="run each selected run "
                 "once per seed instead, as <run>/seed<k> (the seed spread; with --steps)")
  p.add_argument("--tfds_dir", default="", help="config data.tfds_dir (default: TFDS's own)")
  p.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "mpformer_bench",
                                                   "quality"), help="parent of the workdirs")
  p.add_argument("--overwrite", action="store_true", help="retrain runs found in the JSON")
  p.add_argument("--reevaluate", action="store_true",
                 help="evaluate the selected runs' checkpoints again (new metrics, no training)")
  p.add_argument("--tables_only", action="store_true", help="train and evaluate nothing: "
                 "the count baselines, then tables, plots (and README) from the JSONs")
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "README.md"))
  return common.parse_args(p, argv)


class _ThroughTqdm(io.TextIOBase):
  """A stdout printing through `tqdm.write`: trainer.train's progress keeps the bar whole."""

  def __init__(self, out):
    super().__init__()
    self._out = out

  def write(self, s):
    if s.strip():
      tqdm.write(s.rstrip("\n"), file=self._out)
    return len(s)


def main(argv: Optional[list[str]] = None) -> dict:
  """Runs (or reads back) the selected runs; writes JSON, PNG (+ README); returns the JSONs."""
  args = parse_args(argv)
  wanted = {n.strip() for n in args.only.split(",") if n.strip()}
  match = lambda n: not wanted or n in wanted or n.split("/")[0] in wanted
  plan = [(d, n, *spec) for d in args.datasets for n, spec in run_specs(d).items() if match(n)]
  if args.seeds:
    plan = [(d, f"{n}/seed{k}", c, {**o, "seed": k}) for d, n, c, o in plan for k in args.seeds]
  unknown = {w for w in wanted if not any(w in (n, n.split("/")[0]) for _, n, *_ in plan)}
  if unknown or not plan:
    raise SystemExit(f"--only: no run named {sorted(unknown)} in {args.datasets}")
  if args.tables_only:
    plan = []
  size = size_overrides(args)
  meta = dict(machine=trainer.machine_description(), size_overrides=size,
              date=datetime.datetime.now().isoformat(timespec="seconds"),
              variant="quick" if args.quick else "full")
  paths = {d: Path(args.out) / f"quality_{d}.json" for d in DATASETS}
  all_results = {d: json.loads(p.read_text()) if p.exists() else {} for d, p in paths.items()}
  with tqdm(plan, desc="quality", unit="run") as bar, \
       contextlib.redirect_stdout(_ThroughTqdm(sys.stdout)):
    for dataset, name, config, overrides in bar:
      overrides = {**overrides, **size}  # --quick / --steps win over a run's own steps
      if dataset == "ml100k" and args.quick:
        config += ":test"  # ML-100K's small model (configs/ml100k.py).
      old = all_results[dataset].get(name, {})
      new = None
      if args.overwrite or args.reevaluate or not _up_to_date(old, config, overrides):
        new = run_one(dataset, name, config, overrides, args, bar)
      # Re-read before writing: a process running another dataset's or run's entries of the
      # same file meanwhile keeps its results. Written after every run: progress survives.
      res = json.loads(paths[dataset].read_text()) if paths[dataset].exists() else {}
      res.update({name: new or old}, published=PUBLISHED[dataset], meta=meta)
      common.write_json(paths[dataset], res)
  for dataset in args.datasets:  # the count baselines: seconds, so always recomputed
    data = load_config(next(iter(run_specs(dataset).values()))[0], size).data
    res = json.loads(paths[dataset].read_text()) if paths[dataset].exists() else {}
    common.write_json(paths[dataset], dict(res, baselines=quality_baselines.compute(
        data, ML100K_OBJECTIVES if dataset == "ml100k" else None, VARIANTS,
        functools.partial(metric_key, flat=flat_keys(dataset)))))
  all_results = {d: json.loads(paths[d].read_text()) for d in DATASETS if paths[d].exists()}
  png, time_png = Path(args.out) / "quality.png", Path(args.out) / "quality_time.png"
  plot(all_results, png)
  quality_curves.plot(all_results, time_png)
  for dataset, results in all_results.items():
    print("\n".join(table(dataset, results)), end="\n\n")
  if args.update_readme:
    flags = (f" --datasets {' '.join(args.datasets)}" * (len(args.datasets) < len(DATASETS))
             + f" --only {args.only}" * bool(args.only) + " --quick" * args.quick
             + f" --steps {args.steps}" * bool(args.steps) + " --tables_only" * args.tables_only
             + " --seeds " * bool(args.seeds) + " ".join(map(str, args.seeds or ())))
    rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(args.readme)))
    common.update_readme_section(args.readme, README_START, README_END,
                                 readme_section(all_results, flags, rel(png), rel(time_png)))
  return all_results


if __name__ == "__main__":
  main()
