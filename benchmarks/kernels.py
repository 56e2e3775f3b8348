"""Benchmark: Pallas compress_attention vs the pure-jnp reference (DESIGN.md 2.8).

Sweeps the compressed sequence length T (256 .. 16,384 positions split into
groups) and the window mix, timing forward and forward+backward. Writes
`<out>/kernels.json` and `<out>/kernels.png`.

FLOP model (useful work only; the kernel's padding/packing waste is not
counted): per group of window w, per head and batch element, the forward does
QK^T (2 w^2 D) and PV (2 w^2 D), i.e. 4 w^2 D; the backward recomputes QK^T and
adds dV, dP, dS.K and dS^T.Q, about 2.5x the forward, so forward+backward is
3.5x. Bytes are the analytic minimum HBM traffic: forward reads q, k, v and the
mask and writes the [B, G, H, D] output; the backward also reads q, k, v and
the output cotangent and writes dq, dk, dv.

On CPU the kernel only runs in Pallas interpret mode, which says nothing about
speed, so only the reference is timed ("kernel_timed": false) and the kernel is
checked for parity (max abs error vs reference) at small sizes.

Usage: python benchmarks/kernels.py [--quick] [--out DIR] [--dtype bfloat16]
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from benchmarks import common

ca = importlib.import_module("mpformer_jax.kernels.compress_attention")

WINDOW_MIXES = {  # name -> windows, oldest (largest) first.
    "w16": (16,), "w64": (64,), "w256": (256,), "mixed": (256, 64, 16)}


def schedule_for(length: int, windows: tuple[int, ...]) -> tuple:
  """Splits `length` positions: half to the first window, halves of the rest
  to the next ones, the last window takes what remains."""
  sched, left = [], length
  for i, w in enumerate(windows):
    share = left if i == len(windows) - 1 else left // 2
    n = share // w
    if n:
      sched.append((w, n))
      left -= n * w
  return tuple(sched)


def analytic_cost(schedule, batch: int, heads: int, dim: int, itemsize: int,
                  backward: bool) -> tuple[float, float]:
  """(FLOPs, bytes) per the module docstring."""
  fwd = sum(4.0 * w * w * dim * heads * n for w, n in schedule) * batch
  length = sum(w * n for w, n in schedule)
  groups = sum(n for _, n in schedule)
  qkv = batch * length * heads * dim * itemsize
  out = batch * groups * heads * dim * itemsize
  nbytes = 3 * qkv + out + batch * length
  if backward:
    return 3.5 * fwd, nbytes + 6 * qkv + out
  return fwd, nbytes


def make_inputs(schedule, batch, heads, dim, dtype, seed=0):
  ids = ca.group_ids_from_schedule(schedule, sum(w * n for w, n in schedule))
  rng = np.random.default_rng(seed)
  shape = (batch, len(ids), heads, dim)
  q, k, v = (jnp.asarray(rng.normal(size=shape), dtype) for _ in range(3))
  pads = rng.integers(0, len(ids) // 2 + 1, size=batch)  # Left padding.
  valid = jnp.asarray(np.arange(len(ids))[None, :] >= pads[:, None])
  ct = jnp.asarray(rng.normal(size=(batch, int(ids[-1]) + 1, heads, dim)),
                   dtype)
  return ids, (q, k, v, valid, ct)


def build_fns(ids, impl: str, interpret: bool = False, block_sizes=None):
  """Jitted forward and forward+backward (grads of sum(out * ct))."""
  if impl == "kernel":
    def op(q, k, v, valid):
      return ca.compress_attention(q, k, v, ids, valid, block_sizes=block_sizes,
                                   interpret=interpret)
  else:
    def op(q, k, v, valid):
      return ca.compress_attention_reference(q, k, v, ids, valid)

  def fwd(q, k, v, valid, ct):
    del ct
    return op(q, k, v, valid)

  def fwd_bwd(q, k, v, valid, ct):
    loss = lambda q, k, v: jnp.sum(op(q, k, v, valid).astype(jnp.float32)
                                   * ct.astype(jnp.float32))
    return jax.grad(loss, argnums=(0, 1, 2))(q, k, v)

  return {"fwd": jax.jit(fwd), "fwd_bwd": jax.jit(fwd_bwd)}


def max_abs_err(a, b) -> float:
  leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b))
  return max(float(jnp.max(jnp.abs(x.astype(jnp.float32)
                                   - y.astype(jnp.float32)))) for x, y in leaves)


def parity(schedule, batch, heads, dim, dtype, interpret, block_sizes=None) -> dict:
  """Max abs error of the kernel vs the reference, forward and gradients."""
  ids, args = make_inputs(schedule, batch, heads, dim, dtype, seed=1)
  ker = build_fns(ids, "kernel", interpret, block_sizes)
  ref = build_fns(ids, "reference")
  return dict(schedule=schedule, batch=batch, heads=heads, dim=dim,
              dtype=jnp.dtype(dtype).name, interpret=interpret,
              fwd_max_abs_err=max_abs_err(ker["fwd"](*args), ref["fwd"](*args)),
              grad_max_abs_err=max_abs_err(ker["fwd_bwd"](*args),
                                           ref["fwd_bwd"](*args)))


def run(quick: bool, out_dir: Path, dtype_name: str | None = None) -> dict:
  platform = jax.default_backend()
  kernel_timed = platform != "cpu"
  dtype = jnp.dtype(dtype_name or ("bfloat16" if kernel_timed else "float32"))
  heads, dim = (2, 32) if quick else (4, 64)
  batch = 2 if quick or not kernel_timed else 16
  lengths = (256, 1024) if quick else (256, 1024, 4096, 16384)
  mixes = ("w16", "w64", "mixed") if quick else tuple(WINDOW_MIXES)
  warmup, iters = (1, 3) if quick else (2, 10)
  peak = common.peak_flops(dtype)
  impls = ("kernel", "reference") if kernel_timed else ("reference",)
  rows = []
  for length in lengths:
    for mix in mixes:
      schedule = schedule_for(length, WINDOW_MIXES[mix])
      ids, args = make_inputs(schedule, batch, heads, dim, dtype)
      fns = {impl: build_fns(ids, impl) for impl in impls}
      for mode in ("fwd", "fwd_bwd"):
        flops, nbytes = analytic_cost(schedule, batch, heads, dim,
                                      dtype.itemsize, mode == "fwd_bwd")
        outs = {}
        for impl in impls:
          fn = fns[impl][mode]
          stats = common.time_fn(fn, *args, warmup=warmup, iters=iters)
          if kernel_timed:
            outs[impl] = fn(*args)
          row = dict(impl=impl, mode=mode, length=length, windows=mix,
                     schedule=schedule, batch=batch, heads=heads, dim=dim,
                     dtype=dtype.name, flops=flops, bytes=nbytes, **stats)
          row["flops_per_s"] = flops / stats["median_s"]
          row["bytes_per_s"] = nbytes / stats["median_s"]
          row["frac_of_peak"] = row["flops_per_s"] / peak if peak else None
          rows.append(row)
        if kernel_timed:
          rows[-2]["max_abs_err"] = max_abs_err(outs["kernel"],
                                                outs["reference"])
      print(f"T={length:6d} {mix:6s} " + " ".join(
          f"{r['impl'][:3]}/{r['mode']}={r['median_s'] * 1e3:.2f}ms"
          for r in rows if r["length"] == length and r["windows"] == mix),
            flush=True)
  checks = [parity(((64, 2), (16, 5)), 1, 2, 32, jnp.float32, not kernel_timed),
            parity(((256, 1), (16, 2), (4, 4)), 1, 1, 16, jnp.float32,
                   not kernel_timed)]
  result = dict(benchmark="kernels.compress_attention",
                device=common.device_description(), quick=quick,
                kernel_timed=kernel_timed, dtype=dtype.name, peak_flops=peak,
                device_peak_bytes=common.memory_stats(),
                flop_formula=("fwd = sum_groups 4*w^2*D*H*B (QK^T + PV); "
                              "fwd_bwd = 3.5 * fwd (backward ~2.5x forward)"),
                bytes_formula=("fwd = (3*B*T*H*D + B*G*H*D)*itemsize + B*T; "
                               "fwd_bwd adds (6*B*T*H*D + B*G*H*D)*itemsize"),
                rows=rows, parity=checks)
  out_dir = Path(out_dir)
  common.write_json(out_dir / "kernels.json", result)
  plot(rows, out_dir / "kernels.png", result["device"]["kind"])
  return result


def plot(rows, path: Path, device_kind: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  series = sorted({(r["impl"], r["mode"], r["windows"]) for r in rows})
  for impl, mode, mix in series:
    sel = sorted((r for r in rows if (r["impl"], r["mode"], r["windows"])
                  == (impl, mode, mix)), key=lambda r: r["length"])
    xs = [r["length"] for r in sel]
    style = "-" if impl == "kernel" else "--"
    label = f"{impl} {mode} {mix}"
    axes[0].plot(xs, [r["median_s"] * 1e3 for r in sel], style, marker="o",
                 label=label)
    axes[1].plot(xs, [r["flops_per_s"] / 1e9 for r in sel], style, marker="o",
                 label=label)
  for ax, ylabel in zip(axes, ("median time (ms)", "achieved GFLOP/s")):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("compressed sequence length T (positions)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
  axes[1].legend(fontsize=7)
  fig.suptitle(f"compress_attention on {device_kind}")
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None) -> dict:
  parser = common.add_common_args(argparse.ArgumentParser(description=__doc__))
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                      help="default: bfloat16 on GPU/TPU, float32 on CPU")
  args = common.parse_args(parser, argv)
  return run(args.quick, args.out, args.dtype)


if __name__ == "__main__":
  main()
