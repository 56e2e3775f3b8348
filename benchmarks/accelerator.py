"""The accelerator suite: what a short GPU or TPU window should measure, in one command.

  python benchmarks/accelerator.py [--quick] [--out DIR] [--update_readme]

Accelerator time comes in windows of minutes, so this script is prepared in advance and
bounded: each part has a budget, printed when it starts, measures its cases in order of
importance and records the rest as skipped once the budget is spent (a case already running
finishes). A case that fails to compile or run is recorded with its error and the suite goes
on. On one H100/H200 the parts are budgeted at 180 + 180 + 100 s, under 8 minutes in all.

1. kernel: the Pallas compress-attention kernel (`mpformer_jax/kernels`) against its XLA
   reference at 4,096 and 16,384 history positions (batch 16, 4 heads of 64, bf16, the
   "mixed" 256/64/16 windows of benchmarks/kernels.py): parity of the forward pass and the
   gradients for every BlockSizes of a small grid, fwd+bwd median time and compiled temp
   bytes of the reference and of each BlockSizes, and the fastest BlockSizes kept per shape.
2. step: the bf16 train step (model.dtype="bfloat16", params f32) of configs/base.py and of
   a production-size model (d_model 512, 4 layers, max_len 1,024 compressed, batch 1,024,
   a 10M-item table): median step time, analytic FLOPs (`train/flops.py`), MFU against the
   device's bf16 datasheet peak, and the compiled step's temp bytes beside the same step's
   compiled in f32 (never run), which shows what bf16 activations save on the device.
3. retrieval: exact top-200 on the device (`retrieval/exact.py`, blocked over items) over
   1M and 10M clustered synthetic items (benchmarks/retrieval.py's generator, 4 interests
   per user) against ScaNN on the host (library defaults for N): users/s and ScaNN's
   recall@100 against the exact result.

`--quick` runs every part at toy sizes on the CPU (the kernel in Pallas interpret mode, whose
times say nothing about speed) in about a minute; the default test run includes it, so the
suite cannot rot between accelerator windows. Writes <out>/accelerator.json and .png;
`--update_readme` writes the "Accelerator suite" section of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import sys
import time
import traceback

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

if not __package__:  # Run as `python benchmarks/accelerator.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import accelerator_report, common, kernels, retrieval, throughput
from mpformer_jax.kernels.compress_attention import BlockSizes
from mpformer_jax.retrieval import exact, scann_index
from mpformer_jax.train.flops import device_peak_flops
from mpformer_jax.train.state import abstract_state, device_batch, make_train_step
# pylint: enable=g-import-not-at-top,wrong-import-position

BUDGETS_S = {"kernel": 180.0, "step": 180.0, "retrieval": 100.0}
# --quick exercises every case (its budgets are never meant to bind; the tests check the
# skipping with a zero budget).
QUICK_BUDGETS_S = {"kernel": 600.0, "step": 600.0, "retrieval": 600.0}
# Forward / backward tiles (block_q, block_k, block_q_bwd, block_k_bwd); min_block 64.
BLOCK_GRID = ((64, 64, 32, 32), (128, 128, 64, 64), (128, 64, 64, 32), (64, 128, 32, 64),
              (32, 32, 32, 32))
K = 200


class Budget:
  """Seconds for one part, from when it starts; `spent` once they are used up."""

  def __init__(self, part: str, seconds: float):
    self.part, self.seconds, self.t0 = part, seconds, time.perf_counter()
    print(f"[{part}] budget {seconds:.0f} s", flush=True)

  def elapsed(self) -> float:
    return time.perf_counter() - self.t0

  def spent(self) -> bool:
    return self.left() <= 0

  def left(self) -> float:
    return self.seconds - self.elapsed()

  def skipped(self, reason: str = "", **row) -> dict:
    return dict(row, status="skipped", reason=reason or f"the {self.part} budget of "
                f"{self.seconds:.0f} s was spent ({self.elapsed():.0f} s)")


def _failed(row: dict, err: Exception) -> dict:
  print(f"  failed: {type(err).__name__}: {err}", flush=True)
  return dict(row, status="failed", error=f"{type(err).__name__}: {err}"[:2000],
              traceback=traceback.format_exc()[-2000:])


def block_grid(quick: bool, backend: str) -> list[BlockSizes]:
  """The swept BlockSizes, the backend's default first; on TPU only the Mosaic default
  (static 128 tiles); --quick: the default and one more."""
  default = BlockSizes.get_default(backend)
  if backend == "tpu":
    return [default]
  tiles = ((16, 16, 16, 16),) if quick else BLOCK_GRID
  sweep = [dataclasses.replace(default, block_q=a, block_k=b, block_q_bwd=c, block_k_bwd=d)
           for a, b, c, d in tiles]
  return [default] + [bs for bs in sweep if bs != default]


PARITY_TOL = 1e-4  # f32 max abs error, forward and gradients (tests/kernels use the same)


def kernel_part(quick: bool, budget: Budget) -> dict:
  """fwd+bwd time and memory of the reference and of each BlockSizes that passes parity.

  Most important first: the reference and the default BlockSizes at every length, then the
  rest of the grid. Each BlockSizes is checked (f32 forward and gradients at a small shape)
  before its first timing; one that fails is not timed and cannot be the best.
  """
  backend = jax.default_backend()
  interpret = backend == "cpu"
  dtype = jnp.dtype(jnp.float32 if interpret else jnp.bfloat16)
  lengths, windows = ((128,), (16, 4)) if quick else ((4096, 16384), kernels.WINDOW_MIXES["mixed"])
  batch, heads, dim = (1, 2, 16) if quick else (16, 4, 64)
  iters = 2 if quick else 10
  grid = block_grid(quick, backend)
  parity_schedule = ((16, 2), (4, 4)) if quick else ((64, 2), (16, 5))
  parity: dict[BlockSizes, dict] = {}

  def passes(bs: BlockSizes) -> bool:
    if bs not in parity:
      row = dict(block_sizes=dataclasses.asdict(bs), schedule=parity_schedule)
      try:
        check = kernels.parity(parity_schedule, 1, 2, 32, jnp.float32, interpret, bs)
        ok = max(check["fwd_max_abs_err"], check["grad_max_abs_err"]) < PARITY_TOL
        parity[bs] = dict(row, **check, status="ok" if ok else "mismatch")
      except Exception as err:  # pylint: disable=broad-except  (recorded; the suite goes on)
        parity[bs] = _failed(row, err)
    return parity[bs]["status"] == "ok"

  shapes, inputs = {}, {}
  for length in lengths:
    schedule = kernels.schedule_for(length, windows)
    flops, nbytes = kernels.analytic_cost(schedule, batch, heads, dim, dtype.itemsize, True)
    shapes[length] = dict(length=length, schedule=schedule, batch=batch, heads=heads,
                          dim=dim, dtype=dtype.name, flops=flops, bytes=nbytes)
    inputs[length] = kernels.make_inputs(schedule, batch, heads, dim, dtype)  # every case's
  order = ([(n, "xla", None) for n in lengths] + [(n, "pallas", grid[0]) for n in lengths]
           + [(n, "pallas", bs) for bs in grid[1:] for n in lengths])
  rows = []
  for length, impl, bs in order:
    shape = shapes[length]
    row = dict(shape, impl=impl, block_sizes=bs and dataclasses.asdict(bs))
    if budget.spent():
      rows.append(budget.skipped(**row))
      continue
    if bs is not None and not passes(bs):
      rows.append(dict(row, status="skipped", reason="failed the parity check"))
      continue
    ids, args = inputs[length]
    try:
      fn = kernels.build_fns(ids, "reference" if impl == "xla" else "kernel", interpret,
                             bs)["fwd_bwd"]
      stats = common.time_fn(fn, *args, warmup=1, iters=iters)
    except Exception as err:  # pylint: disable=broad-except
      rows.append(_failed(row, err))
      continue
    rows.append(dict(row, status="ok", **stats,
                     tflops_per_s=shape["flops"] / stats["median_s"] / 1e12))
    tiles = bs and (bs.block_q, bs.block_k, bs.block_q_bwd, bs.block_k_bwd)
    print(f"  T={length} {impl} {tiles}: {stats['median_s'] * 1e3:.2f} ms, "
          f"temp {stats['temp_bytes']} B", flush=True)
  return dict(rows=rows, parity=list(parity.values()), best=best_per_shape(rows),
              timed=not interpret)


def best_per_shape(rows: list[dict]) -> list[dict]:
  """Per length: the fastest Pallas BlockSizes, its speed-up and the memory it saves."""
  out = []
  for length in sorted({r["length"] for r in rows}):
    ok = [r for r in rows if r["length"] == length and r["status"] == "ok"]
    xla = next((r for r in ok if r["impl"] == "xla"), None)
    pallas = [r for r in ok if r["impl"] == "pallas"]
    if not pallas:
      continue
    best = min(pallas, key=lambda r: r["median_s"])
    entry = dict(length=length, block_sizes=best["block_sizes"], pallas_s=best["median_s"])
    if xla:
      entry.update(xla_s=xla["median_s"], speedup=xla["median_s"] / best["median_s"])
      if xla.get("temp_bytes") is not None and best.get("temp_bytes") is not None:
        entry.update(xla_temp_bytes=xla["temp_bytes"], pallas_temp_bytes=best["temp_bytes"],
                     temp_bytes_saved=xla["temp_bytes"] - best["temp_bytes"])
    out.append(entry)
  return out


def step_points(quick: bool) -> list[tuple[str, throughput.Point]]:
  """The default config's bf16 step and a production-size one."""
  base = throughput.base_point(quick, "bfloat16")
  if quick:
    prod = dataclasses.replace(base, d_model=64, num_layers=2, max_len=256, compression=True,
                               batch_size=32, num_items=50_000)
  else:
    prod = dataclasses.replace(base, d_model=512, num_layers=4, max_len=1024,
                               compression=True, batch_size=1024, num_items=10_000_000)
  return [("default", base), ("production", prod)]


def device_bytes_limit(quick: bool) -> float:
  """Device memory the step may use (the allocator's limit when the backend reports it)."""
  try:
    limit = (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
  except Exception:  # pylint: disable=broad-except
    limit = None
  return float(limit or (8 if quick else 64) * 2**30)


def step_part(quick: bool, budget: Budget) -> dict:
  peak, peak_source = device_peak_flops()
  max_bytes, rows = device_bytes_limit(quick), []
  for name, point in step_points(quick):
    base = dict(name=name, **dataclasses.asdict(point))
    if budget.spent():
      rows.append(budget.skipped(**base))
      continue
    try:
      row, job = throughput.prepare(point, peak, max_step_s=30.0, max_bytes=max_bytes,
                                    rate=None)
      if job is not None:
        stepper, args = job
        stats = common.time_fn(stepper, *args, warmup=2, iters=3 if quick else 10)
        row = throughput.finish(row, stats)
    except Exception as err:  # pylint: disable=broad-except
      rows.append(_failed(base, err))
      continue
    # The same step in f32, compiled for its bytes only (--quick: the default point's).
    if row["status"] == "ok" and not budget.spent() and not (quick and name != "default"):
      try:
        row["f32_temp_bytes"] = f32_temp_bytes(point)
      except Exception as err:  # pylint: disable=broad-except
        row["f32_error"] = f"{type(err).__name__}: {err}"[:2000]
    rows.append(dict(row, name=name, peak_source=peak_source))
    if row["status"] == "ok":
      print(f"  {name}: {row['step_time_s'] * 1e3:.1f} ms/step, "
            f"{row['flops_per_step'] / 1e12:.3f} TFLOP/step, MFU {row['mfu']:.1%}, temp "
            f"{row['temp_bytes']} B (f32: {row.get('f32_temp_bytes')} B)", flush=True)
  return dict(rows=rows, peak_flops=peak, peak_source=peak_source)


def f32_temp_bytes(point: throughput.Point) -> int | None:
  """XLA temp bytes of the compiled f32 step (compiled, never run: nothing allocated)."""
  model, tx, config = throughput.build(dataclasses.replace(point, dtype="float32"))
  batch = device_batch(throughput.synthetic_batch(model.spec, point.batch_size, point.max_len))
  abstract = nn.meta.unbox(abstract_state(model, tx, batch)[0])
  return common.compiled_memory(make_train_step(model, tx, config), abstract, batch)["temp_bytes"]


def retrieval_part(quick: bool, budget: Budget) -> dict:
  sizes, num_users = ((10_000, 20_000), 128) if quick else ((1_000_000, 10_000_000), 1024)
  rows, build_s_per_item = [], None
  for n in sizes:
    base = dict(num_items=n, num_users=num_users, k=K)
    if budget.spent():
      rows += [budget.skipped(method=m, **base) for m in ("exact_device", "scann_host")]
      continue
    queries, items = retrieval.synthetic_embeddings(n, num_users)
    try:
      qj, ij = jax.device_put(queries), jax.device_put(items)
      fn = jax.jit(functools.partial(exact.exact_top_k, k=K))
      stats = common.time_fn(fn, qj, ij, warmup=1, iters=3 if quick else 5)
      exact_ids = np.asarray(fn(qj, ij)[1])
      rows.append(dict(base, method="exact_device", status="ok", median_s=stats["median_s"],
                       compile_s=stats["compile_s"], users_per_s=num_users / stats["median_s"],
                       device=jax.devices()[0].device_kind))
      del qj, ij
    except Exception as err:  # pylint: disable=broad-except
      rows.append(_failed(dict(base, method="exact_device"), err))
      continue
    print(f"  {n:,} items exact on {jax.devices()[0].device_kind}: "
          f"{rows[-1]['users_per_s']:,.0f} users/s", flush=True)
    predicted = build_s_per_item * n if build_s_per_item else 0.0  # from the smaller corpus
    if budget.spent() or predicted > budget.left():
      rows.append(budget.skipped(method="scann_host", **base, reason="" if budget.spent() else
                                 f"predicted ScaNN build {predicted:.0f} s > "
                                 f"{budget.left():.0f} s left of the {budget.part} budget"))
      continue
    try:
      t0 = time.perf_counter()
      index = scann_index.build_scann(items, num_neighbors=K)
      build_s = time.perf_counter() - t0
      build_s_per_item = build_s / n
      search = lambda: scann_index.scann_search(index, queries, K)
      ids, _ = search()
      sec = retrieval.median_seconds(search, 3 if quick else 5)
      rows.append(dict(base, method="scann_host", status="ok", median_s=sec, build_s=build_s,
                       users_per_s=num_users / sec, device=common.cpu_model(),
                       recall_at_100=scann_index.recall_at_k(ids, exact_ids, 100)))
    except Exception as err:  # pylint: disable=broad-except
      rows.append(_failed(dict(base, method="scann_host"), err))
      continue
    print(f"  {n:,} items ScaNN on the host: {rows[-1]['users_per_s']:,.0f} users/s, "
          f"recall@100 {rows[-1]['recall_at_100']:.3f}", flush=True)
  return dict(rows=rows)


PARTS = {"kernel": kernel_part, "step": step_part, "retrieval": retrieval_part}


def run(quick: bool, parts=tuple(PARTS)) -> dict:
  budgets = QUICK_BUDGETS_S if quick else BUDGETS_S
  print(f"accelerator suite on {jax.devices()[0].device_kind} ({jax.default_backend()}): "
        + ", ".join(f"{p} {budgets[p]:.0f} s" for p in parts)
        + f", {sum(budgets[p] for p in parts):.0f} s in all", flush=True)
  t0 = time.perf_counter()
  result = dict(benchmark="accelerator", quick=quick, device=common.device_description(),
                host=common.cpu_model(), date=datetime.date.today().isoformat(),
                budgets_s={p: budgets[p] for p in parts}, parts={})
  for part in parts:
    budget = Budget(part, budgets[part])
    result["parts"][part] = dict(PARTS[part](quick, budget), elapsed_s=budget.elapsed())
    print(f"[{part}] done in {budget.elapsed():.0f} s", flush=True)
  result["elapsed_s"] = time.perf_counter() - t0
  print(f"accelerator suite: {result['elapsed_s']:.0f} s", flush=True)
  return result


def main(argv=None) -> dict:
  parser = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  parser.add_argument("--parts", nargs="+", choices=tuple(PARTS), default=tuple(PARTS))
  parser.add_argument("--update_readme", action="store_true")
  parser.add_argument("--readme", default=str(common.DEFAULT_README))
  args = common.parse_args(parser, argv)
  result = run(args.quick, tuple(args.parts))
  common.write_json(args.out / "accelerator.json", result)
  accelerator_report.plot(result, args.out / "accelerator.png")
  for line in accelerator_report.summary_lines(result):
    print(line)
  if args.update_readme:
    png_rel = os.path.relpath(args.out / "accelerator.png", os.path.dirname(
        os.path.abspath(args.readme)))
    accelerator_report.update_readme(args.readme, result, png_rel)
  return result


if __name__ == "__main__":
  main()
