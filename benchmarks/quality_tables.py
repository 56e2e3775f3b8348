"""The README section, tables and bar plot of benchmarks/quality.py, from its JSONs.

One markdown table per dataset (our runs in each protocol variant, the count baselines, the
published numbers, seed spreads and the time-to-quality summary of quality_curves.py) and
one bar chart of NDCG@10 / Recall@10. Reads only the `quality_<dataset>.json` entries: no
training, no evaluation, so `--tables_only` regenerates everything in seconds.
"""
from __future__ import annotations

import functools
import statistics

from benchmarks import quality_baselines, quality_curves

VARIANTS = {"all items": "test", "seen removed": "test_seen_removed"}  # -> key prefix
# ML-1M only: seen removed, without the 1,115 users whose file lost an event (data README).
COMPLETE = ("seen removed, complete users", "test_seen_removed_complete_users")
PREFIXES = dict(VARIANTS, **{COMPLETE[0]: COMPLETE[1]})  # every shown variant -> key prefix
KS = (10, 50, 200)
# 2: `seen removed` excludes the whole history (schema.SEEN_IDS), not the newest max_len.
EVAL_PROTOCOL = 2
README_START, README_END = "<!-- quality:start -->", "<!-- quality:end -->"
README_TITLE = "## Quality on real data: ours vs SASRec vs published numbers"


def flat_keys(dataset: str) -> bool:
  """Whether a dataset's JSON keys leave the objective out: all but multi-objective ML-100K."""
  return dataset != "ml100k"


def metric_key(prefix: str, objective: str, metric: str, flat: bool) -> str:
  """`test/ndcg@10` on single-objective datasets (HR@K -> recall@K), else `test/<o>/hr@K`."""
  if flat:
    return f"{prefix}/{metric.replace('hr@', 'recall@')}"
  return f"{prefix}/{objective}/{metric}"


def fmt(v, spec=".4f"):
  """A table cell: `-` for a metric the run lacks."""
  return "-" if v is None else format(v, spec)


def shown_variants(results: dict) -> list[str]:
  """`all items`, plus `seen removed` where a published number uses it."""
  used = {p["variant"] for p in results.get("published", {}).values()}
  complete = any(metric_key(COMPLETE[1], "", "ndcg@10", True) in e
                 for e in trained_runs(results).values())
  return (["all items"] + ["seen removed"] * ("seen removed" in used)
          + [COMPLETE[0]] * complete)


def trained_runs(results: dict) -> dict:
  """A dataset JSON's run entries (not its published numbers, meta or count baselines)."""
  return {n: e for n, e in results.items() if n not in ("published", "meta", "baselines")}


def table(dataset: str, results: dict) -> list[str]:
  """Markdown rows: one per run x objective x variant, then the published numbers."""
  published, runs = results.get("published", {}), trained_runs(results)
  users = sorted({e["num_users"] for e in runs.values()})
  head = ["run", "objective", "variant", "NDCG@10", "Recall@10", "NDCG@50", "Recall@50",
          f"ScaNN recall@{KS[-1]}", "train s", "params", "QPS exact", "QPS ScaNN"]
  lines = [f"**{dataset}**: test targets of {' / '.join(map(str, users))} users, ranked "
           f"against {max(e['num_items'] for e in runs.values())} items", "",
           "| " + " | ".join(head) + " |",
           "|---|---|---|" + "---:|" * (len(head) - 3)]
  for name, e in runs.items():
    flat, first = flat_keys(dataset), True
    for o in e["objectives"]:
      for variant in shown_variants(results):
        vals = [e.get(metric_key(PREFIXES[variant], o, m, flat))
                for m in ("ndcg@10", "hr@10", "ndcg@50", "hr@50", f"scann_recall@{KS[-1]}")]
        if all(v is None for v in vals):  # a variant this run was not evaluated with
          continue
        cost = ([fmt(e["train_seconds"], ".0f"), fmt(e["params"], ",d"),
                 fmt(e["qps/exact"], ",.0f"), fmt(e["qps/scann"], ",.0f")]
                if first else [""] * 4)
        first = False
        lines.append(f"| {name} ({e['config']}) | {o} | {variant} | "
                     + " | ".join([fmt(v) for v in vals] + cost) + " |")
  lines += quality_baselines.table_rows(
      results.get("baselines", {}), [v for v in shown_variants(results) if v in VARIANTS],
      VARIANTS, functools.partial(metric_key, flat=flat_keys(dataset)))
  notes = {}
  for name, p in sorted(published.items(), key=lambda kv: (kv[1]["variant"], kv[0])):
    lines.append(f"| published: {name}, {p['source']} | | {p['variant']} | "
                 f"{p['ndcg@10']:.4f} | {p['recall@10']:.4f} |" + " |" * 7)
    notes.setdefault(p["note"], []).append(name)
  lines += [""] * bool(notes) + [f"- {', '.join(n)}: {note}." for note, n in notes.items()]
  overrides = [e.get("overrides", {}) for e in runs.values()]  # shown unless every run has it
  own = {name: {k: v for k, v in e.get("overrides", {}).items()
                if not all(o.get(k, object()) == v for o in overrides)}
         for name, e in runs.items()}
  flag = lambda k, v: f"`--config.{k}={tuple(v) if isinstance(v, list) else v}`"
  lines += [f"- run `{name}`: " + " ".join(flag(k, v) for k, v in o.items()) + "."
            for name, o in own.items() if o]
  old = [f"`{n}`" for n, e in runs.items() if e.get("eval_protocol", 1) < EVAL_PROTOCOL
         and "seen removed" in shown_variants(results)]
  lines += [f"- {', '.join(old)}: evaluated when `seen removed` excluded only the newest "
            f"`data.max_len` events of a history, not all of it; not comparable with the "
            f"published numbers until re-evaluated (`--reevaluate`)."] * bool(old)
  return lines + seed_lines(dataset, runs) + quality_curves.summary_lines(dataset, runs)


def seed_lines(dataset: str, runs: dict) -> list[str]:
  """Mean and standard deviation of test NDCG@10 / Recall@10 over a run's `/seed<k>` runs."""
  groups = {}
  for name, e in runs.items():
    base, _, seed = name.rpartition("/seed")
    if base and seed.isdigit():
      groups.setdefault(base, []).append(e)
  lines = []
  for base, entries in groups.items():
    if len(entries) < 2:
      continue
    steps = sorted({e["step"] for e in entries})
    parts = []
    for variant, prefix in VARIANTS.items():
      for m in ("ndcg@10", "hr@10"):
        v = [e[metric_key(prefix, e["objectives"][0], m, flat_keys(dataset))] for e in entries]
        parts.append(f"{m.replace('hr@', 'Recall@').replace('ndcg', 'NDCG')} {variant} "
                     f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}")
    lines.append(f"- seed spread, `{base}` ({len(entries)} seeds, {'/'.join(map(str, steps))} "
                 f"steps): " + "; ".join(parts) + ".")
  return lines


def readme_section(all_results: dict, flags: str, png_rel: str, time_rel: str) -> str:
  """The markdown between the quality markers: setup, one table per dataset, plot."""
  metas = [r["meta"] for r in all_results.values() if "meta" in r]
  meta, dates = max(metas, key=lambda x: x["date"]), sorted({x["date"][:10] for x in metas})
  # Every dataset file's newest machine (runs of one benchmark may span machines).
  machines = "; ".join(sorted({
      f"{m['cpu']} ({m['cores']} core{'s' * (m['cores'] != 1)}, jax {m['jax_version']} "
      f"{m['platform']})" for m in (x["machine"] for x in metas)}))
  lines = [README_START, README_TITLE, "",
           f"`python benchmarks/quality.py{flags}` on {machines}, "
           f"{' to '.join(dates[::len(dates) - 1 or 1])}. "
           f"Leave-one-out, held-out **test** split, all users (configs' `eval.num_users=0`), "
           f"full ranking (shared/data/README.md): `all items` ranks the target against every "
           f"item, `seen removed` excludes every item of the user's history, however long (as "
           f"gSASRec's filter_rated); compare a published number only with its variant. "
           f"Recall@K = HR@K (one target). Train s = training-loop wall time (compilation in; "
           f"data build, checkpoints, evaluation out). ScaNN recall@{KS[-1]} = overlap of "
           f"ScaNN's top {KS[-1]} with the exact top {KS[-1]} (same variant); QPS = (user x "
           f"objective) queries/s, top-{KS[-1]}, compilation excluded (launch.evaluate). "
           f"Overrides of every run: {meta['size_overrides'] or 'none (configs as they are)'}.", ""]
  for dataset, results in all_results.items():
    lines += table(dataset, results) + [""]
  lines += [f"![quality benchmark]({png_rel})", "",
            f"![validation NDCG@10 against training minutes]({time_rel})", README_END]
  return "\n".join(lines)


def plot(all_results: dict, path) -> None:
  """Per dataset: NDCG@10 and Recall@10 of our runs (per variant) and the published ones."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  panels = {}  # dataset -> [(label, ndcg@10, recall@10)]
  for dataset, results in all_results.items():
    flat, rows = flat_keys(dataset), panels.setdefault(dataset, [])
    for name, e in {**trained_runs(results), **results.get("baselines", {})}.items():
      rows += [(f"{name}{'' if flat else ' ' + o} [{v}]",
                e.get(metric_key(PREFIXES[v], o, "ndcg@10", flat)),
                e.get(metric_key(PREFIXES[v], o, "hr@10", flat)))
               for o in e["objectives"] for v in shown_variants(results)]
    rows += [(f"{n} (published) [{p['variant']}]", p["ndcg@10"], p["recall@10"])
             for n, p in results.get("published", {}).items()]
  fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(
      6.5 * len(panels), 1.5 + 0.45 * max(len(r) for r in panels.values())))
  for ax, (dataset, rows) in zip(axes[0], panels.items()):
    y = range(len(rows))
    for j, (label, off) in enumerate((("NDCG@10", -0.2), ("Recall@10", 0.2))):
      ax.barh([i + off for i in y], [r[j + 1] or 0 for r in rows], height=0.4, label=label)
    ax.set_yticks(list(y), [r[0] for r in rows], fontsize=7)
    ax.set_ylim(max(len(rows), 4) - 0.5, -0.5)  # First row on top; thin bars for few rows.
    ax.set(xlabel="metric (test split, leave-one-out, full ranking)",
           ylabel="run [protocol variant]", title=dataset,
           xlim=(0, 1.15 * max([v or 0 for r in rows for v in r[1:]] + [0.05])))
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
