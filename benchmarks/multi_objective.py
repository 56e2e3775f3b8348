"""One MPFormer vs one KuaiFormer per objective, plus MPFormer ablations, over seeds (issues 3, 19).

Does one objective-conditioned retriever replace a model per objective, and which MPFormer
mechanism earns its keep (DESIGN 2.5-2.7, 3)? Same backbone size, data and step budget for:
`mpformer` (the dataset's MPFormer config with every switch on, as in the paper, whatever
configs/base.py's defaults); `single/<o>` (KuaiFormer with `model.objectives=(o,)`, and the
user token where MPFormer has one); `ablation/<switch>` (MPFormer, one switch off;
`user_token` also turns off `user_gate`, which gates on the user token);
`ablation/all_structure` (every switch but the target-weight head off: the objectives share
one set of query tokens); `ablation/off_by_default` (the config as it comes, with the switches
configs/base.py leaves off); `ablation/objective_weights` (equal loss weights); on retail
also `sasrec/buy` (the newest item's output as the user vector, full softmax over the
catalogue, trained on buy targets).

Datasets (`--dataset`): `synthetic` (configs/base.py, the built-in platform), `story` (the
same with `data.objective_story=True`: one cause per objective, and a stated expectation of
which ablation lowers which objective), `ml100k` (configs/ml100k.py: MovieLens-100K with
ratings, watch / like / love) and `retail` (configs/retail.py, the Retailrocket log:
view / cart / fav / buy, 91% of purchases seen before, so ranked against all items).

Every run trains `--seeds` times (seeds 0, 1, ...; the data stays the same, the init and the
batch order change), each `python -m launch.train` in a fresh subprocess and workdir under
`--scratch`. A run's figures are the mean over seeds with their standard deviation; an
ablation's effect on a metric is MPFormer's mean minus the ablation's, called a gain (or a
loss) only when it exceeds two standard errors of that difference (Welch).
Quality is read on the held-out TEST split (`test/<o>/hr@K`, `ndcg@10`;
`test/merged/mean_exposure` of the N=200 merged list, personalised vs uniform quotas); on
retail, whose test events are all purchases, view / cart / fav and the merged list are read
on the validation split (`<o>/split`, `merged/split` say which). Cost:
`train_seconds` = training-loop wall time from the loop's log windows; `train_cpu_seconds` =
the child's CPU time over the loop; `peak_memory_bytes` = the child's peak RSS (`runs.train`).

  python benchmarks/multi_objective.py --update_readme                 # synthetic, 3 seeds
  python benchmarks/multi_objective.py --dataset retail --update_readme
  python benchmarks/multi_objective.py --quick --seeds 1 --only mpformer,single/click

A workdir whose metrics.jsonl holds a final record from the same command is read back, not
retrained (an interrupted benchmark resumes); so is a seed whose entry in the results JSON
under `--out` records the same command (`command`: the argv without interpreter and workdir,
paths relative to the checkout), which lets seeds be added to a table after the scratch
workdirs are gone; `--read_from` adds the results JSONs of other folders (runs split over
processes, each pinned to a core with its own `--out`), and `--no_train` builds the table from
what is recorded, failing where it would have to train. `--overwrite` retrains.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

if not __package__:  # Run as `python benchmarks/multi_objective.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import common, multi_objective_report
from benchmarks.multi_objective_report import COST_RATIO, HR_RATIO, K, MERGED_N
from benchmarks.runs import (PROC_KEYS, REPO, final_record, machine_description, train,
                             train_seconds)
# pylint: enable=g-import-not-at-top,wrong-import-position

KS, SPLIT = (10, 50), "test"
README_START, README_END = "<!-- multi_objective:start -->", "<!-- multi_objective:end -->"
README_TITLE = "## Multi-objective: one MPFormer vs one model per objective"
SWITCHES = ("attention_bias", "recency_bias", "user_gate", "user_token", "objective_embedding",
            "target_weights")


class Dataset(NamedTuple):
  """The runs of one dataset: config files, objectives, the switches its data supports."""
  name: str
  mpformer: str                     # config file[:variant] of MPFormer
  single: str                       # config file[:variant] of KuaiFormer (one objective)
  objectives: tuple[str, ...]
  switches: tuple[str, ...]         # ablations (user_token / user_gate need user features)
  size: dict                        # overrides shared by every run
  quick_size: dict
  # (name, config, overrides as pairs, objectives it is scored on)
  extra: tuple[tuple[str, str, tuple, tuple], ...] = ()
  # ablation -> what the dataset's generative story predicts switching it off does
  expected: tuple[tuple[str, str], ...] = ()
  title: str = ""                   # README section title (default: the one-vs-many title)
  equal_weights: bool = False       # its MPFormer config already weighs objectives equally


# The default config takes 1-2 s/step on 2 CPU cores with max_len 256 (and ~2 min per
# evaluation), so histories (and the compression schedule with them) and the step budget
# shrink to fit the runs of three seeds into about two hours.
SYNTHETIC = Dataset(
    name="synthetic", mpformer="base.py", single="kuaiformer.py",
    objectives=("click", "long_view", "like", "follow"), switches=SWITCHES,
    size={"data.max_len": 64, "model.compression.schedule": ((8, 4), (4, 4)),
          "train.num_steps": 400, "eval.num_users": 5000},
    quick_size={"train.num_steps": 40})
# The same platform with one cause per objective (data/objective_story.py): its docstring
# says which ablation should lower which objective.
STORY = SYNTHETIC._replace(
    name="story", size={**SYNTHETIC.size, "data.objective_story": True},
    title="## MPFormer's mechanisms where a story says they matter (objective-story platform)",
    expected=(("attention_bias", "gain on like; none elsewhere"),
              ("recency_bias", "gain on click at most; none on follow"),
              ("user_gate", "gain on long_view at most"),
              ("user_token", "gain on long_view; none elsewhere"),
              ("objective_embedding", "gains on long_view, like, follow at most"),
              ("target_weights", "gain on merged exposure")))
# MovieLens-100K with ratings (configs/ml100k.py: watch / like >= 4 / love = 5; user table,
# so every switch applies). A third of its 1,500-step recipe (~5 min a run on one core) fits
# the 33 runs of three seeds into about 3 core-hours; the merged list is 200 items, as
# elsewhere, not the config's 50.
ML100K = Dataset(
    name="ml100k", mpformer="ml100k.py", single="ml100k.py:watch",
    objectives=("watch", "like", "love"), switches=SWITCHES,
    size={"train.num_steps": 500, "eval.merged_n": MERGED_N},
    quick_size={"train.num_steps": 20}, equal_weights=True,
    title="## MPFormer's mechanisms on MovieLens-100K (watch / like / love)")
# Retailrocket (configs/retail.py: max_len 50, no compression, no user table, so no user
# token or gate). Evaluation takes the first 7,000 of the ~14,000 users with a held-out
# target (all of them took twice the training time on one core).
RETAIL = Dataset(
    name="retail", mpformer="retail.py", single="retail.py:buy",
    objectives=("view", "cart", "fav", "buy"),
    switches=("attention_bias", "recency_bias", "objective_embedding", "target_weights"),
    size={"train.num_steps": 1_500, "eval.num_users": 7_000},
    quick_size={"train.num_steps": 20, "eval.num_users": 500, "train.batch_size": 32},
    equal_weights=True,
    extra=(("sasrec/buy", "retail.py:buy", (
        ("model.readout", "last"), ("model.num_queries", 1), ("loss.kind", "softmax"),
        ("loss.negatives", "catalogue")), ("buy",)),
           # One KuaiFormer trained on every event (an "event" objective fed by all four
           # behaviours), its one set of vectors scored against each behaviour's targets.
           ("all_events", "retail.py:buy", (
               ("data.interactions.objectives", (("view", ("2",)), ("cart", ("1",)),
                                                 ("fav", ("3",)), ("buy", ("0",)),
                                                 ("event", ("0", "1", "2", "3")))),
               ("model.objectives", ("event",)),
               ("eval.objectives", ("view", "cart", "fav", "buy"))),
            ("view", "cart", "fav", "buy"))))
DATASETS = {d.name: d for d in (SYNTHETIC, STORY, ML100K, RETAIL)}
OBJECTIVES = SYNTHETIC.objectives
# configs/base.py weighs each objective's loss by its share of labelled targets (click 67%,
# long_view 39%, like 8%, follow 2.3% of held-out events, relative to click), so that every
# labelled row weighs the same. `ablation/objective_weights` trains with equal weights to
# show what that choice is worth: the few-row, high-variance like/follow losses then
# dominate the shared backbone (README). Datasets whose configs weigh objectives equally
# (ML-100K, retail) have no such ablation.


def run_specs(dataset: str = "synthetic") -> dict[str, tuple[str, dict]]:
  """name -> (config file, overrides) for every run of the benchmark on `dataset`."""
  d = DATASETS[dataset]
  # MPFormer as the paper has it: every switch the dataset supports on, whatever the config's
  # defaults (configs/base.py keeps on only what earned a gain here).
  every = {f"model.{s}": True for s in d.switches}
  runs = {"mpformer": (d.mpformer, every)}
  # KuaiFormer per objective, with the user token wherever MPFormer has one (same inputs).
  token = {"model.user_token": True} if "user_token" in d.switches else {}
  for o in d.objectives:
    runs[f"single/{o}"] = (d.single, {"model.objectives": (o,),
                                      "loss.objective_weights": (1.0,), **token})
  for name, config, overrides, _ in d.extra:
    runs[name] = (config, dict(overrides))
  for s in d.switches:
    off = {**every, f"model.{s}": False}
    if s == "user_token":
      off["model.user_gate"] = False  # The gate reads the user token.
    runs[f"ablation/{s}"] = (d.mpformer, off)
  # Every switch but the target-weight head off: one shared set of query tokens, trained on
  # the weighted sum of the objectives' losses (what remains without objective conditioning).
  runs["ablation/all_structure"] = (d.mpformer, {**every, **{
      f"model.{s}": False for s in d.switches if s != "target_weights"}})
  # The config as it comes: the switches configs/base.py turns off by default, off (spelt
  # out, so a run recorded under other defaults is not mistaken for this one).
  runs["ablation/off_by_default"] = (d.mpformer, default_switches(d))
  if not d.equal_weights:
    runs["ablation/objective_weights"] = (d.mpformer, {
        **every, "loss.objective_weights": (1.0,) * len(d.objectives)})
  return runs


def default_switches(d: Dataset) -> dict:
  """`model.<switch>: value` of each of the dataset's switches in its MPFormer config."""
  path, _, variant = d.mpformer.partition(":")
  module = importlib.import_module(f"configs.{Path(path).stem}")
  model = module.get_config(variant or None).model
  return {f"model.{s}": bool(model[s]) for s in d.switches}


def objectives_of(dataset: Dataset, name: str) -> tuple[str, ...]:
  """The objectives a run is scored on."""
  extra = {n: objectives for n, _, _, objectives in dataset.extra}
  if name in extra:
    return extra[name]
  return (name.split("/", 1)[1],) if name.startswith("single/") else dataset.objectives


def size_overrides(args) -> dict:
  """Overrides every run shares: benchmark size, step budget, no intermediate evaluation."""
  d = DATASETS[args.dataset]
  size = dict(d.size, **(d.quick_size if args.quick else {}))
  if args.steps:
    size["train.num_steps"] = args.steps
  steps = size["train.num_steps"]
  size.update({"train.eval_every_steps": steps, "train.checkpoint_every_steps": max(1, steps // 2),
               "train.log_every_steps": max(1, min(50, steps // 4))})
  return size


def command(config_file: str, overrides: dict, workdir: Path, quick: bool) -> list[str]:
  """The `launch.train` command line of one run."""
  path, _, variant = config_file.partition(":")
  variant = variant or ("tiny" if quick and path in ("base.py", "kuaiformer.py") else "")
  argv = [sys.executable, "-m", "launch.train",
          f"--config={REPO / 'configs' / path}{':' + variant if variant else ''}",
          f"--workdir={workdir}"]
  argv += [f"--config.{k}={v!r}" if isinstance(v, tuple) else f"--config.{k}={v}"
           for k, v in overrides.items()]
  return argv


def entry(objectives, final: dict, proc: dict, workdir: Path) -> dict:
  """The JSON entry of one run and seed (test-split metrics, cost)."""
  out = {}
  for o in objectives:
    # Retail's test event is every user's purchase (its log appends it), so view / cart /
    # fav have held-out events on the validation split only: read there, and say so.
    split = SPLIT if final.get(f"{SPLIT}/{o}/count") else "eval"
    out.update({f"{o}/hr@{k}": final.get(f"{split}/{o}/hr@{k}") for k in KS})
    out[f"{o}/ndcg@10"] = final.get(f"{split}/{o}/ndcg@10")
    out[f"{o}/split"] = "test" if split == SPLIT else "valid"
    out[f"valid/{o}/hr@{K}"] = final.get(f"eval/{o}/hr@{K}")
    out[f"{o}/held_out_events"] = final.get(f"{split}/popularity/{o}/count")
  keys = ["mean_exposure"] + [f"{o}/hr@{MERGED_N}" for o in objectives if len(objectives) > 1]
  # The merged list is scored where every objective has held-out events (retail: valid).
  merged_split = SPLIT if all(final.get(f"{SPLIT}/{o}/count") for o in objectives) else "eval"
  for kind in ("merged", "merged_uniform"):  # None for single-objective runs: no merged list.
    out.update({f"{kind}/{k}": final.get(f"{merged_split}/{kind}/{k}") for k in keys})
  out["merged/split"] = "test" if merged_split == SPLIT else "valid"
  out.update(params=final.get("params"), train_seconds=train_seconds(workdir),
             examples_per_sec=final.get("train/examples_per_sec"), **proc)
  return out


def aggregate(per_seed: dict[int, dict]) -> dict:
  """Mean over seeds of every numeric field (the max of params and peak memory), with `std`
  (sample, ddof 1), the seeds and each seed's entry."""
  entries = list(per_seed.values())
  out, std = {}, {}
  for key in entries[0]:
    values = [e.get(key) for e in entries]
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
      out[key] = values[0] if all(v == values[0] for v in values) else None
      continue
    if key in ("params", "peak_memory_bytes"):     # the same for every seed / the worst
      out[key] = max(values)
    else:
      out[key] = float(np.mean(values))
    std[key] = float(np.std(values, ddof=1)) if len(values) > 1 else None
  return dict(out, std=std, seeds=sorted(per_seed), per_seed=per_seed)


def effect(mp: dict, ab: dict, key: str) -> Optional[dict]:
  """MPFormer minus ablation on `key`: delta, its standard error, and the 2-SE verdict."""
  a, b = mp.get(key), ab.get(key)
  sa, sb = mp["std"].get(key), ab["std"].get(key)
  if a is None or b is None or sa is None or sb is None:
    return None
  se = math.sqrt(sa**2 / len(mp["seeds"]) + sb**2 / len(ab["seeds"]))
  verdict = "gain" if a - b > 2 * se else ("loss" if b - a > 2 * se else "no difference")
  return dict(delta=a - b, se=se, verdict=verdict)


def command_key(argv: list[str]) -> list[str]:
  """What identifies a run's command: its argv without the interpreter and the workdir, with
  paths relative to the checkout (so a results JSON made in another clone still matches)."""
  return [a.replace(f"{REPO}{os.sep}", "") for a in argv[1:] if not a.startswith("--workdir=")]


def recorded_entries(args) -> dict[str, dict]:
  """name -> {seed: entry} from the results JSON under `--out` and those under `--read_from`
  (the first to hold a seed wins)."""
  recorded: dict[str, dict] = {}
  dirs = [args.out] + [d for d in args.read_from.split(",") if d]
  for path in (Path(d) / f"{results_stem(DATASETS[args.dataset])}.json" for d in dirs):
    if not path.exists():
      continue
    for name, e in json.loads(path.read_text()).items():
      if isinstance(e, dict) and "per_seed" in e:
        recorded[name] = {**e["per_seed"], **recorded.get(name, {})}
  return recorded


def results_stem(d: Dataset) -> str:
  return "multi_objective" + ("" if d.name == "synthetic" else f"_{d.name}")


def run_all(args, names: list[str], cpu: str) -> dict[str, dict]:
  """Trains (or reads back) every named run for every seed; returns name -> aggregate."""
  d, size = DATASETS[args.dataset], size_overrides(args)
  tag = (f"{d.name}_{'quick' if args.quick else 'default'}_steps{size['train.num_steps']}")
  key = command_key
  recorded = {} if args.overwrite else recorded_entries(args)
  results, spent, todo = {}, [], len(names) * args.seeds
  for i, name in enumerate(names):
    config_file, overrides = run_specs(args.dataset)[name]
    per_seed = {}
    for seed in range(args.seeds):
      done = i * args.seeds + seed
      workdir = Path(args.scratch) / tag / f"{name.replace('/', '_')}_seed{seed}"
      argv = command(config_file, {**size, **overrides, "seed": seed}, workdir, args.quick)
      meta_path = workdir / "bench.json"
      old = recorded.get(name, {}).get(str(seed))
      if final_record(workdir) is None and old and old.get("command") == key(argv):
        per_seed[seed] = old  # Recorded by the same command in the results JSON.
        continue
      same = meta_path.exists() and key(json.loads(meta_path.read_text())["argv"]) == key(argv)
      if not same or args.overwrite or final_record(workdir) is None:
        if args.no_train:
          raise SystemExit(f"--no_train: {name} seed {seed} is not recorded by this command "
                           f"under --out, --read_from or {workdir}")
        if workdir.exists() and (args.overwrite or not same):
          shutil.rmtree(workdir)  # Stale (other command) or forced: train from scratch.
        workdir.mkdir(parents=True, exist_ok=True)
        eta = (f", ETA {sum(spent) / len(spent) * (todo - done) / 60:.0f} min for the "
               f"{todo - done} left" if spent else "")
        print(f"[{done + 1}/{todo}] training {name} seed {seed} in {workdir}{eta}", flush=True)
        meta_path.write_text(json.dumps(dict(argv=argv), indent=2))  # Same command: resume.
        proc = train(f"{name}#{seed}", argv, workdir)
        meta_path.write_text(json.dumps(dict(argv=argv, **proc), indent=2))
        spent.append(proc["wall_seconds"])
      final, meta = final_record(workdir), json.loads(meta_path.read_text())
      if final is None:
        raise RuntimeError(f"run {name} wrote no final record to {workdir}/metrics.jsonl")
      per_seed[seed] = dict(entry(objectives_of(d, name), final,
                                  {k: meta.get(k) for k in PROC_KEYS}, workdir),
                            command=key(argv), cpu=cpu)
    e = results[name] = aggregate(per_seed)
    print(f"    {name} ({len(per_seed)} seeds): " + " ".join(
        f"{o}={_fmt(e.get(f'{o}/hr@{K}'))}±{_fmt(e['std'].get(f'{o}/hr@{K}'), '.3f')}"
        for o in d.objectives if f"{o}/hr@{K}" in e)
          + f" | train {_fmt(e['train_seconds'], '.0f')}s | params {_fmt(e['params'], ',d')}",
          flush=True)
  return results


def _ratio(a, b):
  return None if a is None or not b else a / b


def summarize(results: dict, machine: dict, size: dict, args) -> dict:
  """Ratios against the single-objective models, ablation effects, the issue's criteria."""
  d = DATASETS[args.dataset]
  mp = results.get("mpformer", {})
  singles = {n.split("/", 1)[1]: e for n, e in results.items() if n.startswith("single/")}
  hr = {o: _ratio(mp.get(f"{o}/hr@{K}"), s.get(f"{o}/hr@{K}")) for o, s in singles.items()}
  total = lambda key: (None if not singles or any(s.get(key) is None for s in singles.values())
                       else sum(s[key] for s in singles.values()))
  out = dict(
      dataset=d.name, seeds=args.seeds,
      min_ratio_hr50_vs_single=min(hr.values()) if hr and None not in hr.values() else None,
      ratio_hr50_vs_single=hr,
      time_ratio_vs_single_total=_ratio(mp.get("train_seconds"), total("train_seconds")),
      cpu_time_ratio_vs_single_total=_ratio(mp.get("train_cpu_seconds"),
                                            total("train_cpu_seconds")),
      wall_ratio_vs_single_total=_ratio(mp.get("wall_seconds"), total("wall_seconds")),
      param_ratio_vs_single_total=_ratio(mp.get("params"), total("params")),
      singles_compared=sorted(singles))
  metrics = [f"{o}/hr@{K}" for o in d.objectives] + ["merged/mean_exposure"]
  out["ablation_effects"] = {
      n: {m: effect(mp, e, m) for m in metrics} for n, e in results.items()
      if n.startswith("ablation/") and mp}
  pers, unif = mp.get("merged/mean_exposure"), mp.get("merged_uniform/mean_exposure")
  le = lambda v, limit: None if v is None else v <= limit
  out["criteria"] = dict(
      hr50_at_least_095x_single=None if out["min_ratio_hr50_vs_single"] is None
      else out["min_ratio_hr50_vs_single"] >= HR_RATIO,
      time_at_most_035x_singles=le(out["time_ratio_vs_single_total"], COST_RATIO),
      params_at_most_035x_singles=le(out["param_ratio_vs_single_total"], COST_RATIO),
      personalized_quotas_beat_uniform=None if pers is None or unif is None else pers > unif,
      all_singles_run=len(singles) == len(d.objectives))
  out.update(machine=machine, date=datetime.datetime.now().isoformat(timespec="seconds"),
             split=SPLIT, variant="quick" if args.quick else "default",
             size_overrides={k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
             train_seconds_method="sum of the loop's log windows (compile in; eval, "
                                  "checkpoints, data build out)",
             peak_memory_method="ru_maxrss of the training subprocess (os.wait4)")
  return out


def _fmt(v, spec=".4f", none="-"):
  return none if v is None else format(v, spec)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--dataset", default="synthetic", choices=sorted(DATASETS))
  p.add_argument("--seeds", type=int, default=3, help="seeds per run (0, 1, ...)")
  p.add_argument("--steps", type=int, default=None, help="train.num_steps for every run")
  p.add_argument("--only", default="", help="comma-separated run names (default: all)")
  p.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "mpformer_bench",
                                                   "multi_objective"),
                 help="parent of the per-run workdirs")
  p.add_argument("--overwrite", action="store_true", help="retrain finished runs")
  p.add_argument("--read_from", default="",
                 help="comma-separated folders whose results JSONs also hold recorded seeds "
                      "(e.g. the --out of runs made in parallel)")
  p.add_argument("--no_train", action="store_true",
                 help="only report recorded seeds: fail where one would have to train")
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "README.md"))
  args = common.parse_args(p, argv)
  if args.seeds < 1:
    p.error("--seeds must be >= 1")
  return args


def main(argv: Optional[list[str]] = None) -> dict:
  """Trains or reads back the runs, writes JSON + PNG (+ README); returns the JSON dict."""
  args = parse_args(argv)
  specs = run_specs(args.dataset)
  wanted = {n.strip() for n in args.only.split(",") if n.strip()}
  if wanted - set(specs):
    raise SystemExit(f"--only: unknown runs {sorted(wanted - set(specs))}; choose from "
                     f"{list(specs)}")
  names = [n for n in specs if not wanted or n in wanted]
  machine = machine_description()
  results = run_all(args, names, machine["cpu"])
  d = DATASETS[args.dataset]
  out = dict(results)
  mp = results.get("mpformer", {})
  out["quotas"] = {kind: {f"merged/{key}": mp.get(f"{src}/{key}")
                          for key in ["mean_exposure"] + [f"{o}/hr@{MERGED_N}"
                                                          for o in d.objectives]}
                   for kind, src in (("personalized", "merged"), ("uniform", "merged_uniform"))}
  out["summary"] = summarize(results, machine, size_overrides(args), args)
  os.makedirs(args.out, exist_ok=True)
  stem = results_stem(d)
  common.write_json(Path(args.out) / f"{stem}.json", out)
  png_path = Path(args.out) / f"{stem}.png"
  multi_objective_report.plot(results, png_path, d.objectives)
  print("criteria: " + ", ".join(f"{k}={v}" for k, v in out["summary"]["criteria"].items()))
  if args.update_readme:
    flags = (f" --dataset {d.name}" * (d.name != "synthetic") + " --quick" * args.quick
             + (f" --steps {args.steps}" if args.steps else "") + f" --seeds {args.seeds}"
             + (f" --only {args.only}" if args.only else ""))
    png_rel = os.path.relpath(png_path, os.path.dirname(os.path.abspath(args.readme)))
    start, end = (README_START, README_END) if d.name == "synthetic" else (
        README_START.replace(":start", f"_{d.name}:start"),
        README_END.replace(":end", f"_{d.name}:end"))
    common.update_readme_section(args.readme, start, end, multi_objective_report.readme_section(
        out, d, flags, png_rel, start, end))
  return json.loads((Path(args.out) / f"{stem}.json").read_text())


if __name__ == "__main__":
  main()
