"""Quality of the long-history encoders where the signal lies far back (issue 22).

Workload `recurring` (default) trains configs/recurring.py's variants on the recurring-
interests platform (data/recurring.py: 8 favourites recur every 256 events, never in the 256
before the held-out pair, which returns to one of them half the time); `ml1m` trains
configs/ml1m_long.py's on ML-1M's full histories (the one recipe, 1,024 events, 1,000 steps):
  solar     the newest 48 events raw + SOLAR's SVD-Attention memory over the 976 older ones;
  compress  the newest 48 raw + KuaiFormer's compression of the same 976 (16/64/256 windows);
  recent    the newest 48 only (the floor: what the old history adds is the gap to it).
Each run is `python -m launch.train` in a fresh subprocess (benchmarks/runs.py), for
`--seeds` seeds; a finished workdir from the same command is read back, not retrained.

Reported per variant (mean ± sample std over seeds): test HR@10, HR@50, NDCG@10 (recurring:
all items, 2,000 users, half of their held-out events returns to a favourite, half platform
events that every variant sees alike; ml1m: every user, seen items removed), validation
HR@50 and NDCG@10, the training step time (the loop's steps/s over its log windows, compile
in), and parameters. SOLAR and compression read the
same 1,024 events; comparing them at equal step time means comparing quality per unit of
step time, shown side by side.

  python benchmarks/long_history.py [--seeds 2] [--steps N] [--update_readme]
  python benchmarks/long_history.py --workload ml1m --seeds 1 --update_readme
  python benchmarks/long_history.py --workload ml1m --seeds 1 --reevaluate   # new metrics
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

if not __package__:  # Run as `python benchmarks/long_history.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import common
from benchmarks.runs import REPO, final_record, machine_description, train, train_seconds
# pylint: enable=g-import-not-at-top,wrong-import-position

VARIANTS = {"solar": "default", "compress": "compress", "recent": "recent"}
METRICS = ("test/hr@10", "test/hr@50", "test/ndcg@10", "eval/hr@50", "eval/ndcg@10",
           "test/popularity/hr@50", "test/transitions/hr@50")
WORKLOADS = {
    "recurring": dict(
        config="recurring.py", marker="long_history", json="long_history.json",
        title="Long histories: quality where the signal lies far back",
        what="configs/recurring.py: KuaiFormer (click) on the synthetic platform with "
             "recurring favourites (data/recurring.py), 1,024 events read; test metrics over "
             "all items for 2,000 users, half of whose held-out events return to a favourite "
             "last seen 256 or more events back."),
    "ml1m": dict(
        config="ml1m_long.py", marker="long_history_ml1m", json="long_history_ml1m.json",
        title="Long histories on ML-1M: reading 1,024 events of real histories",
        what="configs/ml1m_long.py: the one recipe on ML-1M with 1,024 events read (the "
             "recipe's own caps at 200; 26% of users have more), 1,000 steps; test metrics "
             "over every user's held-out event, seen items removed."),
}


def markers(workload: str) -> tuple[str, str]:
  name = WORKLOADS[workload]["marker"]
  return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def command(variant: str, workdir: Path, steps: Optional[int], seed: int,
            workload: str = "recurring") -> list[str]:
  argv = [sys.executable, "-m", "launch.train",
          f"--config={REPO / 'configs' / WORKLOADS[workload]['config']}:{VARIANTS[variant]}",
          f"--workdir={workdir}", f"--config.seed={seed}"]
  if steps:  # a short run still logs a few windows (its step time) and checkpoints
    argv += [f"--config.train.num_steps={steps}", f"--config.train.eval_every_steps={steps}",
             f"--config.train.log_every_steps={max(1, min(50, steps // 4))}",
             f"--config.train.checkpoint_every_steps={max(1, steps // 2)}"]
  return argv


def run_variant(variant: str, args) -> dict:
  """Trains (or reads back) every seed of one variant; returns its per-seed entries."""
  per_seed = {}
  for seed in range(args.seeds):
    workdir = (Path(args.scratch) / ("" if args.workload == "recurring" else args.workload)
               / f"{variant}_steps{args.steps or 'default'}_seed{seed}")
    argv = command(variant, workdir, args.steps, seed, args.workload)
    meta = workdir / "bench.json"
    same = meta.exists() and json.loads(meta.read_text())["argv"][1:] == argv[1:]
    if not same or final_record(workdir) is None:
      workdir.mkdir(parents=True, exist_ok=True)
      print(f"training {variant} seed {seed} in {workdir}", flush=True)
      meta.write_text(json.dumps(dict(argv=argv)))
      meta.write_text(json.dumps(dict(argv=argv, **train(f"{variant}#{seed}", argv, workdir))))
    elif args.reevaluate:  # the same command finds its last checkpoint at the final step:
      print(f"evaluating {variant} seed {seed} in {workdir}", flush=True)  # no training
      train(f"{variant}#{seed}", argv, workdir)
    final = final_record(workdir)
    if final is None:
      raise RuntimeError(f"{variant} seed {seed} wrote no final record in {workdir}")
    seconds, steps = train_seconds(workdir), final.get("step")
    per_seed[seed] = dict({m: final.get(m) for m in METRICS}, params=final.get("params"),
                          step_s=seconds / steps if seconds and steps else None)
  return per_seed


def aggregate(per_seed: dict) -> dict:
  keys = next(iter(per_seed.values())).keys()
  out = {}
  for k in keys:
    vals = [e[k] for e in per_seed.values() if e[k] is not None]
    out[k] = float(np.mean(vals)) if vals else None
    out[f"{k}/std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
  return dict(out, seeds=len(per_seed), per_seed=per_seed)


def _pm(e: dict, k: str) -> str:
  if e.get(k) is None:
    return "-"
  std = e.get(f"{k}/std")
  return f"{e[k]:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def readme_section(out: dict) -> str:
  m, w = out["machine"], WORKLOADS[out.get("workload", "recurring")]
  start, end = markers(out.get("workload", "recurring"))
  lines = [start, f"## {w['title']}", "",
           f"`python benchmarks/long_history.py{out['flags']}` on {m['cpu']} ({m['cores']} "
           f"cores, jax {m['jax_version']}), {out['date'][:10]}, {out['seeds']} seed(s) "
           f"(mean ± sample std). {w['what']}", "",
           "| variant | test HR@10 | test HR@50 | test NDCG@10 | valid HR@50 | valid NDCG@10 "
           "| popularity test HR@50 | transitions test HR@50 | step (ms) | params |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for name, e in out["variants"].items():
    step = "-" if e.get("step_s") is None else f"{e['step_s'] * 1e3:.0f}"
    lines.append(f"| {name} | {_pm(e, 'test/hr@10')} | {_pm(e, 'test/hr@50')} | "
                 f"{_pm(e, 'test/ndcg@10')} | {_pm(e, 'eval/hr@50')} | "
                 f"{_pm(e, 'eval/ndcg@10')} | {_pm(e, 'test/popularity/hr@50')} | "
                 f"{_pm(e, 'test/transitions/hr@50')} | {step} | "
                 f"{e.get('params') or 0:,.0f} |")
  return "\n".join(lines + ["", f"![long-history quality]({out['png']})", end])


def plot(out: dict, path: Path) -> None:
  """Test HR@50 (with std) against step time, one point per variant."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for name, e in out["variants"].items():
    if e.get("step_s") is None or e.get("test/hr@50") is None:
      continue
    ax.errorbar(e["step_s"] * 1e3, e["test/hr@50"], yerr=e.get("test/hr@50/std") or 0,
                marker="o", capsize=4, label=name)
  ax.set(xlabel="train step (ms)", ylabel="test HR@50",
         title=f"{out.get('workload', 'recurring')}: quality against step time")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv: Optional[list[str]] = None) -> dict:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--workload", choices=tuple(WORKLOADS), default="recurring")
  p.add_argument("--seeds", type=int, default=2)
  p.add_argument("--steps", type=int, default=None, help="train.num_steps for every run")
  p.add_argument("--only", default="", help="comma-separated variants (default: all)")
  p.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "mpformer_bench",
                                                   "long_history"))
  p.add_argument("--reevaluate", action="store_true", help="evaluate finished runs again with "
                 "the current code (their final checkpoints; no training)")
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "README.md"))
  args = common.parse_args(p, argv)
  names = [v for v in VARIANTS if not args.only or v in args.only.split(",")]
  w = WORKLOADS[args.workload]
  out = dict(machine=machine_description(), seeds=args.seeds, workload=args.workload,
             date=datetime.datetime.now().isoformat(timespec="seconds"),
             flags=(f" --workload {args.workload}" * (args.workload != "recurring")
                    + f" --seeds {args.seeds}" + (f" --steps {args.steps}" if args.steps else "")),
             variants={v: aggregate(run_variant(v, args)) for v in names})
  os.makedirs(args.out, exist_ok=True)
  common.write_json(Path(args.out) / w["json"], out)
  png = Path(args.out) / w["json"].replace(".json", ".png")
  plot(out, png)
  for name, e in out["variants"].items():
    print(f"{name}: test HR@50 {_pm(e, 'test/hr@50')}, step {e.get('step_s')}", flush=True)
  if args.update_readme:
    out["png"] = os.path.relpath(png, os.path.dirname(os.path.abspath(args.readme)))
    common.update_readme_section(args.readme, *markers(args.workload), readme_section(out))
  return out


if __name__ == "__main__":
  main()
