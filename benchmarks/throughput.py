"""Training-step throughput: examples/s, tokens/s, FLOPs and MFU of the real train step.

Answers "what does a longer history cost, and does compression pay for it" (GitHub issue 7,
DESIGN 2.3-2.5). Each row times the library's jitted `make_train_step` (state donated) on a
random but valid batch built directly from a `DatasetSpec` and already on the device, so no
data-pipeline cost is in the timing. Parameters are random with the shapes of `init_state`
(skips compiling `model.init` per row; the values do not change the step's cost).

Step time = median after warm-up (`common.time_fn`; compile reported separately as
`compile_s`). tokens/s counts history tokens, batch * max_len. FLOPs per step are analytic
(`train.flops.train_flops_per_step`); MFU = FLOPs / step time / device peak (measured f32
matmul on CPU, datasheet bf16 on GPU/TPU). Rows whose predicted step time (FLOPs / the
slowest FLOP/s seen so far) or compiled memory (`memory_analysis()`) is over budget are
recorded as skipped, not run.

Groups: seq_len (64..4096, with and without compression), pool (attention vs mean over the
compressed rows), batch, width, depth, objectives (1..8) and devices (1, 2, 4, 8 forced host
devices in subprocesses; batch sharded over a 1-D mesh, params replicated; on a 2-core CPU
more devices only split the same cores, so expect no speed-up), and breakdown (fwd+bwd time
of the step's cumulative stages at the paper's setting).

  python benchmarks/throughput.py [--quick] [--out DIR] [--overwrite] [--update_readme]
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
from typing import Optional

import numpy as np

if not __package__:  # Run as `python benchmarks/throughput.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position

README_START, README_END = "<!-- throughput:start -->", "<!-- throughput:end -->"
RAW_ITEMS, TARGET_RATIO = 48, 1.25
KEY_FIELDS = ("max_len", "compression", "pool", "batch_size", "d_model", "num_layers",
              "num_objectives", "num_devices", "dtype")


def compression_schedule(max_len: int) -> tuple[tuple[int, int], ...]:
  """KuaiFormer-style schedule for any length, oldest first.

  Going back from the newest item: ~48 raw items, then up to 5 windows of 16, then up to 2
  of 64, then as many windows of 256 as fit; what does not fill a whole window is handed to
  the next finer tier and finally to the raw tail (so 48..63 raw). 256 -> ((64, 2), (16, 5))
  as in the paper; 1024 -> ((256, 3), (64, 2), (16, 5)); 64 -> ((16, 1),).
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
  """One benchmarked configuration (everything else is configs/base.py's default model)."""
  max_len: int = 256
  compression: bool = True
  pool: str = "mean"
  batch_size: int = 128
  d_model: int = 64
  num_layers: int = 2
  num_objectives: int = 1
  num_devices: int = 1
  dtype: str = "float32"


def plan(quick: bool, dtype: str) -> list[tuple[str, Point]]:
  """(group, point) pairs of the sweep, cheapest first within each group."""
  base = Point(batch_size=16, num_layers=1, dtype=dtype) if quick else Point(dtype=dtype)
  rep = dataclasses.replace
  lens = (64, 128) if quick else (64, 128, 256, 512, 1024, 2048, 4096)
  out = [("seq_len", rep(base, max_len=n, compression=c)) for n in lens for c in (False, True)]
  if not quick:
    out += [("pool", rep(base, max_len=n, pool=p)) for n in lens for p in ("mean", "attention")]
  out += [("batch", rep(base, batch_size=b)) for b in ((8, 16) if quick else (32, 64, 128, 256,
                                                                               512))]
  if not quick:
    out += [("width", rep(base, d_model=d)) for d in (32, 64, 128, 256)]
    out += [("depth", rep(base, num_layers=n)) for n in (1, 2, 4, 8)]
  out += [("objectives", rep(base, num_objectives=o)) for o in ((1, 2) if quick else (1, 2, 4, 8))]
  out += [("devices", rep(base, num_devices=n)) for n in ((2,) if quick else (1, 2, 4, 8))]
  return out


def key_of(point_or_row) -> str:
  d = point_or_row if isinstance(point_or_row, dict) else dataclasses.asdict(point_or_row)
  return json.dumps({k: d[k] for k in KEY_FIELDS}, sort_keys=True)


def bench_spec(num_objectives: int):
  """The synthetic DatasetSpec, with extra label columns when more than its 4 objectives."""
  from mpformer_jax.data.synthetic import synthetic_spec  # pylint: disable=g-import-not-at-top
  spec = synthetic_spec()
  extra = tuple(f"objective_{i}" for i in range(len(spec.objectives), num_objectives))
  return dataclasses.replace(spec, objectives=spec.objectives + extra)


def build(p: Point):
  """(model, optimizer, train config) for a point, from configs/base.py's defaults."""
  from configs.base import get_config  # pylint: disable=g-import-not-at-top
  from mpformer_jax.model.compression import validate_schedule  # pylint: disable=g-import-not-at-top
  from mpformer_jax.model.retriever import ModelConfig, Retriever  # pylint: disable=g-import-not-at-top
  from mpformer_jax.train.state import make_optimizer  # pylint: disable=g-import-not-at-top
  config = get_config()
  m, spec = config.model, bench_spec(p.num_objectives)
  config.loss.objective_weights = (1.0,) * p.num_objectives
  schedule = compression_schedule(p.max_len) if p.compression else ()
  wide = p.d_model / m.d_model
  cfg = ModelConfig(max_len=p.max_len, d_model=p.d_model, num_layers=p.num_layers,
                    num_heads=m.num_heads, mlp_hidden=int(m.mlp_hidden * wide),
                    item_embed_dim=m.item_embed_dim, feature_dim=m.feature_dim,
                    num_queries=m.num_queries, output_dim=m.output_dim,
                    objectives=spec.objectives[:p.num_objectives],
                    schedule=validate_schedule(schedule, p.max_len), pool=p.pool,
                    impl=m.compression.impl, dtype=p.dtype)
  return Retriever(spec, cfg), make_optimizer(config.train), config


def synthetic_batch(spec, batch_size: int, max_len: int, seed: int = 0) -> dict:
  """A valid device batch: left-padded histories of random length, in-vocab features."""
  from mpformer_jax.data import schema as s  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  feats = lambda f, *shape: np.stack([rng.integers(0, v, shape) for _, v in f], -1).astype(
      np.int32)
  lengths = rng.integers(min(20, max_len), max_len + 1, batch_size)
  ids = rng.integers(1, spec.num_items + 1, (batch_size, max_len)).astype(np.int32)
  ids[np.arange(max_len)[None] < (max_len - lengths)[:, None]] = 0
  labels = (rng.random((batch_size, len(spec.objectives))) < 0.5).astype(np.float32)
  labels[0] = 1.0  # Every objective has a positive row.
  return {s.HISTORY_IDS: ids, s.HISTORY_ITEM_FEATURES: feats(spec.item_features, batch_size,
                                                               max_len) * (ids > 0)[..., None],
          s.HISTORY_EVENT_FEATURES: feats(spec.event_features, batch_size, max_len),
          s.USER_FEATURES: feats(spec.user_features, batch_size),
          s.TARGET_ID: rng.integers(1, spec.num_items + 1, batch_size).astype(np.int32),
          s.TARGET_ITEM_FEATURES: feats(spec.item_features, batch_size),
          s.TARGET_LABELS: labels,
          s.TARGET_LOGQ: np.log(rng.random(batch_size) * 1e-3 + 1e-5).astype(np.float32)}


def random_state(model, tx, batch, seed: int = 0):
  """A TrainState with init_state's shapes: random params, fresh optimizer state."""
  import jax  # pylint: disable=g-import-not-at-top
  from mpformer_jax.train.state import init_state  # pylint: disable=g-import-not-at-top
  small = {k: v[:2] for k, v in batch.items()}
  shapes = jax.eval_shape(lambda: init_state(model, tx, small, seed)[0])
  rng = np.random.default_rng(seed)
  fill = lambda s: (np.asarray(rng.normal(0.0, 0.02, s.shape), s.dtype)
                    if np.issubdtype(s.dtype, np.floating) else np.zeros(s.shape, s.dtype))
  state = jax.tree.map(fill, shapes)
  params = jax.tree.map(jax.numpy.asarray, state.params)
  return state.replace(params=params, opt_state=tx.init(params))


class _Stepper:
  """Adapts a compiled, state-donating step to `common.time_fn`'s `lower().compile()` API.

  time_fn calls its function with the same arguments each time, but the step donates (and
  so deletes) its input state; this carries the returned state into the next call instead.
  """

  def __init__(self, compiled, state):
    self.compiled, self.state = compiled, state

  def lower(self, *unused):
    return self

  def compile(self):
    return self

  def memory_analysis(self):
    return self.compiled.memory_analysis()

  def __call__(self, batch):
    self.state, metrics = self.compiled(self.state, batch)
    return metrics


def measure(p: Point, peak: float, max_step_s: float, max_bytes: float,
            slowest_rate: Optional[float], mesh: bool = False) -> dict:
  """Times one point in this process; `mesh`: data parallel over num_devices devices."""
  import time  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from mpformer_jax.model.compression import num_tokens  # pylint: disable=g-import-not-at-top
  from mpformer_jax.train.flops import train_flops_per_step  # pylint: disable=g-import-not-at-top
  from mpformer_jax.train.state import make_train_step  # pylint: disable=g-import-not-at-top
  model, tx, config = build(p)
  cfg = model.cfg
  flops = train_flops_per_step(cfg, model.spec, p.batch_size)
  row = dict(dataclasses.asdict(p), schedule=cfg.schedule, num_heads=cfg.num_heads,
             mlp_hidden=cfg.mlp_hidden, flops_per_step=flops, peak_flops=peak,
             backbone_tokens=1 + num_tokens(cfg.schedule, p.max_len) + p.num_objectives *
             cfg.num_queries)
  rate = slowest_rate or 0.1 * peak
  row["predicted_step_s"] = flops / rate
  if row["predicted_step_s"] > max_step_s:
    return dict(row, status="skipped", skip_reason=f"predicted {flops / rate:.0f} s/step > "
                f"{max_step_s:g} s at {rate / 1e9:.1f} GFLOP/s")
  batch = synthetic_batch(model.spec, p.batch_size, p.max_len)
  from mpformer_jax.train.state import device_batch  # pylint: disable=g-import-not-at-top
  batch = device_batch(batch)
  step = make_train_step(model, tx, config)
  state_shapes = jax.eval_shape(lambda: random_state(model, tx, batch))
  if mesh:
    devices = Mesh(np.array(jax.devices()[:p.num_devices]), ("data",))
    repl, data = NamedSharding(devices, P()), NamedSharding(devices, P("data"))
    step = jax.jit(step, in_shardings=(repl, data), out_shardings=repl, donate_argnums=0)
    batch = jax.device_put(batch, data)
  else:
    batch, repl = jax.device_put(batch), None
  t0 = time.perf_counter()
  compiled = step.lower(state_shapes, batch).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  need = (mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes
          - mem.alias_size_in_bytes) if mem is not None else 0
  row.update(compile_s=compile_s, predicted_bytes=need)
  if need > max_bytes:
    return dict(row, status="skipped",
                skip_reason=f"needs {need / 2**30:.1f} GiB > {max_bytes / 2**30:.1f} GiB")
  state = random_state(model, tx, batch)
  if repl is not None:
    state = jax.device_put(state, repl)
  pred = row["predicted_step_s"]
  iters = int(np.clip(6.0 / pred, 3, 10))
  stats = common.time_fn(_Stepper(compiled, state), batch, warmup=1 if pred > 3 else 2,
                         iters=iters)
  t = stats["median_s"]
  return dict(row, status="ok", step_time_s=t, p10_s=stats["p10_s"], p90_s=stats["p90_s"],
              iters=stats["iters"], examples_per_sec=p.batch_size / t,
              tokens_per_sec=p.batch_size * p.max_len / t, flops_per_sec=flops / t,
              mfu=flops / t / peak, peak_bytes=stats["peak_bytes"])


def breakdown(p: Point) -> list[dict]:
  """fwd+bwd time of the step's cumulative stages: embed, +compress, +backbone, +loss.

  Differences between consecutive stages are the marginal cost of each part (no optimizer
  update; the full step's row has that).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mpformer_jax.data import schema as s  # pylint: disable=g-import-not-at-top
  from mpformer_jax.train.state import device_batch, make_loss_fn  # pylint: disable=g-import-not-at-top
  model, tx, config = build(p)
  batch = jax.device_put(device_batch(synthetic_batch(model.spec, p.batch_size, p.max_len)))
  params = random_state(model, tx, batch).params

  def tokens(m, b):
    return m.token_embedder(m.item_table(b[s.HISTORY_IDS]), b[s.HISTORY_ITEM_FEATURES],
                            b[s.HISTORY_EVENT_FEATURES])

  def compressed(m, b):
    groups, _, raw, _ = m.compressor(tokens(m, b), b[s.HISTORY_IDS] > 0)
    return jnp.sum(raw) + (0.0 if groups is None else jnp.sum(groups))

  stages = (("embed: item table + token MLP", lambda m, b: jnp.sum(tokens(m, b))),
            ("+ compression (group encoders)", compressed),
            ("+ user token, backbone, head", lambda m, b: jnp.sum(m.user_embeddings(b))))
  fns = [lambda q, b, f=f: model.apply({"params": q}, b, method=f) for _, f in stages]
  fns.append(lambda q, b: make_loss_fn(model, config)(q, b)[0])
  names = [n for n, _ in stages] + ["+ item tower, in-batch loss"]
  rows, prev = [], 0.0
  for name, fn in zip(names, fns):
    t = common.time_fn(jax.jit(jax.grad(fn)), params, batch, iters=5)["median_s"]
    rows.append(dict(dataclasses.asdict(p), group="breakdown", stage=name, status="ok",
                     step_time_s=t, marginal_s=t - prev, compile_s=None,
                     examples_per_sec=p.batch_size / t))
    prev = t
  return rows


def run_worker(p: Point, args, peak: float, rate: Optional[float]) -> dict:
  """Measures a devices point in a subprocess with N forced host devices (CPU)."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={p.num_devices}").strip()
  job = dict(point=dataclasses.asdict(p), peak=peak, rate=rate, max_step_s=args.max_step_s,
             max_bytes=args.max_mem_gb * 2**30)
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)],
                        env=env, capture_output=True, text=True, timeout=1800, check=False)
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
  if proc.returncode or not lines:
    return dict(dataclasses.asdict(p), status="failed", skip_reason=proc.stderr[-2000:])
  return json.loads(lines[-1][4:])


def machine_description() -> dict:
  cpu = platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
  except OSError:
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return dict(common.device_description(), cpu=cpu, cores=cores)


def _fmt(r: dict) -> str:
  head = (f"{r['group']:<10} {r['max_len']:>5} {'y' if r['compression'] else 'n':>4} "
          f"{r['pool'][:4]:>4} {r['batch_size']:>4} {r['d_model']:>4} {r['num_layers']:>2} "
          f"{r['num_objectives']:>2} {r['num_devices']:>3}")
  if r.get("stage"):
    return f"{head}  {1e3 * r['step_time_s']:9.1f} ms fwd+bwd  {r['stage']}"
  if r["status"] != "ok":
    return f"{head}  {r['status']}: {str(r.get('skip_reason', ''))[-120:]}"
  return (f"{head} {1e3 * r['step_time_s']:9.1f} {r['examples_per_sec']:8.0f} "
          f"{r['tokens_per_sec']:9.0f} {r['flops_per_step'] / 1e9:8.2f} "
          f"{r['flops_per_sec'] / 1e9:7.1f} {100 * r['mfu']:5.1f} {r['compile_s']:6.1f}")


TABLE_HEADER = (f"{'group':<10} {'L':>5} {'comp':>4} {'pool':>4} {'B':>4} {'d':>4} {'nl':>2} "
                f"{'O':>2} {'dev':>3} {'step ms':>9} {'ex/s':>8} {'tok/s':>9} {'GFLOP':>8} "
                f"{'GFLOP/s':>7} {'MFU%':>5} {'cmp s':>6}")


def find(rows: list[dict], **kw) -> Optional[dict]:
  return next((r for r in rows if r["status"] == "ok" and not r.get("stage")
               and all(r[k] == v for k, v in kw.items())), None)


def ratios(rows: list[dict]) -> dict:
  """Step time at 256 (with / without compression) over 64 without, same batch."""
  base = find(rows, group="seq_len", max_len=64, compression=False)
  out = {}
  for comp in (True, False):
    r = find(rows, group="seq_len", max_len=256, compression=comp)
    if base and r:
      out["compressed" if comp else "uncompressed"] = r["step_time_s"] / base["step_time_s"]
  return out


def plot(rows: list[dict], path: str) -> None:
  """Step time vs max_len (log-log) and examples/s against each swept knob."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  ok = [r for r in rows if r["status"] == "ok" and not r.get("stage")]
  fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
  ax = axes[0, 0]
  for label, sel in (("no compression", dict(compression=False)),
                     ("compression, pool=mean", dict(compression=True, pool="mean")),
                     ("compression, pool=attention", dict(compression=True, pool="attention"))):
    pts = sorted((r["max_len"], r["step_time_s"]) for r in ok
                 if r["group"] in ("seq_len", "pool") and all(r[k] == v for k, v in sel.items()))
    pts = sorted(set(pts))
    if pts:
      ax.plot(*zip(*pts), "o-", label=label)
  skipped = [r for r in rows if r["group"] == "seq_len" and r["status"] == "skipped"]
  if skipped:
    ax.plot([r["max_len"] for r in skipped], [r["predicted_step_s"] for r in skipped], "x",
            color="gray", label="skipped (predicted)")
  ax.set(xscale="log", yscale="log", xlabel="history length max_len (items)",
         ylabel="train step time (s, median)", title="Step time vs history length")
  ax.set_xticks([64, 128, 256, 512, 1024, 2048, 4096], ["64", "128", "256", "512", "1k", "2k",
                                                         "4k"])
  ax.legend(fontsize=8)
  panels = (("batch", "batch_size", "batch size (examples)", True),
            ("width", "d_model", "d_model (mlp_hidden = 3 d_model)", True),
            ("depth", "num_layers", "backbone layers", False),
            ("objectives", "num_objectives", "objectives (4 query tokens each)", False),
            ("devices", "num_devices", "forced host devices (data parallel)", False))
  for ax, (group, field, xlabel, logx) in zip(axes.flat[1:], panels):
    pts = sorted((r[field], r["examples_per_sec"]) for r in ok if r["group"] == group)
    if pts:
      ax.plot(*zip(*pts), "o-")
      for x, y in pts:
        ax.annotate(f"{y:,.0f}", (x, y), fontsize=7, xytext=(3, 4), textcoords="offset points")
    ax.set(xlabel=xlabel, ylabel="throughput (examples/s)", title=f"Examples/s vs {group}",
           ylim=(0, 1.15 * max([y for _, y in pts] or [1])))
    if logx:
      ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({x for x, _ in pts}) or [1], [str(x) for x in sorted({x for x, _ in pts})]
                  or ["1"])
  for ax in axes.flat:
    ax.grid(True, alpha=0.3)
  fig.suptitle("Train-step throughput (L=256 compressed, batch 128, d=64, 2 layers unless "
               "varied)", fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def readme_section(rows: list[dict], meta: dict, png_rel: str) -> str:
  """Markdown between the throughput markers: headline ratios, table, breakdown, plot."""
  m, rat = meta["machine"], ratios(rows)
  out = [README_START, "## Training throughput", "",
         f"`python benchmarks/throughput.py{meta['flags']}` on {m['cpu']} ({m['cores']} cores, "
         f"jax {m['jax_version']} {m['platform']}), {meta['date']}. Real jitted train step "
         f"(AdamW, state donated) on random valid batches already on the device (no input "
         f"pipeline); median step time after warm-up, compile excluded. FLOPs: analytic "
         f"(`train/flops.py`); MFU against {meta['peak_source']} "
         f"{meta['peak'] / 1e9:.1f} GFLOP/s. Compression schedule per length: "
         f"`compression_schedule` (~48 raw items, then 16-, 64-, 256-windows).", ""]
  if rat:
    c, u = rat.get("compressed"), rat.get("uncompressed")
    verdict = "" if c is None else ("meets" if c <= TARGET_RATIO else "does **not** meet")
    out.append(f"**Step time at max_len=256 / at max_len=64 without compression (batch "
               f"128): {c:.2f}x with compression** ({verdict} the <= {TARGET_RATIO}x target; "
               f"KuaiFormer reports +10%), {u:.2f}x without.")
  d = find(rows, group="seq_len", max_len=256, compression=True)
  if d:
    out.append(f"Default step (configs/base.py model, batch 128, max_len 256): "
               f"{1e3 * d['step_time_s']:.0f} ms, {d['flops_per_sec'] / 1e9:.1f} GFLOP/s, "
               f"MFU {100 * d['mfu']:.1f}%.")
  out += ["", "| group | max_len | compr. | pool | batch | d_model | layers | objectives | "
          "devices | step (ms) | examples/s | tokens/s | GFLOP/step | MFU | compile (s) |",
          "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    if r.get("stage"):
      continue
    cols = (f"| {r['group']} | {r['max_len']} | {'yes' if r['compression'] else 'no'} | "
            f"{r['pool']} | {r['batch_size']} | {r['d_model']} | {r['num_layers']} | "
            f"{r['num_objectives']} | {r['num_devices']} |")
    if r["status"] == "ok":
      out.append(f"{cols} {1e3 * r['step_time_s']:,.0f} | {r['examples_per_sec']:,.0f} | "
                 f"{r['tokens_per_sec']:,.0f} | {r['flops_per_step'] / 1e9:.1f} | "
                 f"{100 * r['mfu']:.1f}% | {r['compile_s']:.1f} |")
    else:
      out.append(f"{cols} {r['status']}: {r.get('skip_reason', '')[:80]} | | | | | |")
  stages = [r for r in rows if r.get("stage")]
  if stages:
    out += ["", "Where the time goes (fwd+bwd of cumulative stages, no optimizer; batch 128):",
            "", "| max_len | compression | stage | cumulative (ms) | marginal (ms) |",
            "|---:|---|---|---:|---:|"]
    out += [f"| {r['max_len']} | {'yes' if r['compression'] else 'no'} | {r['stage']} | "
            f"{1e3 * r['step_time_s']:.0f} | {1e3 * r['marginal_s']:.0f} |" for r in stages]
  out += ["", "Forced host devices split the same 2 CPU cores, so more devices cannot be "
          "faster here; the devices rows only check that data-parallel sharding works."
          if m["platform"] == "cpu" else "", f"![throughput benchmark]({png_rel})", README_END]
  return "\n".join(out)


def update_readme(path: str, section: str) -> None:
  """Replaces only the text between the throughput markers (appends it if absent)."""
  text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
  if README_START in text and README_END in text:
    head, rest = text.split(README_START, 1)
    text = head + section + rest.split(README_END, 1)[1]
  else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
  with open(path, "w") as f:
    f.write(text)
