"""Exact search vs ScaNN: recall@K, queries per second and build time against corpus size.

Answers "when is ANN worth it, and what does it cost in recall" (GitHub issue 7, DESIGN 3).
For each corpus size: exact blocked matmul + top-k (`retrieval.exact`, the ground truth) and
a small sweep of ScaNN search parameters; the fastest setting with recall@100 >= 0.95 is
marked `chosen` (or the most accurate one if none gets there).

Conventions: a query is one user with J interest vectors; both methods return that user's
top k=200 items by `max_j <u_j, v_x>` (ScaNN searches each interest and merges), so QPS is
users per second, merge included. Times are medians of `--repeats` runs after a warm-up
call (JIT compilation excluded), blocking on results. ScaNN is timed with its default
threading (`search_batched_parallel`, all cores) and single-threaded (`search_batched`).
Build time is one run of `build_scann` with all cores.

  python benchmarks/retrieval.py                      # 10k, 100k, 1M items
  python benchmarks/retrieval.py --max_items 10000000 # adds 10M (2.5 GB of items)
  python benchmarks/retrieval.py --quick              # 10k, 100k, 64 users; < 1 min
  python benchmarks/retrieval.py --embeddings emb.npz # trained `items`, `queries`

Rows already in `<out>/retrieval.json` are skipped (resume) unless `--overwrite`.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from typing import Callable, Optional

import numpy as np

if not __package__:  # Run as `python benchmarks/retrieval.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from mpformer_jax.retrieval import exact, scann_index  # pylint: disable=g-import-not-at-top

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
K = 200
RECALL_KS = (10, 100, 200)
TARGET_RECALL = 0.95  # recall@100 the ScaNN setting must reach...
TARGET_SPEEDUP = 10.0  # ...while being this many times faster than exact...
TARGET_ITEMS = 1_000_000  # ...on a corpus this large (issue 7).
README_START, README_END = "<!-- retrieval:start -->", "<!-- retrieval:end -->"


def synthetic_embeddings(num_items: int, num_users: int, num_interests: int = 4,
                         dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Clustered embeddings shaped like a trained dot-product retriever's.

  Isotropic Gaussians are the worst case for ANN and unlike learned embeddings, which
  cluster by topic and whose norms grow with popularity. Generator:
  - T = clip(2 sqrt(N), 64, 8192) topic centres, random unit vectors; topic popularity
    p_t ~ (t + 1)^-0.8 (Zipf).
  - item: topic t ~ p; direction = normalize(c_t + 1.0 * g / sqrt(d)), g ~ N(0, I) (noise
    as large as the centre, so topics overlap); norm = rank^-0.1 / median over a random
    popularity rank in 1..N (Zipf-ish, ~4x spread at 1M).
  - user: 2 topics ~ p; each of the J interests picks one of them; direction =
    normalize(c_t + 0.6 * g / sqrt(d)), unit norm.

  Returns:
    (queries [U, J, d] f32, items [N + 1, d] f32 with row 0 = zero padding).
  """
  rng = np.random.default_rng(seed)
  num_topics = int(np.clip(2 * math.sqrt(num_items), 64, 8192))
  centres = rng.normal(size=(num_topics, dim))
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  pop = np.arange(1, num_topics + 1, dtype=np.float64) ** -0.8
  pop /= pop.sum()
  norms = (rng.permutation(num_items) + 1.0) ** -0.1
  norms /= np.median(norms)
  items = np.zeros((num_items + 1, dim), np.float32)
  chunk = 1 << 18  # Bounds float64 temporaries to ~130 MB at any N.
  for start in range(0, num_items, chunk):
    m = min(num_items, start + chunk) - start
    v = centres[rng.choice(num_topics, m, p=pop)] + rng.normal(size=(m, dim)) / math.sqrt(dim)
    v *= (norms[start:start + m] / np.linalg.norm(v, axis=1))[:, None]
    items[1 + start:1 + start + m] = v
  topics = rng.choice(num_topics, (num_users, 2), p=pop)
  pick = topics[np.arange(num_users)[:, None], rng.integers(0, 2, (num_users, num_interests))]
  q = centres[pick] + 0.6 * rng.normal(size=(num_users, num_interests, dim)) / math.sqrt(dim)
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  return q.astype(np.float32), items


def load_embeddings(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Loads a trained model's `queries` [U, J, d] (or [U, d]) and `items` [N + 1, d]."""
  with np.load(path) as f:
    queries, items = f["queries"].astype(np.float32), f["items"].astype(np.float32)
  if queries.ndim == 2:
    queries = queries[:, None, :]
  if queries.ndim != 3 or items.ndim != 2 or queries.shape[-1] != items.shape[-1]:
    raise ValueError(f"bad shapes: queries {queries.shape}, items {items.shape}")
  return queries, items


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
  """Median wall time of `fn` over `repeats` calls; `fn` must block on its results."""
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def machine_description() -> dict:
  """Enough to tell whose numbers these are: CPU, usable cores, library versions."""
  cpu = common.cpu_model()
  try:
    scann_version = importlib.metadata.version("scann")
  except importlib.metadata.PackageNotFoundError:
    scann_version = None
  usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return dict(common.device_description(), cpu=cpu, cores=usable, scann=scann_version,
              numpy=np.__version__, python=platform.python_version())


def sweep_grid(num_leaves: int, quick: bool) -> list[tuple[Optional[int], int]]:
  """(leaves_to_search, reorder_k) points: a few fractions of the leaves x a few x k."""
  fracs = (0.05, 0.2) if quick else (0.02, 0.05, 0.1, 0.2)
  mults = (1, 2) if quick else (1, 2, 5)
  leaves = sorted({max(1, round(f * num_leaves)) for f in fracs}) if num_leaves > 1 else [None]
  return [(n, m * K) for n in leaves for m in mults]


def corpus_key(row: dict) -> tuple:
  """Which embeddings, corpus size and query batch a row measured."""
  return row["source"], row["num_items"], row["d"], row["num_queries"], row["k"]


def row_key(row: dict) -> tuple:
  """Identity of a measurement, for resuming; timings and recalls are not part of it."""
  return corpus_key(row) + (row["method"], json.dumps(row["params"], sort_keys=True))


def _recalls(approx_ids, exact_ids) -> dict:
  return {f"recall@{k}": scann_index.recall_at_k(approx_ids, exact_ids, k) for k in RECALL_KS}


def mark_chosen(rows: list[dict]) -> None:
  """Per corpus size, flags the fastest ScaNN row reaching TARGET_RECALL (else best recall)."""
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    if r["method"] == "scann":
      groups.setdefault(corpus_key(r), []).append(r)
  for group in groups.values():
    ok = [r for r in group if r["recall@100"] >= TARGET_RECALL]
    best = (max(ok, key=lambda r: r["qps"]) if ok
            else max(group, key=lambda r: (r["recall@100"], r["qps"])))
    for r in group:
      r["chosen"] = r is best


def measure_size(data: Callable[[], tuple[np.ndarray, np.ndarray]], base: dict, args,
                 have: set, emit: Callable[[dict], None]) -> None:
  """Runs the missing exact / ScaNN rows for one corpus; `emit` stores each new row."""
  import jax  # pylint: disable=g-import-not-at-top
  n = base["num_items"]
  num_leaves = scann_index.default_scann_params(n, K)["num_leaves"]
  grid = sweep_grid(num_leaves, args.quick)
  exact_row = dict(base, method="exact", params=dict(block_size=args.block_size))
  scann_row = lambda lts, rk: dict(base, method="scann",
                                   params=_scann_params(num_leaves, lts, rk, n))
  todo = [(lts, rk) for lts, rk in grid if row_key(scann_row(lts, rk)) not in have]
  need_exact_row = row_key(exact_row) not in have
  if not todo and not need_exact_row:
    return  # Everything for this corpus is already saved: skip data, compile and build.
  queries, items = data()
  qj, ij = jax.device_put(queries), jax.device_put(items)
  _, exact_ids = exact.exact_top_k(qj, ij, K, block_size=args.block_size)  # Ground truth.
  exact_ids = np.asarray(exact_ids)
  if need_exact_row:
    fn = jax.jit(functools.partial(exact.exact_top_k, k=K, block_size=args.block_size))
    sec = common.time_fn(fn, qj, ij, warmup=1, iters=args.repeats)["median_s"]
    emit(dict(exact_row, qps=len(queries) / sec, qps_1thread=None, build_s=None,
              median_s=sec, **_recalls(exact_ids, exact_ids)))
  del qj, ij
  if not todo:
    return
  t0 = time.perf_counter()
  index = scann_index.build_scann(items, num_neighbors=K)
  build_s = time.perf_counter() - t0
  for lts, rk in todo:
    search = lambda parallel, lts=lts, rk=rk: scann_index.scann_search(
        index, queries, K, leaves_to_search=lts, pre_reorder_num_neighbors=rk,
        parallel=parallel)
    ids, _ = search(True)  # Warm-up.
    sec = median_seconds(lambda: search(True), args.repeats)
    sec_1 = median_seconds(lambda: search(False), args.repeats)
    emit(dict(scann_row(lts, rk), qps=len(queries) / sec, qps_1thread=len(queries) / sec_1,
              build_s=build_s, median_s=sec, **_recalls(ids, exact_ids)))


def _scann_params(num_leaves: int, lts: Optional[int], reorder_k: int, n: int) -> dict:
  """Build params (library defaults for N) with the swept search-time values."""
  p = scann_index.default_scann_params(n, K)
  keep = ("dims_per_block", "training_sample_size", "anisotropic_quantization_threshold")
  return dict({k: p[k] for k in keep}, num_leaves=num_leaves, num_leaves_to_search=lts,
              reorder_k=reorder_k)


def _fmt_row(r: dict) -> str:
  p = r["params"]
  what = (f"leaves {p['num_leaves_to_search']}/{p['num_leaves']} reorder {p['reorder_k']}"
          if r["method"] == "scann" else f"block {p['block_size']}")
  q1 = f"{r['qps_1thread']:9.0f}" if r.get("qps_1thread") else f"{'-':>9}"
  build = f"{r['build_s']:7.1f}" if r.get("build_s") is not None else f"{'-':>7}"
  return (f"{r['num_items']:>11,} {r['method']:>6} {r['qps']:9.0f} {q1} {build} "
          f"{r['recall@10']:7.3f} {r['recall@100']:7.3f} {r['recall@200']:7.3f}  {what}")


TABLE_HEADER = (f"{'items':>11} {'method':>6} {'QPS':>9} {'QPS 1thr':>9} {'build s':>7} "
                f"{'R@10':>7} {'R@100':>7} {'R@200':>7}  params")


def summary(rows: list[dict]) -> list[dict]:
  """One line per corpus size: exact, the chosen ScaNN row, and the speedup."""
  out = []
  for n in sorted({r["num_items"] for r in rows}):
    ex = next((r for r in rows if r["num_items"] == n and r["method"] == "exact"), None)
    sc = next((r for r in rows if r["num_items"] == n and r.get("chosen")), None)
    if ex and sc:
      out.append(dict(num_items=n, exact=ex, scann=sc, speedup=sc["qps"] / ex["qps"],
                      meets=sc["recall@100"] >= TARGET_RECALL
                      and sc["qps"] >= TARGET_SPEEDUP * ex["qps"]))
  return out


def plot(rows: list[dict], path: str) -> None:
  """QPS and recall@100 vs corpus size, and the recall/QPS frontier at the largest size."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  lines = summary(rows)
  ns = [s["num_items"] for s in lines]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
  ax = axes[0]
  ax.plot(ns, [s["exact"]["qps"] for s in lines], "o-", label="exact (blocked matmul + top-k)")
  ax.plot(ns, [s["scann"]["qps"] for s in lines], "s-", label="ScaNN chosen, all threads")
  ax.plot(ns, [s["scann"]["qps_1thread"] for s in lines], "^--", label="ScaNN chosen, 1 thread")
  ax.set(xscale="log", yscale="log", xlabel="corpus size (items)",
         ylabel="throughput (users/s, k=200)", title="Queries per second")
  ax.legend(fontsize=8)
  ax = axes[1]
  for k, style in zip(RECALL_KS, ("o:", "s-", "^--")):
    ax.plot(ns, [s["scann"][f"recall@{k}"] for s in lines], style, label=f"recall@{k}")
  ax.axhline(TARGET_RECALL, color="gray", lw=0.8, ls="--", label=f"target {TARGET_RECALL}")
  ax.set(xscale="log", xlabel="corpus size (items)", ylabel="recall vs exact (fraction)",
         title="ScaNN recall (chosen params)")
  ax.legend(fontsize=8)
  ax = axes[2]
  if lines:
    n = ns[-1]
    sweep = [r for r in rows if r["num_items"] == n and r["method"] == "scann"]
    ax.scatter([r["qps"] for r in sweep], [r["recall@100"] for r in sweep], c="C1",
               label="ScaNN sweep")
    chosen = [r for r in sweep if r.get("chosen")]
    ax.scatter([r["qps"] for r in chosen], [r["recall@100"] for r in chosen], marker="*",
               s=220, c="C3", zorder=3, label="chosen")
    for r in sweep:
      p = r["params"]
      ax.annotate(f"{p['num_leaves_to_search']}/{p['reorder_k']}", (r["qps"], r["recall@100"]),
                  fontsize=7, xytext=(3, 3), textcoords="offset points")
    ex_qps = lines[-1]["exact"]["qps"]
    ax.axvline(ex_qps, color="C0", label="exact QPS")
    ax.axvline(TARGET_SPEEDUP * ex_qps, color="C0", ls="--", label=f"{TARGET_SPEEDUP:g}x exact")
    ax.axhline(TARGET_RECALL, color="gray", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="throughput (users/s, all threads)",
           ylabel="recall@100 vs exact (fraction)",
           title=f"Frontier at {n:,} items (leaves searched / reorder_k)")
    ax.legend(fontsize=8)
  for ax in axes:  # Minor-tick labels of log axes overlap; major decades are enough.
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _source_lines(rows: list[dict], meta: dict, png_rel: str) -> list[str]:
  """Setup line, summary table, frontier and plot of one embedding source."""
  m = meta["machine"]
  out = [f"`python benchmarks/retrieval.py{meta['flags']}` on {m['cpu']} ({m['cores']} cores, "
         f"jax {m['jax_version']} {m['platform']}, scann {m['scann']}), {meta['date']}. "
         f"Embeddings: {meta['source']}; {meta['num_queries']} users x {meta['num_interests']} "
         f"interest vectors, d={meta['d']}, k={K}. QPS = users/s (median after warm-up, merge "
         f"of the interests included). ScaNN: tree (~sqrt(N) leaves) + AH (2 dims/block) + "
         f"exact reorder; the chosen setting is the fastest with recall@100 >= "
         f"{TARGET_RECALL} in the sweep.", "",
         "| items | exact QPS | ScaNN QPS | ScaNN QPS 1 thread | speedup | recall@10 | "
         "recall@100 | recall@200 | build (s) | leaves searched | reorder_k |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  lines = summary(rows)
  for s in lines:
    e, c, p = s["exact"], s["scann"], s["scann"]["params"]
    out.append(f"| {s['num_items']:,} | {e['qps']:,.0f} | {c['qps']:,.0f} | "
               f"{c['qps_1thread']:,.0f} | {s['speedup']:.1f}x | {c['recall@10']:.3f} | "
               f"{c['recall@100']:.3f} | {c['recall@200']:.3f} | {c['build_s']:.1f} | "
               f"{p['num_leaves_to_search']} / {p['num_leaves']} | {p['reorder_k']} |")
  if lines:
    last = lines[-1]
    verdict = "meets" if last["meets"] else "does not meet"
    sweep = [r for r in rows if r["num_items"] == last["num_items"] and r["method"] == "scann"]
    points = "; ".join(f"{r['params']['num_leaves_to_search']}/{r['params']['reorder_k']}: "
                       f"{r['recall@100']:.3f} @ {r['qps']:,.0f}" + (" (chosen)" * r["chosen"])
                       for r in sweep)
    scope = ("" if last["num_items"] >= TARGET_ITEMS else
             f", set for {TARGET_ITEMS:,} items: on a corpus this small exact search is cheap")
    out += ["", f"At {last['num_items']:,} items the chosen setting {verdict} the target "
            f"(recall@100 >= {TARGET_RECALL} at >= {TARGET_SPEEDUP:g}x exact QPS{scope}). "
            f"Sweep at that size (leaves searched/reorder_k: recall@100 @ QPS): {points}."]
  return out + ["", f"![retrieval benchmark, {meta['source']}]({png_rel})"]


def png_name(source: str) -> str:
  """retrieval.png for the synthetic sweep, retrieval_<npz stem>.png for trained embeddings."""
  if not source.startswith("npz:"):
    return "retrieval.png"
  return f"retrieval_{re.sub(r'[^A-Za-z0-9_.-]', '_', os.path.splitext(source[4:])[0])}.png"


def readme_section(rows: list[dict], png_dir_rel: str) -> str:
  """The markdown between the retrieval markers: one part per embedding source in `rows`."""
  sources = sorted({r["source"] for r in rows}, key=lambda s: (s.startswith("npz:"), s))
  out = [README_START, "## Retrieval: exact vs ScaNN"]
  for source in sources:
    mine = [r for r in rows if r["source"] == source]
    last = mine[-1]
    flags = ("" if not source.startswith("npz:") else f" --embeddings {source[4:]}") + (
        f" --max_items {max(r['num_items'] for r in mine)}" if source.startswith("synthetic")
        and max(r["num_items"] for r in mine) != 1_000_000 else "")
    meta = dict(machine=last["machine"], date=last["date"][:10], source=source, flags=flags,
                d=last["d"], num_queries=last["num_queries"],
                num_interests=last.get("num_interests", "?"))
    title, how = ("Synthetic embeddings", []) if source.startswith("synthetic") else (
        f"A trained model's embeddings ({source[4:]})",
        ["Exported from a trained run with `python -m launch.evaluate --config=C "
         "--workdir=W --export_embeddings=PATH.npz`: the whole item corpus, and as queries "
         "the interest vectors of held-out (user, objective) pairs.", ""])
    out += ["", f"### {title}", ""] + how + _source_lines(
        mine, meta, os.path.normpath(os.path.join(png_dir_rel, png_name(source))))
  return "\n".join(out + [README_END])


def update_readme(path: str, section: str) -> None:
  """Replaces only the text between the retrieval markers (appends it if absent)."""
  common.update_readme_section(path, README_START, README_END, section)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--max_items", type=int, default=1_000_000)
  p.add_argument("--embeddings", help=".npz with `items` [N+1, d] and `queries` [U, J, d]")
  p.add_argument("--num_queries", type=int, default=None, help="users (default 256; quick 64)")
  p.add_argument("--repeats", type=int, default=None, help="timed runs (default 5; quick 3)")
  p.add_argument("--block_size", type=int, default=65536, help="exact search items/step")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--overwrite", action="store_true", help="re-measure rows already saved")
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "README.md"))
  args = common.parse_args(p, argv)
  args.num_queries = args.num_queries or (64 if args.quick else 256)
  args.repeats = args.repeats or (3 if args.quick else 5)
  return args


def main(argv: Optional[list[str]] = None) -> list[dict]:
  """Runs the sweep (resuming from the JSON), writes JSON + PNG (+ README); returns rows."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  args = parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  json_path = os.path.join(args.out, "retrieval.json")
  rows = []
  if os.path.exists(json_path) and not args.overwrite:
    with open(json_path) as f:
      rows = json.load(f)["rows"]
  sizes = [s for s in (SIZES[:2] if args.quick else SIZES) if s <= args.max_items]
  if args.embeddings:
    queries, items = load_embeddings(args.embeddings)
    queries, total = queries[:args.num_queries], min(items.shape[0] - 1, args.max_items)
    sizes = [s for s in sizes if s < total] + [total]
    source = f"npz:{os.path.basename(args.embeddings)}"
    shape = dict(d=items.shape[1], num_queries=queries.shape[0], num_interests=queries.shape[1])
  else:
    source = f"synthetic(seed={args.seed})"
    shape = dict(d=64, num_queries=args.num_queries, num_interests=4)
  bases = [dict(source=source, num_items=n, **shape, k=K) for n in sizes]
  machine = machine_description()
  date = datetime.datetime.now().isoformat(timespec="seconds")
  wanted = {corpus_key(b) for b in bases}
  mine = lambda: [r for r in rows if corpus_key(r) in wanted]

  def save():
    mark_chosen(rows)
    common.write_json(json_path, dict(rows=rows))

  def emit(row):
    key = row_key(row)
    rows[:] = [r for r in rows if row_key(r) != key] + [dict(row, machine=machine, date=date)]
    save()
    tqdm.write(_fmt_row(row))

  tqdm.write(TABLE_HEADER)
  for r in mine():
    tqdm.write(_fmt_row(r) + "  (saved)")
  for base in tqdm(bases, desc="corpus sizes"):
    n = base["num_items"]
    data = ((lambda n=n: (queries, items[:n + 1])) if args.embeddings else
            (lambda n=n: synthetic_embeddings(n, args.num_queries, seed=args.seed)))
    measure_size(data, base, args, {row_key(r) for r in rows}, emit)
  save()
  png_path = os.path.join(args.out, png_name(source))
  plot(mine(), png_path)
  for s in summary(mine()):
    tqdm.write(f"N={s['num_items']:,}: ScaNN {s['speedup']:.1f}x exact QPS at recall@100 "
               f"{s['scann']['recall@100']:.3f} -> target {'met' if s['meets'] else 'NOT met'}"
               + ("" if s["num_items"] >= TARGET_ITEMS else f" (set for {TARGET_ITEMS:,} items)"))
  if args.update_readme and mine():
    png_dir_rel = os.path.relpath(args.out, os.path.dirname(os.path.abspath(args.readme)))
    update_readme(args.readme, readme_section(rows, png_dir_rel))
  return mine()


if __name__ == "__main__":
  main()
