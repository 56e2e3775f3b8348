"""Tables and plots of benchmarks/multi_objective.py: means ± std over seeds, ablation effects."""
from __future__ import annotations

import collections

import numpy as np

K, MERGED_N = 50, 200            # headline HR@K, merged list size
HR_RATIO, COST_RATIO = 0.95, 0.35  # the issue's done-when thresholds


def _fmt(v, spec=".4f", none="-"):
  return none if v is None else format(v, spec)


def _pm(e: dict, key: str) -> str:
  """`mean ± std` of a run's metric (the mean alone for one seed)."""
  std = e.get("std", {}).get(key)
  return _fmt(e.get(key)) + ("" if std is None else f" ± {std:.3f}")


def plot(results: dict, path, objectives) -> None:
  """HR@50 per objective (grouped bars, std error bars) and merged exposure."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  series = ([("mpformer", "MPFormer (one model)")] * ("mpformer" in results)
            + [("single", "single-objective KuaiFormer")] * any("single/" in n for n in results)
            + [(n, n) for n in results if n.startswith("sasrec/")]
            + [(n, "MPFormer, equal loss weights" if n == "ablation/objective_weights"
                else n.replace("ablation/", "MPFormer w/o ")) for n in results if "ablation/" in n])
  fig, axes = plt.subplots(1, 2, figsize=(16, 5.2), gridspec_kw=dict(width_ratios=(3, 2)))
  ax, x = axes[0], np.arange(len(objectives))
  width = 0.8 / max(len(series), 1)
  colors = plt.get_cmap("tab20")
  for i, (name, label) in enumerate(series):
    runs = [results.get(f"single/{o}", {}) if name == "single" else results[name]
            for o in objectives]
    vals = [r.get(f"{o}/hr@{K}") for r, o in zip(runs, objectives)]
    errs = [r.get("std", {}).get(f"{o}/hr@{K}") for r, o in zip(runs, objectives)]
    ax.bar(x + (i - (len(series) - 1) / 2) * width,
           [np.nan if v is None else v for v in vals], width, label=label, color=colors(i),
           yerr=[0 if e is None else e for e in errs], capsize=1.5,
           edgecolor="black" if name in ("mpformer", "single") else None, linewidth=0.6)
  bars = [results.get(f"single/{o}", {}).get(f"{o}/hr@{K}") for o in objectives]
  for xi, v in zip(x, bars):  # The issue's bar: MPFormer should reach 0.95x the single model.
    if v is not None:
      ax.hlines(HR_RATIO * v, xi - 0.42, xi + 0.42, colors="black", linestyles="--", lw=0.8,
                label=f"{HR_RATIO}x single" if xi == 0 else None)
  top = max((b.get_height() for b in ax.patches if np.isfinite(b.get_height())), default=1)
  ax.set_xticks(x, objectives)
  ax.set(xlabel="objective (test events with that label)", ylabel=f"HR@{K} (test split)",
         ylim=(0, 1.45 * top), title=f"HR@{K}: one MPFormer vs one model per objective "
                                     "(mean ± std over seeds)")
  ax.legend(fontsize=7, ncol=3, loc="upper center")
  ax.grid(True, axis="y", alpha=0.3)
  ax = axes[1]
  multi = [n for n in results if results[n].get("merged/mean_exposure") is not None]
  y = np.arange(len(multi))
  for shift, kind, label in ((-0.2, "merged", "personalised quotas (target-weight head)"),
                             (0.2, "merged_uniform", "uniform quotas")):
    key = f"{kind}/mean_exposure"
    ax.barh(y + shift, [results[n][key] for n in multi], 0.4, label=label,
            xerr=[results[n].get("std", {}).get(key) or 0 for n in multi], capsize=1.5)
  ax.set_yticks(y, [n.replace("ablation/", "w/o ").replace("w/o objective_weights",
                                                            "equal loss weights") for n in multi])
  ax.invert_yaxis()
  ax.set(xlabel=f"mean over objectives of the merged list's HR@{MERGED_N}",
         xlim=(0, 1.6 * max((results[n]["merged/mean_exposure"] for n in multi), default=1)),
         title=f"Merged multi-objective list, N={MERGED_N} "
               f"({results.get('mpformer', {}).get('merged/split') or 'test'} split)")
  ax.legend(fontsize=7, loc="lower right")
  ax.grid(True, axis="x", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def readme_section(out: dict, dataset, flags: str, png_rel: str, start: str, end: str) -> str:
  """The markdown between a dataset's markers: setup, table, effects, criteria, plot."""
  s, m, q = out["summary"], out["summary"]["machine"], out["quotas"]
  objectives = dataset.objectives
  runs = {n: e for n, e in out.items() if n not in ("quotas", "summary")}
  singles = [e for n, e in runs.items() if n.startswith("single/")]
  ref = runs.get("mpformer", {})
  loads = [x for e in runs.values() for ps in e.get("per_seed", {}).values()
           for x in (ps.get("load_before"), ps.get("load_after")) if x]
  size = ", ".join(f"`{k}={tuple(v) if isinstance(v, list) else v}`"
                   for k, v in s["size_overrides"].items())
  mib = lambda b: _fmt(None if b is None else b / 2**20, ",.0f")
  tot = lambda k: (None if not singles or any(x.get(k) is None for x in singles)
                   else sum(x[k] for x in singles))
  title = dataset.title or ("## Multi-objective: one MPFormer vs one model per objective" +
                            ("" if dataset.name == "synthetic" else f" ({dataset.name})"))
  lines = [start, title, "",
           f"`python benchmarks/multi_objective.py{flags}` on {m['cpu']} ({m['cores']} cores, "
           f"jax {m['jax_version']} {m['platform']}), {s['date'][:10]}. Dataset "
           f"`{dataset.name}`: configs/{dataset.mpformer} (MPFormer with every switch on, "
           "ablations) and "
           f"configs/{dataset.single} with `model.objectives=(o,)` (single models), all with "
           f"{size}: same data, backbone size and step budget, **{s['seeds']} seeds** each "
           "(mean ± sample std). Quality: held-out **test** split (or *valid*, where the test "
           "split has no event of that objective), full ranking over all "
           f"items; HR@{K} over the n held-out events carrying the objective's label; merged "
           f"exposure = mean over objectives of the hit rate of the merged N={MERGED_N} list. "
           "Train s = training-loop wall time (compilation in; data build, checkpoints, "
           "evaluation out); train CPU s = the process's CPU time over the loop. 1-min load "
           f"average during the runs {_fmt(min(loads, default=None), '.1f')}-"
           f"{_fmt(max(loads, default=None), '.1f')}"
           + (" (other jobs shared the cores, so wall times are noisy)."
              if max(loads, default=0) > m["cores"] + 0.5 else ".") + _machines(runs), "",
           "| run | " + " | ".join(
               f"{o} HR@{K} ({'' if ref.get(f'{o}/split', 'test') == 'test' else 'valid, '}"
               f"n={_fmt(ref.get(f'{o}/held_out_events', ref.get(f'{o}/test_events')), '.0f')})"
               for o in objectives)
           + " | merged exposure (personalised / uniform"
           + ("" if ref.get("merged/split", "test") == "test" else ", valid")
           + ") | params | train s | train CPU s | "
           "peak RSS (MiB) |", "|---|" + "---:|" * (len(objectives) + 5)]
  for name, e in runs.items():
    merged = ("n/a" if e.get("merged/mean_exposure") is None else
              f"{_pm(e, 'merged/mean_exposure')} / {_pm(e, 'merged_uniform/mean_exposure')}")
    lines.append(f"| {name} | " + " | ".join(_pm(e, f"{o}/hr@{K}") if f"{o}/hr@{K}" in e
                                             else "-" for o in objectives)
                 + f" | {merged} | {_fmt(e.get('params'), ',d')} | "
                 f"{_fmt(e.get('train_seconds'), '.0f')} | "
                 f"{_fmt(e.get('train_cpu_seconds'), '.0f')} | {mib(e.get('peak_memory_bytes'))} |")
    if singles and e is singles[-1]:
      lines.append(f"| **{len(singles)} single models, total** |" + " |" * (len(objectives) + 1)
                   + f" {_fmt(tot('params'), ',d')} | {_fmt(tot('train_seconds'), '.0f')} | "
                   f"{_fmt(tot('train_cpu_seconds'), '.0f')} | "
                   f"{mib(max(x.get('peak_memory_bytes') or 0 for x in singles))} (max) |")
  lines += effects_table(s, objectives, dict(dataset.expected))
  merged = (f"{_fmt(q['personalized']['merged/mean_exposure'])} vs "
            f"{_fmt(q['uniform']['merged/mean_exposure'])}")
  if singles:
    lines += _done_when(s, merged) + _against_all_events(runs, objectives)
  else:
    lines += ["", f"Personalised against uniform quotas, mean merged exposure: {merged}."]
  lines += ["", "`ablation/user_token` also switches off `model.user_gate` (the PEPNet gate "
            "reads the user token); `ablation/all_structure` switches off every mechanism but "
            "the target-weight head, so all objectives share one set of query tokens. Without `target_weights` the quotas are uniform, so both "
            "merged numbers coincide. Single models have no merged list (n/a).",
            "", f"![multi-objective benchmark]({png_rel})", end]
  return "\n".join(lines)


def _machines(runs: dict) -> str:
  """A sentence naming the CPUs when the runs' seeds did not all run on one machine."""
  cpus = collections.Counter(ps.get("cpu", "unrecorded") for e in runs.values()
                             for ps in e.get("per_seed", {}).values())
  if len(cpus) < 2:
    return ""
  return (" The runs were split across machines (" + ", ".join(
      f"{cpu}: {n} runs" for cpu, n in cpus.most_common()) + "), so wall-time ratios mix "
          "them; the CPU-time ratio is the steadier figure.")


def _done_when(s: dict, merged: str) -> list[str]:
  """The issue's criteria for one MPFormer against the single-objective models."""
  c, ok = s["criteria"], lambda v: "n/a" if v is None else ("**met**" if v else "**NOT met**")
  ratio = lambda k: _fmt(s[k], ".3f")
  hr = ", ".join(f"{o} {_fmt(r, '.3f')}" for o, r in s["ratio_hr50_vs_single"].items())
  return ["", "Done-when (one MPFormer vs the single-objective models):",
          f"- HR@{K} >= {HR_RATIO}x single on every objective: ratios of the means "
          f"{hr or 'n/a'} -> {ok(c['hr50_at_least_095x_single'])}",
          f"- training time <= {COST_RATIO}x the single models' total: "
          f"{ratio('time_ratio_vs_single_total')} -> {ok(c['time_at_most_035x_singles'])} "
          f"(training-loop CPU time: {ratio('cpu_time_ratio_vs_single_total')}; whole-process "
          f"wall time, evaluation included: {ratio('wall_ratio_vs_single_total')})",
          f"- parameters <= {COST_RATIO}x the single models' total: "
          f"{ratio('param_ratio_vs_single_total')} -> {ok(c['params_at_most_035x_singles'])}",
          f"- personalised quotas give a higher mean merged exposure than uniform: {merged} -> "
          f"{ok(c['personalized_quotas_beat_uniform'])}"]


def _against_all_events(runs: dict, objectives) -> list[str]:
  """The stronger baseline, where it ran: MPFormer's HR over one model on every event."""
  mp, every = runs.get("mpformer"), runs.get("all_events")
  if not mp or not every:
    return []
  ratios = {o: (mp.get(f"{o}/hr@{K}") / every[f"{o}/hr@{K}"]
                if every.get(f"{o}/hr@{K}") and mp.get(f"{o}/hr@{K}") is not None else None)
            for o in objectives}
  return ["", f"Against one KuaiFormer trained on every event (`all_events`, the stronger "
          f"baseline): MPFormer's HR@{K} over it, ratios of the means "
          + ", ".join(f"{o} {_fmt(r, '.3f')}" for o, r in ratios.items()) + "."]


def effects_table(summary: dict, objectives, expected: dict | None = None) -> list[str]:
  """MPFormer minus each ablation, ± its standard error, with the 2-SE verdict (and, where
  the dataset's story predicts one, the expected effect of switching the mechanism off)."""
  expected = expected or {}
  effects = summary.get("ablation_effects") or {}
  if not effects:
    return []
  keys = [f"{o}/hr@{K}" for o in objectives] + ["merged/mean_exposure"]
  mark = {"gain": " **gain**", "loss": " **loss**", "no difference": ""}
  lines = ["", f"Effect of each mechanism: MPFormer's mean minus the ablation's, ± the standard "
           f"error of that difference over {summary['seeds']} seeds; **gain** (the mechanism "
           "helps) or **loss** (it hurts) only beyond two standard errors.", "",
           "| switched off | " + " | ".join(k.replace("/hr@", " HR@").replace(
               "merged/mean_exposure", "merged exposure") for k in keys)
           + " | story predicts |" * bool(expected) + " |" * (not expected),
           "|---|" + "---:|" * len(keys) + "---|" * bool(expected)]
  for name, per_key in effects.items():
    cells = []
    for key in keys:
      e = per_key.get(key)
      cells.append("-" if e is None else
                   f"{e['delta']:+.4f} ± {e['se']:.4f}{mark[e['verdict']]}")
    short = name.replace("ablation/", "")
    if expected:
      cells.append(expected.get(short, "-"))
    lines.append(f"| {short} | " + " | ".join(cells) + " |")
  return lines
