"""Training-step throughput: examples/s, tokens/s, FLOPs and MFU of the real train step.

Answers "what does a longer history cost, and does compression pay for it" (GitHub issue 7,
DESIGN 2.3-2.5). Each row times the library's jitted `make_train_step` (state donated) on a
random valid batch built from a `DatasetSpec` and already on the device: no data-pipeline
cost. Step time = median after warm-up (`common.time_fn`) over rounds that interleave the
rows of a group, so that on a shared machine they all see the same load; compile time is
reported apart. tokens/s counts history tokens (batch * max_len); FLOPs are
`train_flops_per_step`'s; MFU is against the device peak (datasheet bf16 on GPU/TPU; on CPU
the best f32 matmul rate measured on this machine across runs, as contention only lowers
it). A row whose predicted step time (FLOPs / FLOP/s of the biggest row measured) or
compiled memory (`memory_analysis()`) is over budget is recorded as skipped, not run.

Groups: seq_len (64..4096, with and without compression), pool (attention vs mean), batch,
width, depth, objectives (1..8), devices (1..8 forced host devices, each in a subprocess;
batch sharded over a 1-D mesh, params replicated: on a small CPU they share the same cores,
so no speed-up is expected, and each N is timed alone) and breakdown (fwd+bwd of the step's
cumulative stages). Rows saved in `<out>/throughput.json` are skipped (resume) unless
--overwrite.

  python benchmarks/throughput.py [--quick] [--out DIR] [--overwrite] [--update_readme]
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import types
from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

if not __package__:  # Run as `python benchmarks/throughput.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import common
from benchmarks.throughput_report import (README_START, TARGET_RATIO, find, plot, ratios,
                                          readme_section, update_readme)
from mpformer_jax.data import schema
from mpformer_jax.data.synthetic import synthetic_spec
from mpformer_jax.model.compression import POOLS, num_tokens
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.train.flops import device_peak_flops, train_flops_per_step
from mpformer_jax.train.state import (device_batch, init_state, make_loss_fn, make_optimizer,
                                      make_train_step)
# pylint: enable=g-import-not-at-top,wrong-import-position

RAW_ITEMS = 48
KEY_FIELDS = ("config", "max_len", "compression", "pool", "batch_size", "d_model", "num_layers",
              "num_objectives", "num_devices", "dtype")
CONFIGS = {"base": "configs.base", "kuaiformer": "configs.kuaiformer"}


def compression_schedule(max_len: int) -> tuple[tuple[int, int], ...]:
  """KuaiFormer-style schedule for any length, oldest first.

  Going back from the newest item: 48 raw items, then up to 5 windows of 16, up to 2 of 64,
  and windows of 256 for everything older. A span that does not fill whole windows hands
  its rest to the next finer tier and finally to the raw tail (so 48..63 raw items).
  256 -> ((64, 2), (16, 5)) as in the paper; 1024 -> ((256, 3), (64, 2), (16, 5)).
  """
  rest = max(max_len - RAW_ITEMS, 0)
  spans = {16: min(rest, 80), 64: min(max(rest - 80, 0), 128), 256: max(rest - 208, 0)}
  out, carry = [], 0
  for window in (256, 64, 16):
    n, carry = divmod(spans[window] + carry, window)
    if n:
      out.append((window, n))
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class Point:
  """One benchmarked configuration: these knobs over `config`'s default model."""
  max_len: int = 256
  compression: bool = True
  pool: str = "mean"
  batch_size: int = 128
  d_model: int = 64
  num_layers: int = 2
  num_objectives: int = 4
  num_devices: int = 1
  dtype: str = "float32"
  config: str = "base"   # configs/base.py (MPFormer) or configs/kuaiformer.py.
  num_items: int = 0     # item vocabulary; 0: the synthetic platform's (10,000)
  long_history: str = "compress"  # "solar": RAW_ITEMS raw events + SVD-Attention memory
  solar_rank: int = 16


def base_point(quick: bool, dtype: str = "float32", config: str = "base") -> Point:
  """The config file's default training step, the point every group varies one knob of."""
  c = importlib.import_module(CONFIGS[config]).get_config()
  p = Point(max_len=c.data.max_len, compression=bool(c.model.compression.schedule),
            pool=c.model.compression.pool, batch_size=c.train.batch_size,
            d_model=c.model.d_model, num_layers=c.model.num_layers,
            num_objectives=len(c.model.objectives), dtype=dtype, config=config)
  return dataclasses.replace(p, max_len=64, batch_size=16, num_layers=1) if quick else p


def plan(quick: bool, dtype: str) -> list[tuple[str, Point]]:
  """(group, point) pairs of the sweep, cheapest first within each group."""
  rep, base = dataclasses.replace, base_point(quick, dtype)
  if quick:  # Five small rows: every code path, most panels of the plot.
    return [("seq_len", rep(base, compression=False)), ("seq_len", base),
            ("batch", rep(base, batch_size=8)), ("objectives", rep(base, num_objectives=1)),
            ("devices", rep(base, num_devices=2))]
  lens = (64, 128, 256, 512, 1024, 2048, 4096)
  return ([("seq_len", rep(base, max_len=n, compression=c)) for n in lens for c in (False, True)]
          + [("pool", rep(base, max_len=64, compression=False))]  # Ratios within the group.
          + [("pool", rep(base, max_len=n, pool=p)) for n in lens for p in POOLS]
          + [("batch", rep(base, batch_size=b)) for b in (32, 64, 128, 256, 512)]
          + [("width", rep(base, d_model=d)) for d in (32, 64, 128, 256)]
          + [("depth", rep(base, num_layers=n)) for n in (1, 2, 4, 8)]
          + [("objectives", rep(base, num_objectives=o)) for o in (1, 2, 4, 8)]
          + [("devices", rep(base, num_devices=n)) for n in (1, 2, 4, 8)]
          + [("config", rep(base_point(quick, dtype, "kuaiformer"), max_len=n, compression=c))
             for n, c in ((64, False), (256, True), (256, False))])


def key_of(point_or_row) -> str:
  d = point_or_row if isinstance(point_or_row, dict) else dataclasses.asdict(point_or_row)
  return json.dumps({k: d.get(k) for k in KEY_FIELDS}, sort_keys=True)


def build(p: Point):
  """(model, optimizer, config) for a point; the synthetic spec grows to 8 objectives."""
  config = importlib.import_module(CONFIGS[p.config]).get_config()
  spec = synthetic_spec(num_items=p.num_items) if p.num_items else synthetic_spec()
  extra = tuple(f"objective_{i}" for i in range(len(spec.objectives), p.num_objectives))
  spec = dataclasses.replace(spec, objectives=spec.objectives + extra)
  config.loss.objective_weights = (1.0,) * p.num_objectives
  m = config.model
  m.update(d_model=p.d_model, mlp_hidden=m.mlp_hidden * p.d_model // m.d_model,
           num_layers=p.num_layers, objectives=spec.objectives[:p.num_objectives],
           dtype=p.dtype)
  m.compression.update(pool=p.pool, schedule=compression_schedule(p.max_len)
                       if p.compression and p.long_history == "compress" else ())
  m.update(long_history=p.long_history)
  m.solar.update(rank=p.solar_rank, recent=min(RAW_ITEMS, p.max_len - 1))
  cfg = ModelConfig.from_config(m, p.max_len)
  return Retriever(spec, cfg), make_optimizer(config.train), config


def synthetic_batch(spec, batch_size: int, max_len: int, seed: int = 0) -> dict:
  """A valid device batch: left-padded histories of random length, in-vocab features."""
  rng = np.random.default_rng(seed)
  b = batch_size

  def feats(features, *shape):
    return np.stack([rng.integers(0, v, shape) for _, v in features], -1).astype(np.int32)

  lengths = rng.integers(min(20, max_len), max_len + 1, b)
  ids = rng.integers(1, spec.num_items + 1, (b, max_len)).astype(np.int32)
  ids[np.arange(max_len)[None] < (max_len - lengths)[:, None]] = 0
  labels = (rng.random((b, len(spec.objectives))) < 0.5).astype(np.float32)
  labels[0] = 1.0  # Every objective has a positive row.
  return {schema.HISTORY_IDS: ids,
          schema.HISTORY_ITEM_FEATURES: feats(spec.item_features, b, max_len) * (ids > 0)[
              ..., None],
          schema.HISTORY_EVENT_FEATURES: feats(spec.event_features, b, max_len),
          schema.USER_FEATURES: feats(spec.user_features, b),
          schema.TARGET_ID: rng.integers(1, spec.num_items + 1, b).astype(np.int32),
          schema.TARGET_ITEM_FEATURES: feats(spec.item_features, b),
          schema.TARGET_LABELS: labels,
          schema.TARGET_LOGQ: np.log(rng.random(b) * 1e-3 + 1e-5).astype(np.float32)}


def random_state(model, tx, batch, seed: int = 0):
  """A TrainState shaped like init_state's without compiling `model.init` (~8 s a row).

  Floats ~ N(0, 0.02) (GPT-2 style), norm scales 1, so activations stay O(1) as with the
  real initializers; the values do not change the step's cost.
  """
  small = {k: v[:2] for k, v in batch.items()}
  shapes = jax.eval_shape(lambda: init_state(model, tx, small, seed)[0])
  rng = np.random.default_rng(seed)

  def fill(path, x):
    if not jnp.issubdtype(x.dtype, jnp.floating):
      return jnp.zeros(x.shape, x.dtype)
    ones = "scale" in jax.tree_util.keystr(path)
    return jnp.asarray(np.ones(x.shape) if ones else rng.normal(0.0, 0.02, x.shape), x.dtype)

  state = jax.tree_util.tree_map_with_path(fill, shapes)
  return state.replace(opt_state=tx.init(state.params))


def _as_jitted(call, memory_analysis=lambda: None):
  """Lets `common.time_fn` take an already compiled call: `lower(...).compile()` is itself."""
  call.lower = lambda *unused: types.SimpleNamespace(compile=lambda: call)
  call.memory_analysis = memory_analysis
  return call


def _stepper(compiled, state):
  """A compiled step that donates its state, timeable with the same args every call.

  time_fn calls its function with the same arguments each time, but the step deletes its
  input state: each call feeds the state the previous one returned back in instead.
  """
  box = [state]

  def call(batch):
    box[0], metrics = compiled(box[0], batch)
    return metrics
  return _as_jitted(call, compiled.memory_analysis)


def interleaved(jobs: list[tuple], budget_s: float) -> list[dict]:
  """Times (fn, args) jobs in rounds that run each in turn: median, p10, p90 per job.

  On a shared machine, load changes over minutes; interleaving makes every job of a
  comparison see the same load, so the ratios hold even when absolute times drift. Each
  turn is one untimed call and one timed call: the first call after a job with bigger
  buffers pays ~0.2 s of page faults that a training loop never sees.
  """
  warm = [common.time_fn(fn, *args, warmup=1, iters=1)["median_s"] for fn, args in jobs]
  times = [[] for _ in jobs]
  for _ in range(int(np.clip(budget_s / max(2 * sum(warm), 1e-9), 3, 15))):
    for t, (fn, args) in zip(times, jobs):
      t.append(common.time_fn(fn, *args, warmup=1, iters=1)["median_s"])
  return [dict(median_s=float(np.median(t)), p10_s=float(np.percentile(t, 10)),
               p90_s=float(np.percentile(t, 90)), iters=len(t)) for t in times]


def bytes_accessed(compiled) -> Optional[float]:
  """XLA's estimate of the bytes a compiled step reads and writes (its cost analysis; no
  caches), or None where the backend gives none."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
  return float(cost["bytes accessed"]) if cost and "bytes accessed" in cost else None


def prepare(p: Point, peak: float, max_step_s: float, max_bytes: float,
            rate: Optional[float], mesh: bool = False) -> tuple[dict, Optional[tuple]]:
  """(row, (step, args) to time, or None when skipped); `mesh`: data parallel."""
  model, tx, config = build(p)
  cfg = model.cfg
  flops = train_flops_per_step(cfg, model.spec, p.batch_size)
  rate = rate or 0.1 * peak
  row = dict(dataclasses.asdict(p), schedule=cfg.schedule, num_heads=cfg.num_heads,
             mlp_hidden=cfg.mlp_hidden, flops_per_step=flops, peak_flops=peak,
             predicted_step_s=flops / rate, backbone_tokens=1 + num_tokens(
                 cfg.schedule, cfg.backbone_len) + p.num_objectives * cfg.num_queries)
  if flops / rate > max_step_s:
    return dict(row, status="skipped", skip_reason=f"predicted {flops / rate:.0f} s/step > "
                f"{max_step_s:g} s at {rate / 1e9:.1f} GFLOP/s"), None
  batch = device_batch(synthetic_batch(model.spec, p.batch_size, p.max_len))
  step = make_train_step(model, tx, config)
  repl, data = None, None
  if mesh:
    devices = Mesh(np.array(jax.devices()[:p.num_devices]), ("data",))
    repl = NamedSharding(devices, PartitionSpec())
    data = NamedSharding(devices, PartitionSpec("data"))
    step = jax.jit(step, in_shardings=(repl, data), out_shardings=repl, donate_argnums=0)
  batch = jax.device_put(batch, data)
  t0 = time.perf_counter()
  compiled = step.lower(jax.eval_shape(lambda: random_state(model, tx, batch)), batch).compile()
  row["compile_s"] = time.perf_counter() - t0
  row["bytes_accessed"] = bytes_accessed(compiled)
  mem = compiled.memory_analysis()
  need = 0 if mem is None else (mem.argument_size_in_bytes + mem.temp_size_in_bytes
                                + mem.output_size_in_bytes - mem.alias_size_in_bytes)
  row["predicted_bytes"] = need
  row["temp_bytes"] = None if mem is None else int(mem.temp_size_in_bytes)
  if need > max_bytes:
    return dict(row, status="skipped", skip_reason=f"needs {need / 2**30:.1f} GiB > "
                f"{max_bytes / 2**30:.1f} GiB"), None
  state = jax.device_put(random_state(model, tx, batch), repl)
  return row, (_stepper(compiled, state), (batch,))


def finish(row: dict, stats: dict) -> dict:
  """A prepared row with its timing and the rates derived from it."""
  t, b, flops = stats["median_s"], row["batch_size"], row["flops_per_step"]
  return dict(row, status="ok", step_time_s=t, p10_s=stats["p10_s"], p90_s=stats["p90_s"],
              iters=stats["iters"], examples_per_sec=b / t, tokens_per_sec=b * row["max_len"] / t,
              flops_per_sec=flops / t, mfu=flops / t / row["peak_flops"])


def measure(points: list[Point], peak: float, args, rate_of, mesh: bool = False) -> list[dict]:
  """Prepares every point, then times the runnable ones interleaved (see `interleaved`)."""
  prepared = [prepare(p, peak, args.max_step_s, args.max_mem_gb * 2**30, rate_of(p), mesh)
              for p in points]
  live = [i for i, (_, job) in enumerate(prepared) if job]
  stats = dict(zip(live, interleaved([prepared[i][1] for i in live], args.budget_s)))
  return [finish(row, stats[i]) if i in stats else row for i, (row, _) in enumerate(prepared)]


def breakdown(points: list[Point], budget_s: float) -> list[dict]:
  """fwd+bwd time of cumulative stages: embed, +compression, +backbone, +loss, full step.

  The difference between consecutive stages is the marginal cost of a part. All stages of
  all points are timed interleaved.
  """
  jobs, names = [], []
  for p in points:
    model, tx, config = build(p)
    batch = jax.device_put(device_batch(synthetic_batch(model.spec, p.batch_size, p.max_len)))
    state = random_state(model, tx, batch)

    def tokens(m, b):
      return m.token_embedder(m.item_table(b[schema.HISTORY_IDS]),
                              b[schema.HISTORY_ITEM_FEATURES], b[schema.HISTORY_EVENT_FEATURES])

    def compressed(m, b):
      groups, _, raw, _ = m.compressor(tokens(m, b), b[schema.HISTORY_IDS] > 0)
      return jnp.sum(raw) + (0.0 if groups is None else jnp.sum(groups))

    apply = lambda f, model=model: lambda q, b: model.apply({"params": q}, b, method=f)
    stages = (("embed: item table + token MLP", apply(lambda m, b: jnp.sum(tokens(m, b)))),
              ("+ compression (group encoders)", apply(compressed)),
              ("+ user token, backbone, head", apply(lambda m, b: jnp.sum(
                  m.user_embeddings(b)))),
              ("+ item tower, in-batch loss", make_loss_fn(model, config)))
    for name, fn in stages:
      grad = jax.jit(jax.grad(fn, has_aux=name.startswith("+ item")))
      jobs.append((_as_jitted(grad.lower(state.params, batch).compile()),
                   (state.params, batch)))
      names.append((p, name))
    compiled = make_train_step(model, tx, config).lower(state, batch).compile()
    jobs.append((_stepper(compiled, random_state(model, tx, batch)), (batch,)))
    names.append((p, "full train step (+ AdamW update)"))
  rows, prev = [], {}
  for (p, name), stats in zip(names, interleaved(jobs, budget_s)):
    t = stats["median_s"]
    rows.append(dict(dataclasses.asdict(p), group="breakdown", stage=name, status="ok",
                     step_time_s=t, marginal_s=t - prev.get(key_of(p), 0.0)))
    prev[key_of(p)] = t
  return rows


def run_worker(p: Point, args, peak: float, rate: Optional[float]) -> dict:
  """Measures a devices point in a subprocess with N forced host devices (CPU)."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={p.num_devices}").strip()
  job = json.dumps(dict(point=dataclasses.asdict(p), peak=peak, rate=rate))
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", job] + [
      f"--{k}={getattr(args, k)}" for k in ("max_step_s", "max_mem_gb", "budget_s")],
                        env=env, capture_output=True, text=True, timeout=1800, check=False)
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
  if proc.returncode or not lines:
    return dict(dataclasses.asdict(p), status="failed", skip_reason=proc.stderr[-2000:])
  return json.loads(lines[-1][4:])


def machine_description() -> dict:
  cpu = platform.processor() or platform.machine()
  if os.path.exists("/proc/cpuinfo"):  # Linux: the CPU model name.
    with open("/proc/cpuinfo") as f:
      cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
  return dict(common.device_description(), cpu=cpu, cores=len(os.sched_getaffinity(0)))


TABLE_HEADER = (f"{'group':<10} {'L':>5} {'cmp':>3} {'pool':>4} {'B':>4} {'d':>4} {'nl':>2} "
                f"{'O':>2} {'dev':>3} {'step ms':>9} {'ex/s':>7} {'tok/s':>8} {'GFLOP':>7} "
                f"{'GFLOP/s':>7} {'MFU%':>5} {'comp s':>6}")


def _fmt(r: dict) -> str:
  head = (f"{r['group']:<10} {r['max_len']:>5} {'y' if r['compression'] else 'n':>3} "
          f"{r['pool'][:4]:>4} {r['batch_size']:>4} {r['d_model']:>4} {r['num_layers']:>2} "
          f"{r['num_objectives']:>2} {r['num_devices']:>3}")
  if r.get("stage"):
    return f"{head} {1e3 * r['step_time_s']:9.1f}  fwd+bwd of {r['stage']}"
  if r["status"] != "ok":
    return f"{head}  {r['status']}: {str(r.get('skip_reason', ''))[-300:]}"
  return (f"{head} {1e3 * r['step_time_s']:9.1f} {r['examples_per_sec']:7.0f} "
          f"{r['tokens_per_sec']:8.0f} {r['flops_per_step'] / 1e9:7.2f} "
          f"{r['flops_per_sec'] / 1e9:7.1f} {100 * r['mfu']:5.1f} {r['compile_s']:6.1f}")


def _rate_near(rows: list[dict], p: Point) -> Optional[float]:
  """FLOP/s of the biggest measured row with p's compression: predicts p's step time."""
  like = [r for r in rows if r["status"] == "ok" and r.get("flops_per_sec")
          and r["compression"] == p.compression]
  return max(like, key=lambda r: r["flops_per_step"])["flops_per_sec"] if like else None


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--max_step_s", type=float, default=None,
                 help="skip rows predicted slower than this (default 40; quick 5)")
  p.add_argument("--budget_s", type=float, default=None,
                 help="timing seconds per group, interleaved (default 60; quick 3)")
  p.add_argument("--max_mem_gb", type=float, default=8.0,
                 help="skip rows whose compiled step needs more memory than this")
  p.add_argument("--groups", nargs="*", help="only these groups (breakdown included)")
  p.add_argument("--overwrite", action="store_true",
                 help="re-measure the selected groups' rows already saved")
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "README.md"))
  p.add_argument("--worker", help=argparse.SUPPRESS)  # Internal: one devices point as JSON.
  args = common.parse_args(p, argv)
  args.max_step_s = args.max_step_s or (5.0 if args.quick else 40.0)
  args.budget_s = args.budget_s or (3.0 if args.quick else 60.0)
  return args


def main(argv: Optional[list[str]] = None) -> list[dict]:
  """Runs the sweep (resuming from the JSON), writes JSON + PNG (+ README); returns rows."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  args = parse_args(argv)
  if args.worker:
    job = json.loads(args.worker)
    rows = measure([Point(**job["point"])], job["peak"], args, lambda p: job["rate"], True)
    print("ROW " + json.dumps(rows[0], default=float), flush=True)
    return rows
  json_path = os.path.join(args.out, "throughput.json")
  rows = []
  if os.path.exists(json_path):
    with open(json_path) as f:
      rows = json.load(f)
  groups = set(args.groups or ["breakdown"] + [g for g, _ in plan(args.quick, args.dtype)])
  todo = [(g, p) for g, p in plan(args.quick, args.dtype) if g in groups]
  base = base_point(args.quick, args.dtype)
  stage_points = [] if args.quick or "breakdown" not in groups else [
      dataclasses.replace(base, max_len=64, compression=False), base,
      dataclasses.replace(base, pool="attention")]
  wanted = {(g, key_of(p)) for g, p in todo} | {("breakdown", key_of(p)) for p in stage_points}
  mine = lambda: [r for r in rows if (r["group"], key_of(r)) in wanted]
  if args.overwrite:  # Re-measure the selected groups; keep the others' rows.
    rows = [r for r in rows if (r["group"], key_of(r)) not in wanted]
  machine, date = machine_description(), datetime.datetime.now().isoformat(timespec="seconds")
  peak, peak_src = device_peak_flops()
  if machine["platform"] == "cpu":  # Contention only lowers a measured peak: keep the best.
    peak = max([peak] + [r["peak_flops"] for r in rows if r.get("peak_flops")
                         and r.get("machine", {}).get("cpu") == machine["cpu"]])
  for r in rows:  # One peak for every MFU on this machine.
    if r.get("flops_per_sec") and r.get("machine", {}).get("cpu") == machine["cpu"]:
      r.update(peak_flops=peak, mfu=r["flops_per_sec"] / peak)
  tqdm.write(f"peak {peak / 1e9:.1f} GFLOP/s ({peak_src}); {machine['cpu']}, "
             f"{machine['cores']} cores\n{TABLE_HEADER}")
  for r in mine():
    tqdm.write(_fmt(r) + "  (saved)")

  def emit(row):
    row = dict(row, machine=machine, date=date, peak_source=peak_src)
    ident = lambda r: (r["group"], key_of(r), r.get("stage"))
    rows[:] = [r for r in rows if ident(r) != ident(row)] + [row]
    common.write_json(json_path, rows)
    tqdm.write(_fmt(row))

  done = {(r["group"], key_of(r)) for r in rows}
  on_cpu, rate_of = machine["platform"] == "cpu", lambda p: _rate_near(rows, p)
  for group in tqdm(list(dict.fromkeys(g for g, _ in todo)), desc="groups"):
    points = [p for g, p in todo if g == group and (g, key_of(p)) not in done]
    if group == "devices" and on_cpu:
      new = [run_worker(p, args, peak, rate_of(p)) for p in points]
    elif group == "devices":
      fits = [p for p in points if p.num_devices <= jax.device_count()]
      new = measure(fits, peak, args, rate_of, mesh=True) + [
          dict(dataclasses.asdict(p), status="skipped", skip_reason="too few devices")
          for p in points if p not in fits]
    else:
      new = measure(points, peak, args, rate_of) if points else []
    for row in new:
      emit(dict(row, group=group))
  missing = [p for p in stage_points if ("breakdown", key_of(p)) not in done]
  if missing:
    for row in breakdown(missing, args.budget_s):
      emit(row)
  common.write_json(json_path, rows)
  png_path = os.path.join(args.out, "throughput.png")
  plot(mine(), png_path, base,
       f"{machine['cpu']}, {machine['cores']} cores, {machine['platform']}")
  for group, rat in (("seq_len", ratios(mine())), ("config", ratios(mine(), "config"))):
    if rat:
      tqdm.write(f"{group}: step time at max_len 256 / 64 uncompressed: " + ", ".join(
          f"{k} {v:.2f}x" for k, v in rat.items()) + f" (target <= {TARGET_RATIO}x compressed)")
  base_key = {k: getattr(base, k) for k in KEY_FIELDS}
  d = find(mine(), **base_key)
  if d:
    tqdm.write(f"default step (batch {base.batch_size}, max_len {base.max_len}): MFU "
               f"{d['mfu']:.1%} of {d['peak_flops'] / 1e9:.1f} GFLOP/s ({peak_src})")
  if args.update_readme and mine():
    flags = (" --quick" if args.quick else "") + (
        f" --dtype {args.dtype}" if args.dtype != "float32" else "")
    meta = dict(machine=machine, date=date[:10], flags=flags, peak=peak, peak_source=peak_src,
                base=base_key)
    png_rel = os.path.relpath(png_path, os.path.dirname(os.path.abspath(args.readme)))
    update_readme(args.readme, readme_section(mine(), meta, png_rel))
  return mine()


if __name__ == "__main__":
  main()
