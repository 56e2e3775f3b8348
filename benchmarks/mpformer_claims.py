"""MPFormer's headline claims against our measured counterparts (issue 19, item 5).

MPFormer (arXiv 2508.20400) reports, against one retriever per objective, 60% less training
resource, 66.7% less serving resource and +21.8% multi-objective exposure (the figures as
issue 19 quotes them; the paper measures them in Kuaishou's production system). Ours, per
dataset (synthetic: configs/base.py vs configs/kuaiformer.py; retail: configs/retail.py vs
configs/retail.py:buy with one objective each; MPFormer with every switch on):

- training: MPFormer's training-loop seconds (and CPU seconds, and parameters) over the
  single-objective models' total, read from `benchmarks/multi_objective.py`'s results;
- serving, measured here: seconds per user to answer every objective, i.e. the exported user
  tower's forward pass plus exact retrieval of each objective's top 50 and the merge
  (`ServedModel.recommend`, in-process, batches of 64, no HTTP), for one MPFormer artifact
  against the per-objective KuaiFormer artifacts on the same users and machine; the median of
  `--repeats` passes, beside the analytic FLOPs ratio. Weights are the initialisation:
  the cost of exact retrieval does not depend on their values;
- exposure: the merged list's mean exposure with personalised quotas (the target-weight
  head) over uniform quotas, per seed, from the same results. The paper's +21.8% compares
  MPFormer with its production baseline; our counterpart isolates what the personalised
  quotas add to one MPFormer.

  python benchmarks/mpformer_claims.py --update_readme   # ~10 min on 2 CPU cores
  python benchmarks/mpformer_claims.py --quick --datasets synthetic   # tiny models, ~1 min
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if not __package__:  # Run as `python benchmarks/mpformer_claims.py`.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import common, multi_objective, serving
from configs import retail
from mpformer_jax.serving.loader import ServedModel
# pylint: enable=g-import-not-at-top,wrong-import-position

README_START, README_END = "<!-- mpformer_claims:start -->", "<!-- mpformer_claims:end -->"
PAPER = dict(training_ratio=0.40, serving_ratio=1 / 3, exposure_gain=0.218)
SYNTHETIC_OBJECTIVES = ("click", "long_view", "like", "follow")
RETAIL_OBJECTIVES = ("view", "cart", "fav", "buy")
RESULTS = {"synthetic": "multi_objective.json", "retail": "multi_objective_retail.json"}


def configs(dataset: str, quick: bool) -> dict:
  """name -> config of the MPFormer (every switch on, as in the multi-objective benchmark
  whose training figures this table reads) and of the single-objective models."""
  if dataset == "synthetic":
    make = lambda objectives: serving.synthetic_config(10_000, 2_000, "exact", objectives,
                                                       quick)
    out = {"mpformer": make(None)} | {f"single/{o}": make((o,)) for o in SYNTHETIC_OBJECTIVES}
  else:
    out = {"mpformer": retail.get_config()}
    for o in RETAIL_OBJECTIVES:
      c = retail.get_config("buy")
      c.model.objectives, c.loss.objective_weights = (o,), (1.0,)
      out[f"single/{o}"] = c
  out["mpformer"].model.update({s: True for s in multi_objective.DATASETS[dataset].switches})
  for c in out.values():
    c.export.update(index="exact", keep=1)
  return out


def serving_cost(dataset: str, scratch: Path, users: int, repeats: int, quick: bool) -> dict:
  """Seconds per user to serve every objective: one MPFormer vs the single models."""
  runs = {}
  for name, c in configs(dataset, quick).items():
    built = serving.publish(c, scratch / dataset / name.replace("/", "_"), users=users,
                            requests=users)
    model = ServedModel(built["directory"], max_batch=64)   # compiles every batch bucket
    encoded = [model.encode(b) for b in built["bodies"]]
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      model.recommend(encoded)
      times.append(time.perf_counter() - start)
    runs[name] = dict(users=len(encoded), seconds=float(np.median(times)),
                      seconds_per_user=float(np.median(times)) / len(encoded),
                      flops_per_user=built["flops"], repeats=repeats,
                      params_bytes=os.path.getsize(Path(built["directory"]) / "params.npz"))
    print(f"  {dataset} {name}: {1e3 * runs[name]['seconds_per_user']:.3f} ms/user "
          f"({built['flops'] / 1e6:.1f} MFLOP/user)", flush=True)
  singles = [r for n, r in runs.items() if n.startswith("single/")]
  return dict(runs=runs,
              seconds_ratio=runs["mpformer"]["seconds"] / sum(r["seconds"] for r in singles),
              flops_ratio=runs["mpformer"]["flops_per_user"] / sum(r["flops_per_user"]
                                                                   for r in singles))


def from_results(path: Path) -> dict:
  """Training, parameter, quality and exposure figures of a multi_objective.py results JSON."""
  out = json.loads(path.read_text())
  s, mp = out["summary"], out["mpformer"]
  per_seed = mp.get("per_seed") or {"0": mp}   # results written before seeds: one run
  gains = [e["merged/mean_exposure"] / e["merged_uniform/mean_exposure"] - 1
           for e in per_seed.values()]
  return dict(source=str(path.name), date=s["date"], seeds=len(per_seed),
              training_ratio=s["time_ratio_vs_single_total"],
              training_cpu_ratio=s["cpu_time_ratio_vs_single_total"],
              params_ratio=s["param_ratio_vs_single_total"],
              hr50_ratio_min=s["min_ratio_hr50_vs_single"],
              exposure_split=mp.get("merged/split", "test"),
              exposure_gain=float(np.mean(gains)),
              exposure_gain_std=float(np.std(gains, ddof=1)) if len(gains) > 1 else None)


def plot(result: dict, path: Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  claims = [("training time", "training_ratio"), ("serving time", "serving_ratio"),
            ("exposure (1 + gain)", "exposure_gain")]
  series = [("paper", PAPER)] + list(result["datasets"].items())
  fig, ax = plt.subplots(figsize=(8, 4))
  x, width = np.arange(len(claims)), 0.8 / len(series)
  for i, (label, values) in enumerate(series):
    heights = [np.nan if values.get(key) is None else
               (1 + values[key] if key == "exposure_gain" else values[key])
               for _, key in claims]
    ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=label)
  ax.axhline(1.0, color="black", lw=0.8, ls="--")
  ax.set_xticks(x, [c for c, _ in claims])
  ax.set(ylabel="ratio (cost: MPFormer / singles; exposure: personalised / uniform)",
         title="MPFormer's claims vs ours (below 1: cheaper; above 1: more exposure)")
  ax.legend()
  ax.grid(True, axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def readme_section(result: dict) -> str:
  m, d = result["machine"], result["datasets"]
  names = list(d)
  f = lambda v, spec=".2f": "-" if v is None else format(v, spec)
  pct = lambda g, sd: "-" if g is None else f"{100 * g:+.1f}%" + (
      "" if sd is None else f" ± {100 * sd:.1f}")
  lines = [README_START, "## MPFormer's claims vs ours", "",
           f"`python benchmarks/mpformer_claims.py --update_readme` ({result['date'][:10]}, "
           f"{m['cpu']}, {m['cores']} core{'s' * (m['cores'] > 1)}, jax {m['jax_version']}). The paper's figures "
           "(arXiv 2508.20400, as issue 19 quotes them) are production measurements against "
           "one retriever per objective. Ours: training and exposure from the multi-objective "
           "tables above (their seeds); serving measured here: seconds per user for the "
           "exported user tower plus exact top-50 retrieval per objective and the merge "
           f"(`ServedModel.recommend`, in-process, batches of 64, median of {result['repeats']} "
           "passes over the same users), one MPFormer against the per-objective KuaiFormers.",
           "", "| claim | paper | " + " | ".join(names) + " |",
           "|---|---:|" + "---:|" * len(names)]
  row = lambda label, paper, cells: lines.append(f"| {label} | {paper} | "
                                                 + " | ".join(cells) + " |")
  row("training time, MPFormer / singles' total", "0.40x (60% less)",
      [f"{f(v['training_ratio'])}x (CPU {f(v['training_cpu_ratio'])}x)" for v in d.values()])
  row("serving time per user, MPFormer / singles' total", "0.33x (66.7% less)",
      [f"{f(v['serving']['seconds_ratio'])}x (FLOPs {f(v['serving']['flops_ratio'])}x)"
       for v in d.values()])
  row("multi-objective exposure", "+21.8% (vs production baseline)",
      [f"{pct(v['exposure_gain'], v['exposure_gain_std'])} personalised vs uniform quotas "
       f"({v['exposure_split']}, {v['seeds']} seed{'s' * (v['seeds'] > 1)})"
       for v in d.values()])
  row("parameters, MPFormer / singles' total", "-", [f"{f(v['params_ratio'])}x"
                                                      for v in d.values()])
  row("HR@50, MPFormer / single (worst objective)", "-",
      [f"{f(v['hr50_ratio_min'], '.3f')}x" for v in d.values()])
  lines += ["", "Serving, milliseconds per user:", "",
            "| dataset | MPFormer (all objectives) | each single model | singles' total |",
            "|---|---:|---|---:|"]
  for name, v in d.items():
    runs = v["serving"]["runs"]
    singles = {n.split("/", 1)[1]: r["seconds_per_user"] for n, r in runs.items()
               if n.startswith("single/")}
    lines.append(f"| {name} | {1e3 * runs['mpformer']['seconds_per_user']:.3f} | "
                 + ", ".join(f"{o} {1e3 * t:.3f}" for o, t in singles.items())
                 + f" | {1e3 * sum(singles.values()):.3f} |")
  lines += ["", "![claims](results/mpformer_claims.png)", README_END]
  return "\n".join(lines)


def main(argv=None) -> dict:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--datasets", default="synthetic,retail")
  p.add_argument("--users", type=int, default=None, help="users served (default 512)")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--results", type=Path, default=common.DEFAULT_OUT,
                 help="where multi_objective.py's results JSONs are")
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=str(common.DEFAULT_README))
  args = common.parse_args(p, argv)
  users = args.users or (64 if args.quick else 512)
  scratch = Path(tempfile.mkdtemp(prefix="mpformer_claims_"))
  datasets = {}
  for name in [n.strip() for n in args.datasets.split(",") if n.strip()]:
    if name not in RESULTS:
      raise SystemExit(f"--datasets: unknown {name!r}; choose from {sorted(RESULTS)}")
    path = args.results / RESULTS[name]
    if not path.exists():
      raise SystemExit(f"{path} is missing: run benchmarks/multi_objective.py"
                       f"{'' if name == 'synthetic' else ' --dataset ' + name} first")
    flat = from_results(path)
    flat["serving"] = serving_cost(name, scratch, users, args.repeats, args.quick)
    flat["serving_ratio"] = flat["serving"]["seconds_ratio"]
    datasets[name] = flat
  result = dict(paper=PAPER, datasets=datasets, repeats=args.repeats, users=users,
                quick=args.quick, date=datetime.datetime.now().isoformat(timespec="seconds"),
                machine={**common.device_description(), "cpu": common.cpu_model(),
                         "cores": len(os.sched_getaffinity(0))})
  common.write_json(args.out / "mpformer_claims.json", result)
  plot(result, args.out / "mpformer_claims.png")
  if args.update_readme:
    common.update_readme_section(args.readme, README_START, README_END, readme_section(result))
  return result


if __name__ == "__main__":
  main()
