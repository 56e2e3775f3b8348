"""Time to quality: validation NDCG@10 against training minutes (benchmarks/quality.py).

A run's curve comes from its `<workdir>/metrics.jsonl`: every in-loop evaluation (the
validation split, `eval/ndcg@10`) at the training-loop minutes spent up to that step, the
sum of the logged step windows (compilation in; evaluation and checkpoints out; a step
inside a window at that window's rate), so a resumed run counts its work once. The variant
is the run's `eval.remove_seen`.
"""
from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Optional

from mpformer_jax.train.metric_writer import read_metrics

# The published NDCG@10 (seen removed) each dataset's curves are read against.
THRESHOLDS = {"ml1m": ("gSASRec", 0.1726), "beauty": ("SASRec+SS", 0.0531)}


def validation_curve(workdir: Path) -> dict:
  """{"variant", "points": [[minutes, step, ndcg@10], ...]} of one run."""
  records = read_metrics(str(workdir))
  rate, evals = {}, {}
  for r in records:                       # the last record of a step wins (resumed runs)
    if r.get("final"):  # the end-of-run validation, unless an evaluation had that step
      if "eval/ndcg@10" in r:
        evals.setdefault(r["step"], r["eval/ndcg@10"])
      continue
    if r.get("train/steps_per_sec"):
      rate[r["step"]] = r["train/steps_per_sec"]
    if "eval/ndcg@10" in r:
      evals[r["step"]] = r["eval/ndcg@10"]
  logged = sorted(rate)
  if not logged:
    points = []
  else:
    cumulative, elapsed, last = [], 0.0, 0
    for step in logged:
      elapsed += (step - last) / rate[step]
      cumulative.append(elapsed)
      last = step
    points = [[round(_seconds_at(s, logged, cumulative, rate) / 60, 2), s, v]
              for s, v in sorted(evals.items())]
  config = json.loads((Path(workdir) / "config.json").read_text())["config"]
  variant = "seen removed" if config["eval"]["remove_seen"] else "all items"
  return {"variant": variant, "points": points}


def _seconds_at(step: int, logged: list, cumulative: list, rate: dict) -> float:
  """Training seconds at `step`: up to the log step before it, then at the next window's rate."""
  i = bisect.bisect_left(logged, step)           # first log step >= step
  if i < len(logged) and logged[i] == step:
    return cumulative[i]
  before, start = (cumulative[i - 1], logged[i - 1]) if i else (0.0, 0)
  window_rate = rate[logged[min(i, len(logged) - 1)]]
  return before + (step - start) / window_rate


def minutes_to(curve: dict, threshold: float) -> Optional[float]:
  """Training minutes of the first evaluation at or above `threshold` (None: never)."""
  return next((m for m, _, v in curve.get("points", []) if v >= threshold), None)


def summary_lines(dataset: str, runs: dict) -> list[str]:
  """One markdown bullet per run with a curve: minutes to pass the dataset's threshold."""
  if dataset not in THRESHOLDS:
    return []
  name, threshold = THRESHOLDS[dataset]
  lines = []
  for run, e in runs.items():
    curve = e.get("curve")
    if not curve or not curve["points"]:
      continue
    best = max(curve["points"], key=lambda p: p[2])
    passed = minutes_to(curve, threshold)
    when = (f"passes {name}'s {threshold} at {passed:.1f} training minutes" if passed is not None
            else f"stays below {name}'s {threshold}")
    lines.append(f"- time to quality, `{run}`: validation NDCG@10 ({curve['variant']}) {when}; "
                 f"best {best[2]:.4f} at step {best[1]} ({best[0]:.1f} min).")
  return lines


def plot(all_results: dict, path) -> None:
  """Per dataset with curves: validation NDCG@10 against training minutes, threshold dashed."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  panels = {d: {n: e["curve"] for n, e in res.items()
                if isinstance(e, dict) and e.get("curve", {}).get("points")}
            for d, res in all_results.items()}
  panels = {d: c for d, c in panels.items() if c}
  if not panels:
    return
  fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(6 * len(panels), 4))
  for ax, (dataset, curves) in zip(axes[0], panels.items()):
    for run, curve in curves.items():
      m, _, v = zip(*curve["points"])
      ax.plot(m, v, marker="o", ms=3, label=f"{run} [{curve['variant']}]")
    if dataset in THRESHOLDS:
      name, threshold = THRESHOLDS[dataset]
      ax.axhline(threshold, ls="--", c="gray", lw=1, label=f"{name} {threshold} (test)")
    ax.set(xlabel="training minutes", ylabel="validation NDCG@10", title=dataset)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
