"""One MPFormer vs one KuaiFormer per objective, plus MPFormer ablations (issue 3, item 8).

Does one objective-conditioned retriever replace a model per objective, and which MPFormer
mechanism earns its keep (DESIGN 2.5-2.7, 3)? Same backbone size, data and step budget for:
`mpformer` (configs/base.py: every switch on, lambda_o = share of labelled rows); `single/<o>`
(configs/kuaiformer.py with `model.objectives=(o,)`); `ablation/<switch>` (MPFormer, one switch
off; `user_token` also turns off `user_gate`, which gates on the user token); and
`ablation/objective_weights` (equal loss weights).

Each run is `python -m launch.train` in a fresh subprocess and workdir under `--scratch`.
Quality is read on the held-out TEST split (`test/<o>/hr@50`; `test/merged/mean_exposure` of
the N=200 merged list, personalised vs uniform quotas). Cost: `train_seconds` = training-loop
wall time summed from the loop's log windows in metrics.jsonl (step compilation in; start,
data build, checkpoints and evaluation out); `train_cpu_seconds` = the child's CPU time over
the loop (from /proc, robust to other jobs on the cores); `peak_memory_bytes` = the child's
peak RSS (ru_maxrss from os.wait4; on CPU the whole footprint, evaluation included).

  python benchmarks/multi_objective.py --update_readme    # 12 runs, ~35 min of CPU time
  python benchmarks/multi_objective.py --quick            # tiny config, a few minutes
  python benchmarks/multi_objective.py --quick --only mpformer,single/click

A workdir whose metrics.jsonl holds a final record from the same command is read back, not
retrained (an interrupted benchmark resumes); `--overwrite` retrains.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

if not __package__:  # Run as `python benchmarks/multi_objective.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from mpformer_jax.train.metric_writer import read_metrics  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = Path(__file__).resolve().parents[1]
OBJECTIVES = ("click", "long_view", "like", "follow")
SWITCHES = ("attention_bias", "recency_bias", "user_gate", "user_token", "objective_embedding",
            "target_weights")
K, MERGED_N, SPLIT = 50, 200, "test"
HR_RATIO, COST_RATIO = 0.95, 0.35  # The issue's done-when thresholds.
README_START, README_END = "<!-- multi_objective:start -->", "<!-- multi_objective:end -->"
README_TITLE = "## Multi-objective: one MPFormer vs one model per objective"


def _base_config():
  """configs/base.py's default config (its loss weights go into the JSON and README)."""
  sys.path.insert(0, str(REPO))
  from configs import base  # pylint: disable=g-import-not-at-top
  return base.get_config()

PROC_KEYS = ("wall_seconds", "cpu_seconds", "train_cpu_seconds", "peak_memory_bytes",
             "load_before", "load_after")

# Benchmark size, shared by every run. The default config takes 1-2 s/step on 2 CPU cores
# with max_len 256 (and ~2 min per evaluation), so histories (and the compression schedule
# with them) and the step budget shrink to fit 12 runs into ~45 minutes.
DEFAULT_SIZE = {"data.max_len": 64, "model.compression.schedule": ((8, 4), (4, 4)),
                "train.num_steps": 400, "eval.num_users": 5000}
QUICK_SIZE = {"train.num_steps": 40}
# configs/base.py weighs each objective's loss by its share of labelled targets (click 67%,
# long_view 39%, like 8%, follow 2.3% of held-out events, relative to click), so that every
# labelled row weighs the same. `ablation/objective_weights` trains with equal weights to
# show what that choice is worth: the few-row, high-variance like/follow losses then
# dominate the shared backbone (README).
EQUAL_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def run_specs(objectives=OBJECTIVES) -> dict[str, tuple[str, dict]]:
  """name -> (config file, overrides) for every run of the benchmark."""
  runs = {"mpformer": ("base.py", {})}
  for o in objectives:
    runs[f"single/{o}"] = ("kuaiformer.py", {"model.objectives": (o,),
                                             "loss.objective_weights": (1.0,)})
  for s in SWITCHES:
    off = {f"model.{s}": False}
    if s == "user_token":
      off["model.user_gate"] = False  # The gate reads the user token.
    runs[f"ablation/{s}"] = ("base.py", off)
  runs["ablation/objective_weights"] = ("base.py", {"loss.objective_weights": EQUAL_WEIGHTS})
  return runs


def size_overrides(args) -> dict:
  """Overrides every run shares: benchmark size, step budget, no intermediate evaluation."""
  size = dict(QUICK_SIZE if args.quick else DEFAULT_SIZE)
  if args.steps:
    size["train.num_steps"] = args.steps
  steps = size["train.num_steps"]
  size.update({"train.eval_every_steps": steps, "train.checkpoint_every_steps": max(1, steps // 2),
               "train.log_every_steps": max(1, min(50, steps // 4))})
  return size


def command(config_file: str, overrides: dict, workdir: Path, quick: bool) -> list[str]:
  """The `launch.train` command line of one run."""
  variant = ":tiny" if quick else ""
  argv = [sys.executable, "-m", "launch.train",
          f"--config={REPO / 'configs' / config_file}{variant}", f"--workdir={workdir}"]
  argv += [f"--config.{k}={v!r}" if isinstance(v, (tuple, str)) else f"--config.{k}={v}"
           for k, v in overrides.items()]
  return argv


def _records(workdir: Path) -> list[dict]:
  return read_metrics(str(workdir))


def final_record(workdir: Path) -> Optional[dict]:
  """The last final record of `<workdir>/metrics.jsonl`, or None."""
  return next((r for r in reversed(_records(workdir)) if r.get("final")), None)


def train_seconds(workdir: Path) -> Optional[float]:
  """Training-loop seconds: sum of the log windows (steps / steps_per_sec) in metrics.jsonl."""
  rate = {r["step"]: r["train/steps_per_sec"] for r in _records(workdir)  # Last one wins
          if r.get("train/steps_per_sec") and not r.get("final")}     # (resumed runs).
  steps = sorted(rate)
  return sum((b - a) / rate[b] for a, b in zip([0] + steps, steps)) if steps else None


def _cpu_seconds(pid: int) -> Optional[float]:
  """utime + stime of a live process (all its threads), from /proc."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
  except OSError:
    return None
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train(name: str, argv: list[str], workdir: Path) -> dict:
  """Runs one training subprocess, streaming its progress; returns process measurements.

  The child's CPU time is sampled when the loop logs its start and its last step, which
  gives `train_cpu_seconds`: the loop's CPU time, less sensitive than wall time to other
  jobs sharing the cores.
  """
  log_path = workdir / "train.log"
  load_before, t0, marks = os.getloadavg()[0], time.perf_counter(), {}
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  with open(log_path, "a") as log:
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
      log.write(line)
      if "loop.py" not in line:
        continue
      if "Starting a new run" in line or "Resuming from" in line:
        marks.setdefault("start", _cpu_seconds(proc.pid))
      step = re.search(r" step (\d+)/(\d+) ", line)
      if step and step.group(1) == step.group(2):
        marks["end"] = _cpu_seconds(proc.pid)
      if step or "final at" in line or "Error" in line:
        print(f"  [{name}] {line.split('] ', 1)[-1].strip()[:150]}", flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode != 0:
    tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
    raise RuntimeError(f"run {name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
  start, end = marks.get("start"), marks.get("end")
  return dict(wall_seconds=time.perf_counter() - t0,
              cpu_seconds=usage.ru_utime + usage.ru_stime,
              train_cpu_seconds=None if start is None or end is None else end - start,
              peak_memory_bytes=int(usage.ru_maxrss) * 1024,  # KiB on Linux.
              load_before=load_before, load_after=os.getloadavg()[0])


def entry(name: str, final: dict, proc: dict, workdir: Path) -> dict:
  """The JSON entry of one run (test-split metrics, cost)."""
  objectives = OBJECTIVES if not name.startswith("single/") else (name.split("/", 1)[1],)
  out = {f"{o}/hr@{K}": final.get(f"{SPLIT}/{o}/hr@{K}") for o in objectives}
  out.update({f"valid/{o}/hr@{K}": final.get(f"eval/{o}/hr@{K}") for o in objectives})
  out.update({f"{o}/test_events": final.get(f"{SPLIT}/popularity/{o}/count") for o in objectives})
  keys = ["mean_exposure"] + [f"{o}/hr@{MERGED_N}" for o in objectives if len(objectives) > 1]
  for kind in ("merged", "merged_uniform"):  # None for single-objective runs: no merged list.
    out.update({f"{kind}/{k}": final.get(f"{SPLIT}/{kind}/{k}") for k in keys})
  out.update(params=final.get("params"), train_seconds=train_seconds(workdir),
             examples_per_sec=final.get("train/examples_per_sec"), **proc)
  return out


def run_all(args, names: list[str]) -> dict[str, dict]:
  """Trains (or reads back) every named run; returns name -> entry."""
  size = size_overrides(args)
  tag = f"{'tiny' if args.quick else 'default'}_steps{size['train.num_steps']}"
  key = lambda cmd: [a for a in cmd[1:] if not a.startswith("--workdir=")]  # Not python.
  results, spent = {}, []
  for i, name in enumerate(names):
    config_file, overrides = run_specs()[name]
    workdir = Path(args.scratch) / tag / name.replace("/", "_")
    argv = command(config_file, {**size, **overrides}, workdir, args.quick)
    meta_path = workdir / "bench.json"
    same = meta_path.exists() and key(json.loads(meta_path.read_text())["argv"]) == key(argv)
    if not same or args.overwrite or final_record(workdir) is None:
      if workdir.exists() and (args.overwrite or not same):
        shutil.rmtree(workdir)  # Stale (other command) or forced: train from scratch.
      workdir.mkdir(parents=True, exist_ok=True)
      eta = (f", ETA {sum(spent) / len(spent) * (len(names) - i) / 60:.0f} min for the "
             f"{len(names) - i} left" if spent else "")
      print(f"[{i + 1}/{len(names)}] training {name} in {workdir}{eta}", flush=True)
      meta_path.write_text(json.dumps(dict(argv=argv), indent=2))  # Same command: resume.
      proc = train(name, argv, workdir)
      meta_path.write_text(json.dumps(dict(argv=argv, **proc), indent=2))
      spent.append(proc["wall_seconds"])
    else:
      print(f"[{i + 1}/{len(names)}] {name}: finished run found in {workdir}", flush=True)
    final, meta = final_record(workdir), json.loads(meta_path.read_text())
    if final is None:
      raise RuntimeError(f"run {name} wrote no final record to {workdir}/metrics.jsonl")
    e = results[name] = entry(name, final, {k: meta.get(k) for k in PROC_KEYS}, workdir)
    print(f"    {name}: " + " ".join(f"{o}={_fmt(e.get(f'{o}/hr@{K}'))}" for o in OBJECTIVES
                                      if f"{o}/hr@{K}" in e)
          + f" | train {_fmt(e['train_seconds'], '.0f')}s | params {_fmt(e['params'], ',d')}",
          flush=True)
  return results


def _ratio(a, b):
  return None if a is None or not b else a / b


def summarize(results: dict, machine: dict, size: dict, args) -> dict:
  """Ratios against the single-objective models, the issue's criteria, run facts."""
  mp = results.get("mpformer", {})
  singles = {n.split("/", 1)[1]: e for n, e in results.items() if n.startswith("single/")}
  hr = {o: _ratio(mp.get(f"{o}/hr@{K}"), s.get(f"{o}/hr@{K}")) for o, s in singles.items()}
  total = lambda key: (None if not singles or any(s.get(key) is None for s in singles.values())
                       else sum(s[key] for s in singles.values()))
  out = dict(
      min_ratio_hr50_vs_single=min(hr.values()) if hr and None not in hr.values() else None,
      ratio_hr50_vs_single=hr,
      time_ratio_vs_single_total=_ratio(mp.get("train_seconds"), total("train_seconds")),
      cpu_time_ratio_vs_single_total=_ratio(mp.get("train_cpu_seconds"),
                                            total("train_cpu_seconds")),
      wall_ratio_vs_single_total=_ratio(mp.get("wall_seconds"), total("wall_seconds")),
      param_ratio_vs_single_total=_ratio(mp.get("params"), total("params")),
      singles_compared=sorted(singles))
  pers, unif = mp.get("merged/mean_exposure"), mp.get("merged_uniform/mean_exposure")
  le = lambda v, limit: None if v is None else v <= limit
  out["criteria"] = dict(
      hr50_at_least_095x_single=None if out["min_ratio_hr50_vs_single"] is None
      else out["min_ratio_hr50_vs_single"] >= HR_RATIO,
      time_at_most_035x_singles=le(out["time_ratio_vs_single_total"], COST_RATIO),
      params_at_most_035x_singles=le(out["param_ratio_vs_single_total"], COST_RATIO),
      personalized_quotas_beat_uniform=None if pers is None or unif is None else pers > unif,
      all_singles_run=len(singles) == len(OBJECTIVES))
  out.update(machine=machine, date=datetime.datetime.now().isoformat(timespec="seconds"),
             split=SPLIT, variant="tiny" if args.quick else "default",
             objective_weights=list(_base_config().loss.objective_weights),
             size_overrides={k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
             train_seconds_method="sum of the loop's log windows (compile in; eval, "
                                  "checkpoints, data build out)",
             peak_memory_method="ru_maxrss of the training subprocess (os.wait4)")
  return out


def machine_description() -> dict:
  """CPU model, usable cores and library versions."""
  with open("/proc/cpuinfo") as f:
    cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
               platform.machine())
  return dict(common.device_description(), cpu=cpu, cores=len(os.sched_getaffinity(0)),
              python=platform.python_version())


def _fmt(v, spec=".4f", none="-"):
  return none if v is None else format(v, spec)


def plot(results: dict, path) -> None:
  """HR@50 per objective (grouped bars) and merged exposure, personalised vs uniform quotas."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  series = ([("mpformer", "MPFormer (one model)")] * ("mpformer" in results)
            + [("single", "single-objective KuaiFormer")] * any("single/" in n for n in results)
            + [(n, "MPFormer, equal loss weights" if n == "ablation/objective_weights"
                else n.replace("ablation/", "MPFormer w/o ")) for n in results if "ablation/" in n])
  fig, axes = plt.subplots(1, 2, figsize=(16, 5.2), gridspec_kw=dict(width_ratios=(3, 2)))
  ax, x = axes[0], np.arange(len(OBJECTIVES))
  width = 0.8 / max(len(series), 1)
  colors = plt.get_cmap("tab10")
  for i, (name, label) in enumerate(series):
    vals = [(results.get(f"single/{o}", {}) if name == "single" else results[name])
            .get(f"{o}/hr@{K}") for o in OBJECTIVES]
    ax.bar(x + (i - (len(series) - 1) / 2) * width,
           [np.nan if v is None else v for v in vals], width, label=label, color=colors(i),
           edgecolor="black" if name in ("mpformer", "single") else None, linewidth=0.6)
  bars = [results.get(f"single/{o}", {}).get(f"{o}/hr@{K}") for o in OBJECTIVES]
  for xi, v in zip(x, bars):  # The issue's bar: MPFormer should reach 0.95x the single model.
    if v is not None:
      ax.hlines(HR_RATIO * v, xi - 0.42, xi + 0.42, colors="black", linestyles="--", lw=0.8,
                label=f"{HR_RATIO}x single" if xi == 0 else None)
  top = max((b.get_height() for b in ax.patches if np.isfinite(b.get_height())), default=1)
  ax.set_xticks(x, OBJECTIVES)
  ax.set(xlabel="objective (test events with that label)", ylabel=f"HR@{K} (test split)",
         ylim=(0, 1.45 * top), title=f"HR@{K}: one MPFormer vs one model per objective")
  ax.legend(fontsize=7, ncol=3, loc="upper center")
  ax.grid(True, axis="y", alpha=0.3)
  ax = axes[1]
  multi = [n for n in results if not n.startswith("single/")
           and results[n].get("merged/mean_exposure") is not None]
  y = np.arange(len(multi))
  ax.barh(y - 0.2, [results[n]["merged/mean_exposure"] for n in multi], 0.4,
          label="personalised quotas (target-weight head)")
  ax.barh(y + 0.2, [results[n]["merged_uniform/mean_exposure"] for n in multi], 0.4,
          label="uniform quotas")
  ax.set_yticks(y, [n.replace("ablation/", "w/o ").replace("w/o objective_weights",
                                                            "equal loss weights") for n in multi])
  ax.invert_yaxis()
  ax.set(xlabel=f"mean over objectives of the merged list's HR@{MERGED_N}",
         xlim=(0, 1.6 * max((results[n]["merged/mean_exposure"] for n in multi), default=1)),
         title=f"Merged multi-objective list, N={MERGED_N} (test split)")
  ax.legend(fontsize=7, loc="lower right")
  ax.grid(True, axis="x", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def readme_section(out: dict, flags: str, png_rel: str) -> str:
  """The markdown between the multi_objective markers: setup, table, criteria, plot."""
  s, m, q = out["summary"], out["summary"]["machine"], out["quotas"]
  runs = {n: e for n, e in out.items() if n not in ("quotas", "summary")}
  singles = [e for n, e in runs.items() if n.startswith("single/")]
  ref = runs.get("mpformer", {})
  loads = [e[k] for e in runs.values() for k in ("load_before", "load_after") if e.get(k)]
  size = ", ".join(f"`{k}={tuple(v) if isinstance(v, list) else v}`"
                   for k, v in s["size_overrides"].items())
  mib = lambda b: _fmt(None if b is None else b / 2**20, ",.0f")
  tot = lambda k: (None if not singles or any(x.get(k) is None for x in singles)
                   else sum(x[k] for x in singles))
  se = {o: math.sqrt(h * (1 - h) / n) for o in OBJECTIVES
        if (h := ref.get(f"{o}/hr@{K}")) is not None and (n := ref.get(f"{o}/test_events"))}
  lines = [README_START, README_TITLE, "",
           f"`python benchmarks/multi_objective.py{flags}` on {m['cpu']} ({m['cores']} cores, "
           f"jax {m['jax_version']} {m['platform']}), {s['date'][:10]}. Synthetic platform; "
           f"configs/base.py{':tiny' if s['variant'] == 'tiny' else ''} (MPFormer, ablations) "
           f"and configs/kuaiformer.py with `model.objectives=(o,)` (single models), all with "
           f"{size}: same data, seed, backbone size and step budget. MPFormer and its "
           f"ablations use configs/base.py's `loss.objective_weights="
           f"{tuple(s['objective_weights'])}` (each objective's share of labelled targets, "
           f"see below). Quality: held-out "
           f"**test** split, full ranking over all items; HR@{K} over the n test events "
           f"carrying the objective's label; merged exposure = mean over objectives of the "
           f"hit rate of the merged N={MERGED_N} list. Train s = training-loop wall time "
           f"(train-step compilation in; data build, checkpoints, evaluation out); train CPU "
           f"s = the process's CPU time over the loop; peak RSS of the training subprocess. "
           f"1-min load average during the runs "
           f"{_fmt(min(loads, default=None), '.1f')}-{_fmt(max(loads, default=None), '.1f')}"
           + (" (other jobs shared the cores, so wall times are noisy)."
              if max(loads, default=0) > m["cores"] + 0.5 else "."), "",
           "| run | " + " | ".join(f"{o} HR@{K} (n={_fmt(ref.get(f'{o}/test_events'), '.0f')})"
                                   for o in OBJECTIVES)
           + " | merged exposure (personalised / uniform) | params | train s | train CPU s | "
           "peak RSS (MiB) |", "|---|" + "---:|" * (len(OBJECTIVES) + 5)]
  for name, e in runs.items():
    merged = ("n/a" if e.get("merged/mean_exposure") is None else
              f"{e['merged/mean_exposure']:.4f} / {e['merged_uniform/mean_exposure']:.4f}")
    lines.append(f"| {name} | " + " | ".join(_fmt(e.get(f"{o}/hr@{K}")) for o in OBJECTIVES)
                 + f" | {merged} | {_fmt(e.get('params'), ',d')} | "
                 f"{_fmt(e.get('train_seconds'), '.0f')} | "
                 f"{_fmt(e.get('train_cpu_seconds'), '.0f')} | {mib(e.get('peak_memory_bytes'))} |")
    if singles and e is singles[-1]:
      lines.append(f"| **{len(singles)} single models, total** |" + " |" * (len(OBJECTIVES) + 1)
                   + f" {_fmt(tot('params'), ',d')} | {_fmt(tot('train_seconds'), '.0f')} | "
                   f"{_fmt(tot('train_cpu_seconds'), '.0f')} | "
                   f"{mib(max(x.get('peak_memory_bytes') or 0 for x in singles))} (max) |")
  c, ok = s["criteria"], lambda v: "n/a" if v is None else ("**met**" if v else "**NOT met**")
  ratio = lambda k: _fmt(s[k], ".3f")
  lines += ["", "Done-when of issue 3 (one MPFormer vs the single-objective models):",
            f"- HR@{K} >= {HR_RATIO}x single on every objective: ratios "
            + (", ".join(f"{o} {_fmt(r, '.3f')}" for o, r in s["ratio_hr50_vs_single"].items())
               or "n/a") + f" -> {ok(c['hr50_at_least_095x_single'])} (binomial standard "
            f"error of MPFormer's HR@{K}: "
            + (", ".join(f"{o} ±{v:.3f}" for o, v in se.items()) or "n/a") + ")",
            f"- training time <= {COST_RATIO}x the single models' total: "
            f"{ratio('time_ratio_vs_single_total')} -> {ok(c['time_at_most_035x_singles'])} "
            f"(training-loop CPU time: {ratio('cpu_time_ratio_vs_single_total')}; whole-process "
            f"wall time, evaluation included: {ratio('wall_ratio_vs_single_total')})",
            f"- parameters <= {COST_RATIO}x the single models' total: "
            f"{ratio('param_ratio_vs_single_total')} -> {ok(c['params_at_most_035x_singles'])}",
            f"- personalised quotas give a higher mean merged exposure than uniform: "
            f"{_fmt(q['personalized']['merged/mean_exposure'])} vs "
            f"{_fmt(q['uniform']['merged/mean_exposure'])} -> "
            f"{ok(c['personalized_quotas_beat_uniform'])}",
            "", "`ablation/objective_weights` trains with equal loss "
            "weights (1, 1, 1, 1): the like and follow losses, means over the ~10 and ~3 rows "
            "of a 128-row batch that carry those labels, are noisy and then dominate the "
            "shared backbone's updates, which costs the dense objectives most. "
            "`ablation/user_token` also switches off `model.user_gate` (the PEPNet gate reads "
            "the user token). Without `target_weights` the quotas are uniform, so both merged "
            "numbers coincide. Single models have no merged list (n/a).",
            "", f"![multi-objective benchmark]({png_rel})", README_END]
  return "\n".join(lines)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--steps", type=int, default=None, help="train.num_steps for every run")
  p.add_argument("--only", default="", help="comma-separated run names (default: all)")
  p.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "mpformer_bench",
                                                   "multi_objective"),
                 help="parent of the per-run workdirs")
  p.add_argument("--overwrite", action="store_true", help="retrain finished runs")
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "README.md"))
  return common.parse_args(p, argv)


def main(argv: Optional[list[str]] = None) -> dict:
  """Trains or reads back the runs, writes JSON + PNG (+ README); returns the JSON dict."""
  args = parse_args(argv)
  wanted = {n.strip() for n in args.only.split(",") if n.strip()}
  if wanted - set(run_specs()):
    raise SystemExit(f"--only: unknown runs {sorted(wanted - set(run_specs()))}; choose from "
                     f"{list(run_specs())}")
  names = [n for n in run_specs() if not wanted or n in wanted]
  machine, results = machine_description(), run_all(args, names)
  out = dict(results)
  mp = results.get("mpformer", {})
  out["quotas"] = {kind: {f"merged/{key}": mp.get(f"{src}/{key}")
                          for key in ["mean_exposure"] + [f"{o}/hr@{MERGED_N}" for o in OBJECTIVES]}
                    for kind, src in (("personalized", "merged"), ("uniform", "merged_uniform"))}
  out["summary"] = summarize(results, machine, size_overrides(args), args)
  os.makedirs(args.out, exist_ok=True)
  common.write_json(Path(args.out) / "multi_objective.json", out)
  png_path = Path(args.out) / "multi_objective.png"
  plot(results, png_path)
  print("criteria: " + ", ".join(f"{k}={v}" for k, v in out["summary"]["criteria"].items()))
  if args.update_readme:
    flags = " --quick" * args.quick + (f" --steps {args.steps}" if args.steps else "")
    png_rel = os.path.relpath(png_path, os.path.dirname(os.path.abspath(args.readme)))
    common.update_readme_section(args.readme, README_START, README_END,
                                 readme_section(out, flags, png_rel))
  return json.loads((Path(args.out) / "multi_objective.json").read_text())


if __name__ == "__main__":
  main()
