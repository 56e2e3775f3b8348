"""Scale of the interaction-log dataset build (launch/prepare.py) at 1M, 10M and 100M events.

  python benchmarks/prepare.py [--sizes 1000000,10000000] [--quick] [--out DIR]
                               [--workdir DIR] [--update_readme]

Does the build of a user's own log stay fast and in bounded memory as the log grows? Each
size gets a synthetic CSV log (`user_id,item_id,timestamp,event`: string ids, unix seconds
increasing within a user, view/cart/fav/buy at ~80/10/5/5%, items Zipf(1.1) over events/50
items, ~events/100 users of lognormal lengths). The generator streams users in blocks of
about `--chunk_rows` events (each block sorted by time, so users interleave as in a real
log), so 100M rows take bounded memory; files are cached in `--workdir` by size and seed.

Each build is `python -m launch.prepare --config=configs/interactions.py` in a fresh
subprocess with a fresh `data.tfds_dir` (deleted afterwards). Figures: the build's own
report (`rows_in`, `seconds`, `peak_rss_bytes`, `users`, `items`, `events`, `dropped`);
`child_peak_rss_bytes` and `child_cpu_seconds` from os.wait4 (that child alone, interpreter
start-up in); `wall_seconds` around the whole subprocess. rows/s = rows_in / seconds.

Rows are merged into the results JSON by size, so sizes can be run separately. `--quick`
runs 1M only and, without `--out`, writes to a scratch folder (never benchmarks/results).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

if not __package__:  # Run as `python benchmarks/prepare.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.common import mib  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = Path(__file__).resolve().parents[1]
SIZES = (1_000_000, 10_000_000, 100_000_000)
QUICK_SIZES = (1_000_000,)
BEHAVIOURS = ("view", "cart", "fav", "buy")
BEHAVIOUR_P = (0.80, 0.10, 0.05, 0.05)
ZIPF = 1.1
EVENTS_PER_USER, EVENTS_PER_ITEM = 100, 50
T0, SPAN = 1_600_000_000, 365 * 86_400  # Users start uniformly over a year from 2020-09-13.
COLUMNS = ("user_id", "item_id", "timestamp", "event")
README_START, README_END = "<!-- prepare:start -->", "<!-- prepare:end -->"


# --------------------------------------------------------------------------- generation


def user_lengths(events: int, users: int, rng: np.random.Generator) -> np.ndarray:
  """Lognormal events per user (median ~0.6x the mean), at least 1, summing to `events`."""
  raw = rng.lognormal(0.0, 1.0, users)
  lengths = np.floor(raw / raw.sum() * (events - users)).astype(np.int64) + 1
  extra = events - int(lengths.sum())  # In [0, users): one more event for that many users.
  lengths[rng.choice(users, extra, replace=False)] += 1
  return lengths


def iter_chunks(events: int, seed: int = 0, chunk_rows: int = 1_000_000
                ) -> Iterator[dict[str, np.ndarray]]:
  """Blocks of about `chunk_rows` rows as integer columns (user, item, timestamp, event).

  Item index = the Zipf rank mapped through a fixed random permutation, so popularity does
  not follow the id. Within a block rows are sorted by time (users interleave); timestamps
  strictly increase within a user (gaps >= 1 s: 85% in-session ~1 min, 15% ~2 days).
  """
  rng = np.random.default_rng([seed, events])
  users, items = max(1, events // EVENTS_PER_USER), max(1, events // EVENTS_PER_ITEM)
  lengths = user_lengths(events, users, rng)
  starts = rng.integers(T0, T0 + SPAN, users)
  cdf = np.cumsum(np.arange(1, items + 1, dtype=np.float64) ** -ZIPF)
  cdf /= cdf[-1]
  rank_to_item = rng.permutation(items)
  ends = np.cumsum(lengths)
  lo = 0
  while lo < users:  # Users [lo, hi) hold about chunk_rows events.
    done = ends[lo - 1] if lo else 0
    hi = max(lo + 1, int(np.searchsorted(ends, done + chunk_rows, side="right")))
    n_u = lengths[lo:hi]
    n = int(n_u.sum())
    user = np.repeat(np.arange(lo, hi, dtype=np.int64), n_u)
    first = np.repeat(np.cumsum(n_u) - n_u, n_u)  # Row of each row's user's first event.
    gaps = np.where(rng.random(n) < 0.85, rng.exponential(60.0, n),
                    rng.exponential(2 * 86_400.0, n)).astype(np.int64) + 1
    csum = np.cumsum(gaps)
    ts = np.repeat(starts[lo:hi], n_u) + csum - csum[first]  # First event at the start.
    rank = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), items - 1)
    event = rng.choice(len(BEHAVIOURS), n, p=BEHAVIOUR_P).astype(np.int8)
    order = np.argsort(ts, kind="stable")
    yield dict(user=user[order], item=rank_to_item[rank][order], timestamp=ts[order],
               event=event[order])
    lo = hi


def _names(prefix: str, count: int, width: int):
  """pyarrow strings prefix + zero-padded index, e.g. u0001234 (width grows if needed)."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  width = max(width, len(str(max(count - 1, 0))))
  digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(count)), pa.string()), width, "0")
  return pc.binary_join_element_wise(prefix, digits, "")


def generate(path: str | os.PathLike, events: int, seed: int = 0,
             chunk_rows: int = 1_000_000) -> dict:
  """Writes the CSV log (to a temporary name, renamed when complete); returns its facts."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.csv as pacsv  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  users, items = max(1, events // EVENTS_PER_USER), max(1, events // EVENTS_PER_ITEM)
  user_names, item_names = _names("u", users, 7), _names("i", items, 6)
  event_names = pa.array(BEHAVIOURS)
  schema = pa.schema([(c, pa.int64() if c == "timestamp" else pa.string()) for c in COLUMNS])
  options = pacsv.WriteOptions(include_header=False, quoting_style="none")
  counts, rows = np.zeros(len(BEHAVIOURS), np.int64), 0
  tmp = path.with_name(path.name + ".partial")
  with pa.OSFile(str(tmp), "wb") as sink:
    sink.write((",".join(COLUMNS) + "\n").encode())
    with pacsv.CSVWriter(sink, schema, write_options=options) as writer:
      for c in iter_chunks(events, seed, chunk_rows):
        writer.write_table(pa.table([
            user_names.take(c["user"]), item_names.take(c["item"]),
            pa.array(c["timestamp"]), event_names.take(c["event"])], schema=schema))
        counts += np.bincount(c["event"], minlength=len(BEHAVIOURS))
        rows += len(c["user"])
  os.replace(tmp, path)
  return dict(events=rows, users=users, items=items, seed=seed, file_bytes=path.stat().st_size,
              generate_seconds=time.perf_counter() - t0,
              behaviour_counts=dict(zip(BEHAVIOURS, counts.tolist())))


def cached_log(workdir: str | os.PathLike, events: int, seed: int = 0,
               chunk_rows: int = 1_000_000) -> tuple[Path, dict]:
  """The log of `events` rows from `workdir` (generated once; facts kept beside it)."""
  path = Path(workdir) / f"events_{events}_seed{seed}.csv"
  meta_path = path.with_suffix(".json")
  if path.exists() and meta_path.exists():
    meta = json.loads(meta_path.read_text())
    if meta.get("file_bytes") == path.stat().st_size:
      return path, dict(meta, cached=True)
  meta = generate(path, events, seed, chunk_rows)
  common.write_json(meta_path, meta)
  return path, dict(meta, cached=False)


# --------------------------------------------------------------------------------- build


def build(csv_path: Path, tfds_dir: Path, report_path: Path, log_path: Path,
          timeout: Optional[float] = None) -> dict:
  """Runs launch.prepare on the log in a fresh subprocess; the report plus outside figures."""
  cmd = [sys.executable, "-m", "launch.prepare", "--config=configs/interactions.py",
         f"--config.data.interactions.path={csv_path}", f"--config.data.tfds_dir={tfds_dir}",
         f"--report_json={report_path}"]
  t0 = time.perf_counter()
  with open(log_path, "w") as log:
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    while True:  # Reap with wait4 (not proc.wait) to get this child's own rusage.
      pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
      if pid:
        break
      if timeout is not None and time.perf_counter() - t0 > timeout:
        proc.kill()
      time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
  wall = time.perf_counter() - t0
  if proc.returncode != 0 or not report_path.exists():
    tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
    raise RuntimeError(f"build failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                       f"log {log_path}:\n{tail}")
  report = json.loads(report_path.read_text())
  return dict(report=report, wall_seconds=wall, command=" ".join(cmd),
              child_cpu_seconds=usage.ru_utime + usage.ru_stime,
              child_peak_rss_bytes=int(usage.ru_maxrss) * 1024,  # KiB on Linux.
              output_bytes=_dir_bytes(tfds_dir))


def _dir_bytes(path: Path) -> int:
  return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def measure(events: int, args: argparse.Namespace, machine: dict) -> dict:
  """Generate (or reuse) the log of one size, build it, and return the result row."""
  csv_path, gen = cached_log(args.workdir, events, args.seed, args.chunk_rows)
  print(f"{events:,} events: {csv_path} ({gen['file_bytes'] / 2**20:,.0f} MB, generated in "
        f"{gen['generate_seconds']:.1f} s{', cached' if gen['cached'] else ''})", flush=True)
  load_before = os.getloadavg()[0]  # Other jobs on the cores make wall times noisy.
  run_dir = Path(args.workdir) / f"build_{events}_seed{args.seed}"
  shutil.rmtree(run_dir, ignore_errors=True)
  run_dir.mkdir(parents=True)
  try:
    got = build(csv_path, run_dir / "tfds", run_dir / "report.json", run_dir / "build.log",
                args.timeout)
  finally:  # A failed build keeps its log (and report), never the dataset.
    shutil.rmtree(run_dir / "tfds", ignore_errors=True)
  shutil.rmtree(run_dir, ignore_errors=True)
  rep = got.pop("report")
  seconds = float(rep["seconds"])
  return dict(
      events_generated=gen["events"], users_generated=gen["users"], items_generated=gen["items"],
      seed=args.seed, file_bytes=gen["file_bytes"], generate_seconds=gen["generate_seconds"],
      generate_cached=gen["cached"], behaviour_counts=gen["behaviour_counts"],
      rows_in=int(rep["rows_in"]), users=rep.get("users"), items=rep.get("items"),
      events=rep.get("events"), dropped=rep.get("dropped"), build_seconds=seconds,
      rows_per_second=int(rep["rows_in"]) / seconds if seconds > 0 else None,
      peak_rss_bytes=int(rep["peak_rss_bytes"]), report=rep, **got, machine=machine,
      load_before=load_before, load_after=os.getloadavg()[0],
      date=datetime.datetime.now().isoformat(timespec="seconds"))


# ------------------------------------------------------------------------------- outputs


def machine_description() -> dict:
  """CPU model, usable cores, RAM and versions: whose numbers these are."""
  cpu = common.cpu_model()
  try:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    ram = None
  import pyarrow  # pylint: disable=g-import-not-at-top
  usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return dict(cpu=cpu, cores=usable, ram_bytes=ram, python=platform.python_version(),
              numpy=np.__version__, pyarrow=pyarrow.__version__)



def _short(n: int) -> str:
  """20000 -> '20k', 10000000 -> '10M'."""
  for div, unit in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
    if n >= div:
      return f"{n / div:g}{unit}"
  return str(n)


def _int(x) -> str:
  return "-" if x is None else f"{int(x):,}"


def table_lines(rows: list[dict]) -> list[str]:
  """Markdown table, one line per size."""
  out = ["| events | users | items | kept events | CSV MB | generation s | build s | rows/s | "
         "peak RSS MB | child peak RSS MB | load | date |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for r in sorted(rows, key=lambda r: r["events_generated"]):
    rps = "-" if r["rows_per_second"] is None else f"{r['rows_per_second']:,.0f}"
    out.append(f"| {r['events_generated']:,} | {_int(r['users'])} | {_int(r['items'])} | "
               f"{_int(r['events'])} | {mib(r['file_bytes'])} | {r['generate_seconds']:.1f} | "
               f"{r['build_seconds']:.1f} | {rps} | {mib(r['peak_rss_bytes'])} | "
               f"{mib(r['child_peak_rss_bytes'])} | {r.get('load_before', 0):.1f} | "
               f"{r['date'][:10]} |")
  return out


def readme_section(rows: list[dict], png_rel: str, quick: bool = False) -> str:
  machines = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores, "
                     f"{mib(r['machine']['ram_bytes'])} MB RAM)" for r in rows})
  out = [README_START, "## Dataset build at scale", "",
         f"`python benchmarks/prepare.py{' --quick' if quick else ''}` on "
         f"{', '.join(machines)}: `python -m launch.prepare --config=configs/interactions.py` "
         "on a synthetic CSV log (`user_id,item_id,timestamp,event`; string ids; "
         "view/cart/fav/buy ~80/10/5/5%; items Zipf(1.1) over events/50; ~events/100 users "
         "of lognormal lengths; users interleaved), one fresh subprocess and "
         "dataset directory per size. Users, items and kept events are the build's (after "
         "its filters); build s, rows/s (= rows read / build s) and peak RSS are from the "
         "build's report; child peak RSS is the whole subprocess's (os.wait4). Generation s = "
         "writing the CSV (numpy + pyarrow, streamed), not part of the build. Load = the "
         "1-min load average before each build (other jobs on the cores slow it).", ""]
  out += table_lines(rows)
  out += ["", f"![dataset build scaling]({png_rel})", README_END]
  return "\n".join(out)


def plot(rows: list[dict], path: str | os.PathLike) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  rows = sorted(rows, key=lambda r: r["events_generated"])
  xs = [r["events_generated"] for r in rows]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  axes[0].plot(xs, [r["rows_per_second"] or 0 for r in rows], "o-")
  axes[0].set(xscale="log", xlabel="events in the log", ylabel="rows / s",
              title="Build throughput", ylim=(0, None))
  axes[1].plot(xs, [r["peak_rss_bytes"] / 2**20 for r in rows], "o-", label="build report")
  axes[1].plot(xs, [r["child_peak_rss_bytes"] / 2**20 for r in rows], "s--",
               label="subprocess (wait4)")
  axes[1].set(xscale="log", xlabel="events in the log", ylabel="peak RSS (MB)",
              title="Build memory", ylim=(0, None))
  axes[1].legend(loc="lower right")
  for ax in axes:
    ax.minorticks_off()
    ax.set_xticks(xs, [_short(x) for x in xs])
    ax.grid(True, alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def print_table(rows: list[dict]) -> None:
  print(f"{'events':>12} {'users':>10} {'items':>10} {'CSV MB':>8} {'gen s':>7} {'build s':>8} "
        f"{'rows/s':>10} {'RSS MB':>7} {'child MB':>8} {'load':>5}")
  for r in sorted(rows, key=lambda r: r["events_generated"]):
    print(f"{r['events_generated']:>12,} {_int(r['users']):>10} {_int(r['items']):>10} "
          f"{mib(r['file_bytes']):>8} {r['generate_seconds']:>7.1f} {r['build_seconds']:>8.1f} "
          f"{r['rows_per_second'] or 0:>10,.0f} {mib(r['peak_rss_bytes']):>7} "
          f"{mib(r['child_peak_rss_bytes']):>8} {r.get('load_before', 0):>5.1f}")


def main(argv: Optional[list[str]] = None) -> list[dict]:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--sizes", help="comma-separated event counts (default 1M,10M,100M; "
                 "--quick: 1M)")
  p.add_argument("--workdir", type=Path, default=Path("/tmp/mpformer_prepare_bench"),
                 help="cached CSV logs and per-size build directories")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--chunk_rows", type=int, default=1_000_000, help="rows per generated block")
  p.add_argument("--timeout", type=float, default=None, help="seconds per build")
  p.add_argument("--generate_only", action="store_true", help="write (or reuse) the logs only")
  p.add_argument("--fresh", action="store_true", help="drop saved rows of other sizes")
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "README.md"))
  args = common.parse_args(p, argv)
  sizes = ([int(float(s)) for s in args.sizes.split(",")] if args.sizes
           else list(QUICK_SIZES if args.quick else SIZES))
  if args.generate_only:
    for n in sizes:
      path, gen = cached_log(args.workdir, n, args.seed, args.chunk_rows)
      print(f"{n:,} events -> {path}: {gen['file_bytes'] / 2**20:,.1f} MB in "
            f"{gen['generate_seconds']:.1f} s ({n / gen['generate_seconds']:,.0f} rows/s"
            f"{', cached' if gen['cached'] else ''})")
    return []
  json_path, png_path = Path(args.out) / "prepare.json", Path(args.out) / "prepare.png"
  saved = [] if args.fresh or not json_path.exists() else json.loads(json_path.read_text())["rows"]
  machine = machine_description()
  rows = [r for r in saved if r["events_generated"] not in sizes or r["seed"] != args.seed]
  for n in sizes:
    rows.append(measure(n, args, machine))
    rows.sort(key=lambda r: r["events_generated"])
    common.write_json(json_path, dict(rows=rows, quick=args.quick))  # Saved size by size.
  plot(rows, png_path)
  print_table(rows)
  if args.update_readme:
    png_rel = os.path.relpath(png_path, os.path.dirname(os.path.abspath(args.readme)))
    common.update_readme_section(args.readme, README_START, README_END,
                                 readme_section(rows, png_rel, args.quick))
  return rows


if __name__ == "__main__":
  main()
