"""Shared helpers for benchmark scripts: timing, device facts, memory, JSON.

Conventions for every script under benchmarks/:
  * `--quick`: small sizes, finishes in under a minute on a CPU (used by tests).
  * `--out DIR`: results directory (default benchmarks/results, or a scratch folder for
    `--quick`); scripts write `<name>.json` (+ `<name>.png`) there via `write_json`.
Use `add_common_args(parser)` to get both flags and `parse_args(parser, argv)` to parse.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_README = Path(__file__).resolve().parent / "README.md"
QUICK_OUT = Path(tempfile.gettempdir()) / "mpformer_benchmarks_quick"

# Datasheet dense peaks (FLOP/s) per device-kind substring: (bf16, f32).
# f32 is None where the chip has no separate f32 matmul rating.
_PEAKS = (
    ("h200", (989e12, 67e12)),
    ("h100", (989e12, 67e12)),   # H100 SXM.
    ("a100", (312e12, 19.5e12)),
    ("v6", (918e12, None)),      # TPU v6e ("TPU v6 lite").
    ("v5 lite", (197e12, None)),  # TPU v5e.
    ("v5e", (197e12, None)),
    ("v5", (459e12, None)),      # TPU v5p.
    ("v4", (275e12, None)),
)


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
  except OSError:
    pass
  return cpu


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """Adds the shared `--quick` and `--out` flags (resolve them with `parse_args`)."""
  parser.add_argument("--quick", action="store_true",
                      help="small sizes, under a minute on CPU")
  parser.add_argument("--out", type=Path, default=None,
                      help=f"results directory (default: {DEFAULT_OUT} for full runs, "
                           f"{QUICK_OUT} for --quick)")
  return parser


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
  """Parses `argv` and resolves `--out`: toy `--quick` figures go to a scratch folder and
  never into the committed full-run results or benchmarks/README.md."""
  args = parser.parse_args(argv)
  if args.out is None:
    args.out = QUICK_OUT if args.quick else DEFAULT_OUT
  readme = getattr(args, "readme", None)
  if (args.quick and getattr(args, "update_readme", False) and readme is not None
      and Path(readme).resolve() == DEFAULT_README.resolve()):
    parser.error("--quick figures are not written into benchmarks/README.md: pass --readme")
  return args


def time_fn(fn: Callable, *args, warmup: int = 2, iters: int = 10) -> dict:
  """Compiles `fn` (timed separately), then reports wall-time percentiles.

  Returns median_s, p10_s, p90_s, compile_s, iters and the compiled memory
  figures of `compiled_memory`. Every call is followed by
  `jax.block_until_ready` so asynchronous dispatch does not hide device time.
  """
  jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(max(iters, 1)):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  return dict(median_s=float(np.median(times)),
              p10_s=float(np.percentile(times, 10)),
              p90_s=float(np.percentile(times, 90)),
              compile_s=float(compile_s), iters=len(times),
              **_memory_of(compiled))


def _memory_of(compiled) -> dict:
  try:
    mem = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # Backend without support.
    mem = None
  if mem is None:
    return dict(temp_bytes=None, output_bytes=None, argument_bytes=None,
                peak_bytes=None)
  temp = int(getattr(mem, "temp_size_in_bytes", 0))
  out = int(getattr(mem, "output_size_in_bytes", 0))
  return dict(temp_bytes=temp, output_bytes=out,
              argument_bytes=int(getattr(mem, "argument_size_in_bytes", 0)),
              peak_bytes=temp + out)


def compiled_memory(fn: Callable, *args) -> dict:
  """Bytes from XLA's `memory_analysis()` of the compiled function.

  `peak_bytes` = temp + output: the live memory the call adds beyond its
  arguments. Works on CPU too; values are None when XLA does not report them.
  """
  jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
  return _memory_of(jitted.lower(*args).compile())


def device_description() -> dict:
  """Kind, platform and count of the default backend's devices."""
  devices = jax.devices()
  return dict(kind=devices[0].device_kind, platform=devices[0].platform,
              count=len(devices), jax_version=jax.__version__)


@functools.lru_cache(maxsize=None)
def _measured_cpu_flops(n: int = 1024) -> float:
  """Measured f32 matmul FLOP/s (the CPU has no datasheet entry)."""
  x = jnp.ones((n, n), jnp.float32)
  stats = time_fn(lambda a: a @ a, x, warmup=1, iters=5)
  return 2.0 * n ** 3 / stats["median_s"]


def peak_flops(dtype: Any = jnp.bfloat16) -> float | None:
  """Peak dense FLOP/s for `dtype` on device 0; None when unknown."""
  dev = jax.devices()[0]
  if dev.platform == "cpu":
    return _measured_cpu_flops()
  kind = dev.device_kind.lower()
  is_f32 = jnp.dtype(dtype) == jnp.dtype(jnp.float32)
  for key, (bf16, f32) in _PEAKS:
    if key in kind:
      return f32 if is_f32 else bf16
  return None


def memory_stats() -> int | None:
  """Peak bytes in use on device 0, when the backend reports it."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  if not stats:
    return None
  peak = stats.get("peak_bytes_in_use", stats.get("bytes_in_use"))
  return None if peak is None else int(peak)


def mib(x) -> str:
  """Bytes as whole MiB with thousands separators ("-" when unknown), for tables."""
  return "-" if x is None else f"{x / 2**20:,.0f}"


def _jsonable(obj: Any) -> Any:
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, (np.floating, float)):
    return None if not math.isfinite(float(obj)) else float(obj)
  if isinstance(obj, (np.ndarray, jax.Array)):
    return _jsonable(np.asarray(obj).tolist())
  if isinstance(obj, Path):
    return str(obj)
  return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
  """Writes `obj` as indented JSON (numpy/jax values converted, NaN -> null)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")
  return path


def update_readme_section(path: str | os.PathLike, start: str, end: str,
                          section: str) -> None:
  """Replace the text between the `start` and `end` markers (or append the section).

  Each benchmark owns one marked section of benchmarks/README.md, so scripts can refresh
  their own table without touching the others'.
  """
  path = str(path)
  text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
  if start in text and end in text:
    head, rest = text.split(start, 1)
    text = head + section + rest.split(end, 1)[1]
  else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
  with open(path, "w") as f:
    f.write(text)
