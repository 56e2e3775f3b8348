"""Per-device memory of the sharded train step against item vocabulary, length and devices.

  python benchmarks/memory.py [--quick] [--out DIR] [--update_readme] [--group precision]

Nothing is executed: each case builds the abstract train state (`jax.eval_shape`), lowers
the real jitted train step (shardings, donation) on ShapeDtypeStructs and reads XLA's
`compiled.memory_analysis()`, which is per device for an SPMD program. Device counts are
forced CPU host devices: each count runs in its own subprocess with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`.

Per device: `args` = params + optimizer state + batch shards; `temp` = XLA temporaries;
`peak` = args + temp + outputs - aliased (donated) outputs. `table` = one copy of the
item-table shard, read from the compiled executable's input sharding; Adam keeps two more
(mu, nu) of the same shape.

Groups: "scaling" (the table against vocabulary, length and mesh, f32) and "precision"
(model.dtype float32 vs bfloat16 on one device, a small table so that activations dominate:
`temp` is mostly the activations kept for the backward pass). `--group precision` compiles
only that group and merges it into the saved JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from typing import Optional

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.common import mib  # pylint: disable=g-import-not-at-top,wrong-import-position

VOCABS = (1_000_000, 10_000_000, 50_000_000, 100_000_000)
LENGTHS = (64, 256, 1024)
DEVICES = (1, 2, 4, 8)
BATCH = 128
README_START, README_END = "<!-- memory:start -->", "<!-- memory:end -->"
# Compression schedules per max_len (oldest first; the rest stay raw), KuaiFormer-style.
SCHEDULES = {64: ((16, 2),), 256: ((64, 2), (16, 5)), 1024: ((256, 2), (64, 5))}
PRECISION_VOCAB, PRECISION_LENGTHS = 100_000, (256, 1024)
GROUPS = ("scaling", "precision")


def cases(quick: bool, groups=GROUPS) -> list[dict]:
  """Every (group, vocab, max_len, devices, data, model, dtype) to compile; --quick: five
  compiles of the tiny model, under a minute on a small CPU."""
  out = _scaling_cases(quick) if "scaling" in groups else []
  if "precision" in groups:
    vocab, lengths = (10_000, (32,)) if quick else (PRECISION_VOCAB, PRECISION_LENGTHS)
    out += [dict(vocab=vocab, max_len=n, devices=1, data=1, model=1, dtype=t,
                 group="precision") for n in lengths for t in ("float32", "bfloat16")]
  defaults = dict(batch=BATCH, fsdp=False, variant="tiny" if quick else "default",
                  dtype="float32", group="scaling")
  return [dict(defaults, **c) for c in out]


def _scaling_cases(quick: bool) -> list[dict]:
  if quick:
    return [dict(vocab=1_000_000, max_len=32, devices=n, data=d, model=m)
            for n, d, m in ((1, 1, 1), (8, 1, 8), (8, 2, 4))]
  out = []
  for v in VOCABS:
    for n in DEVICES:
      out.append(dict(vocab=v, max_len=256, devices=n, data=1, model=n))
    out += [dict(vocab=v, max_len=256, devices=8, data=2, model=4),
            dict(vocab=v, max_len=256, devices=8, data=8, model=1)]
  return out + [dict(vocab=10_000_000, max_len=n, devices=8, data=2, model=4)
                for n in LENGTHS if n != 256]


def measure(case: dict) -> dict:
  """Compile one case in this process (its device count must match) and read its memory."""
  # pylint: disable=g-import-not-at-top  (only workers build models)
  import flax.linen as nn
  import jax
  import numpy as np

  from configs import base
  from mpformer_jax.data import schema, synthetic
  from mpformer_jax.model.retriever import ModelConfig, Retriever
  from mpformer_jax.parallel.sharding import Layout
  from mpformer_jax.train import state as state_lib

  config = base.get_config(case["variant"])
  config.data.max_len = case["max_len"]
  if case["max_len"] in SCHEDULES:
    config.model.compression.schedule = SCHEDULES[case["max_len"]]
  config.mesh.data, config.mesh.model = case["data"], case["model"]
  config.parallel.fsdp = case["fsdp"]
  config.train.batch_size = case["batch"]
  config.model.dtype = case["dtype"]
  spec = synthetic.synthetic_spec(num_items=case["vocab"])
  model = Retriever(spec, ModelConfig.from_config(config.model, case["max_len"]))
  layout = Layout.from_config(config)
  layout.check_batch_size(case["batch"])
  batch = example_batch(spec, case["batch"], case["max_len"], schema, np)
  tx = state_lib.make_optimizer(config.train)
  abstract, shardings = state_lib.abstract_state(model, tx, batch, layout)
  target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        nn.meta.unbox(abstract), shardings)
  step = state_lib.make_train_step(model, tx, config, layout, shardings)
  t0 = time.perf_counter()
  compiled = step.lower(target, layout.abstract_batch(batch)).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  table = target.params["item_table"]["embedding"]
  table_sharding = compiled.input_shardings[0][0].params["item_table"]["embedding"]
  shard = table_sharding.shard_shape(table.shape)
  row = dict(case, table_rows=table.shape[0], table_shard_shape=list(shard),
             table_bytes=int(np.prod(shard)) * table.dtype.itemsize,
             table_spec=str(table_sharding.spec), compile_s=round(compile_s, 2),
             num_params=int(sum(np.prod(x.shape) for x in jax.tree.leaves(target.params))))
  if mem is not None:
    args, out = int(mem.argument_size_in_bytes), int(mem.output_size_in_bytes)
    alias, temp = int(mem.alias_size_in_bytes), int(mem.temp_size_in_bytes)
    row.update(argument_bytes=args, output_bytes=out, alias_bytes=alias, temp_bytes=temp,
               peak_bytes=args + temp + out - alias)
  return row


def example_batch(spec, b: int, max_len: int, schema, np) -> dict:
  """Zero arrays of the device batch's shapes and dtypes (values never matter here)."""
  fi, fe = len(spec.item_features), len(spec.event_features)
  i32 = np.int32
  return {schema.HISTORY_IDS: np.zeros((b, max_len), i32),
          schema.HISTORY_ITEM_FEATURES: np.zeros((b, max_len, fi), i32),
          schema.HISTORY_EVENT_FEATURES: np.zeros((b, max_len, fe), i32),
          schema.USER_FEATURES: np.zeros((b, len(spec.user_features)), i32),
          schema.TARGET_ID: np.ones((b,), i32),
          schema.TARGET_ITEM_FEATURES: np.zeros((b, fi), i32),
          schema.TARGET_LABELS: np.zeros((b, len(spec.objectives)), np.float32),
          schema.TARGET_LOGQ: np.zeros((b,), np.float32)}


def run_worker(case_list: list[dict]) -> None:
  for case in case_list:
    print("ROW " + json.dumps(measure(case)), flush=True)


def run_cases(case_list: list[dict], parallel: int = 2, timeout: float = 3600) -> list[dict]:
  """One subprocess per device count (that many forced host devices), `parallel` at a time."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  groups = [[c for c in case_list if c["devices"] == n]
            for n in sorted({c["devices"] for c in case_list})]
  rows, running = [], []

  def finish(proc, mine):
    out, err = proc.communicate(timeout=timeout)
    got = [json.loads(line[4:]) for line in out.splitlines() if line.startswith("ROW ")]
    if proc.returncode or len(got) != len(mine):
      raise RuntimeError(f"memory worker for {mine[0]['devices']} devices failed:\n"
                         f"{err[-4000:]}")
    rows.extend(got)

  for mine in groups:
    if len(running) >= parallel:
      finish(*running.pop(0))
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={mine[0]['devices']}")
    running.append((subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(mine)], cwd=repo,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), mine))
  for proc, mine in running:
    finish(proc, mine)
  return rows


def group_of(row: dict) -> str:
  return row.get("group", "scaling")  # rows saved before the precision group had none


def add_ratios(rows: list[dict]) -> None:
  """table x model / table(model=1): 1.0 means the shard is exactly 1/model of the table;
  precision rows get temp and peak as a fraction of the f32 row's."""
  for r in rows:
    if group_of(r) == "precision":
      ref = [q for q in rows if group_of(q) == "precision" and q["dtype"] == "float32"
             and q["max_len"] == r["max_len"] and q.get("temp_bytes")]
      if ref and r.get("temp_bytes"):
        r["temp_vs_f32"] = r["temp_bytes"] / ref[0]["temp_bytes"]
        r["peak_vs_f32"] = r["peak_bytes"] / ref[0]["peak_bytes"]
      continue
    ref = [q for q in rows if q["vocab"] == r["vocab"] and q["max_len"] == r["max_len"]
           and q["model"] == 1 and q["data"] == 1 and group_of(q) == "scaling"]
    if ref:
      r["table_scaling"] = r["table_bytes"] * r["model"] / ref[0]["table_bytes"]
      if r.get("argument_bytes") and ref[0].get("argument_bytes"):
        r["argument_scaling"] = r["argument_bytes"] * r["model"] / ref[0]["argument_bytes"]



def readme_section(rows: list[dict], meta: dict, png_rel: str) -> str:
  precision = [r for r in rows if group_of(r) == "precision"]
  rows = [r for r in rows if group_of(r) == "scaling"]
  out = [README_START, "## Memory scaling", "",
         f"`python benchmarks/memory.py{meta['flags']}` on {meta['machine']}, {meta['date']}: "
         "per-device bytes from XLA's `memory_analysis()` of the compiled, sharded train step "
         "(not executed; forced CPU host devices). Default model (d=64, 2 layers, item "
         f"embedding 64, 4 objectives), global batch {BATCH}, AdamW, f32. `table` = one copy "
         "of the item-table shard per device (Adam adds mu and nu of the same size); `args` = "
         "params + optimizer + batch shards; `peak` = args + temp + outputs - donated. "
         "`scaling` = table x model / table at model 1 (1.00 = exactly 1/model).", "",
         "| items | max_len | devices | mesh (data x model) | table MB | args MB | temp MB | "
         "peak MB | scaling |", "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
  for r in sorted(rows, key=lambda r: (r["max_len"] != 256, r["vocab"], r["max_len"],
                                       r["devices"], -r["model"])):
    scale = f"{r['table_scaling']:.2f}" if "table_scaling" in r else "-"
    out.append(f"| {r['vocab']:,} | {r['max_len']} | {r['devices']} | {r['data']} x "
               f"{r['model']} | {mib(r['table_bytes'])} | {mib(r.get('argument_bytes'))} | "
               f"{mib(r.get('temp_bytes'))} | {mib(r.get('peak_bytes'))} | {scale} |")
  out += ["", "The table shard shrinks as 1/model exactly (rows padded to a multiple of 128), "
          "and the step's arguments and temporaries with it: nothing holds the whole table. "
          "With data parallelism only (8 x 1) every device holds the table and both Adam "
          "moments, and its temporaries double (a dense table gradient, all-reduced).", ""]
  out += [_shrink_line(rows, v) for v in sorted({r["vocab"] for r in rows})
          if _shrink_line(rows, v)]
  out += _precision_lines(precision)
  out += ["", f"![memory scaling]({png_rel})", README_END]
  return "\n".join(out)


def _precision_lines(rows: list[dict]) -> list[str]:
  """The mixed-precision table: model.dtype float32 vs bfloat16 on one device."""
  if not rows:
    return []
  out = ["", "### Mixed precision", "",
         f"One device, {rows[0]['vocab']:,} items (a small table, so activations dominate "
         "`temp`), batch 128; params and Adam moments f32 in both (`model.param_dtype`), "
         "activations and matmuls bf16 under `model.dtype=\"bfloat16\"`.", "",
         "| max_len | model.dtype | args MB | temp MB | peak MB | temp vs f32 | peak vs f32 |",
         "|---:|---|---:|---:|---:|---:|---:|"]
  for r in sorted(rows, key=lambda r: (r["max_len"], r["dtype"] != "float32")):
    ratio = lambda key: f"{r[key]:.2f}" if key in r else "-"
    out.append(f"| {r['max_len']} | {r['dtype']} | {mib(r.get('argument_bytes'))} | "
               f"{mib(r.get('temp_bytes'))} | {mib(r.get('peak_bytes'))} | "
               f"{ratio('temp_vs_f32')} | {ratio('peak_vs_f32')} |")
  return out + ["", "bf16 saves less here than halving every activation would: the "
                "attention probabilities stay f32 by design (the softmax), and the compiled "
                "CPU program keeps many of a bf16 model's elementwise intermediates in f32 "
                "(its HLO, `compiled.as_text()`, is mostly f32 buffers). "
                "`benchmarks/accelerator.py` compares the two compiled steps on a device."]


def _shrink_line(rows: list[dict], vocab: int) -> str:
  """'- N items: table a -> b MB per device from model 1 to m (x...), args x...'."""
  sel = {r["model"]: r for r in rows if r["vocab"] == vocab and r["data"] == 1}
  if 1 not in sel or len(sel) < 2:
    return ""
  m = max(sel)
  lo, hi = sel[1], sel[m]
  line = (f"- {vocab:,} items: table shard {mib(lo['table_bytes'])} -> "
          f"{mib(hi['table_bytes'])} MB per device from model 1 to {m} "
          f"(x{lo['table_bytes'] / hi['table_bytes']:.2f})")
  if lo.get("argument_bytes") and hi.get("argument_bytes"):
    line += (f", args x{lo['argument_bytes'] / hi['argument_bytes']:.2f}, peak "
             f"x{lo['peak_bytes'] / hi['peak_bytes']:.2f}")
  return line


def update_readme(path: str, section: str) -> None:
  """Replaces only the text between the memory markers (appends it if absent)."""
  common.update_readme_section(path, README_START, README_END, section)


def plot(rows: list[dict], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  precision = [r for r in rows if group_of(r) == "precision"]
  rows = [r for r in rows if group_of(r) == "scaling"]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
  _plot_precision(axes[2], precision)
  length = 256 if any(r["max_len"] == 256 for r in rows) else rows[0]["max_len"]
  mp = [r for r in rows if r["max_len"] == length and r["data"] == 1]
  for v in sorted({r["vocab"] for r in mp}):
    sel = sorted((r for r in mp if r["vocab"] == v), key=lambda r: r["model"])
    xs = [r["model"] for r in sel]
    line, = axes[0].plot(xs, [r.get("peak_bytes", 0) / 2**30 for r in sel], "o-",
                         label=f"{v / 1e6:g}M items: peak")
    axes[0].plot(xs, [r["table_bytes"] / 2**30 for r in sel], "s--", color=line.get_color(),
                 alpha=0.6, label=f"{v / 1e6:g}M items: table shard")
  axes[0].set(xscale="log", yscale="log", xlabel="model-axis size (= devices)",
              ylabel="GiB per device",
              title=f"Vocabulary-parallel table (batch {BATCH}, L={length})")
  axes[0].minorticks_off()
  axes[0].set_xticks(DEVICES, [str(d) for d in DEVICES])
  lo, hi = axes[0].get_ylim()
  axes[0].set_ylim(lo, hi * 30)  # head room for the legend
  axes[0].legend(fontsize=7, ncol=2, loc="upper right")
  ls = sorted((r for r in rows if r["vocab"] == 10_000_000 and r["data"] == 2
               and r["model"] == 4), key=lambda r: r["max_len"])
  if ls:
    axes[1].plot([r["max_len"] for r in ls], [r.get("temp_bytes", 0) / 2**20 for r in ls],
                 "o-", label="temp")
    axes[1].plot([r["max_len"] for r in ls], [r.get("peak_bytes", 0) / 2**20 for r in ls],
                 "s-", label="peak")
    axes[1].set(xscale="log", xlabel="max_len", ylabel="MiB per device",
                title="10M items, mesh 2 x 4", ylim=(0, None))
    axes[1].minorticks_off()
    axes[1].set_xticks(LENGTHS, [str(n) for n in LENGTHS])
    axes[1].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _plot_precision(ax, rows: list[dict]) -> None:
  """Per max_len: temp bytes (mostly activations) under f32 and bf16."""
  lengths = sorted({r["max_len"] for r in rows})
  for i, dtype in enumerate(("float32", "bfloat16")):
    sel = {r["max_len"]: r for r in rows if r["dtype"] == dtype}
    xs = [j + (i - 0.5) * 0.35 for j in range(len(lengths))]
    ax.bar(xs, [sel[n].get("temp_bytes", 0) / 2**20 if n in sel else 0 for n in lengths],
           0.35, label=f"{dtype}: temp")
  ax.set_xticks(range(len(lengths)), [f"max_len {n}" for n in lengths])
  ax.set(ylabel="MiB (one device)", title="Activations (temp): model.dtype")
  if rows:
    ax.legend()


def main(argv: Optional[list[str]] = None) -> list[dict]:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "README.md"))
  p.add_argument("--replot", action="store_true",
                 help="redraw the PNG (and README) from the saved JSON, compile nothing")
  p.add_argument("--group", choices=GROUPS, default=None,
                 help="compile only this group; the saved rows of the others are kept")
  p.add_argument("--worker", help=argparse.SUPPRESS)
  args = common.parse_args(p, argv)
  if args.worker:
    run_worker(json.loads(args.worker))
    return []
  json_path = os.path.join(args.out, "memory.json")
  if args.replot:
    with open(json_path) as f:
      saved = json.load(f)
    rows, date, args.quick = saved["rows"], saved["date"], saved["quick"]
  else:
    groups = (args.group,) if args.group else GROUPS
    date = datetime.datetime.now().isoformat(timespec="seconds")
    rows = [dict(r, date=date[:10]) for r in run_cases(cases(args.quick, groups))]
    if args.group and os.path.exists(json_path):
      with open(json_path) as f:
        saved = json.load(f)
      if saved["quick"] == args.quick:  # keep the other groups' rows, dated as measured
        rows = [dict(r, date=r.get("date", saved["date"][:10])) for r in saved["rows"]
                if group_of(r) not in groups] + rows
    add_ratios(rows)
    os.makedirs(args.out, exist_ok=True)
    common.write_json(json_path, dict(rows=rows, date=date, quick=args.quick,
                                      machine=f"{_cpu_name()}, forced CPU host devices"))
  png_path = os.path.join(args.out, "memory.png")
  plot(rows, png_path)
  for r in rows:
    print(f"{r['vocab']:>11,} L={r['max_len']:<4} {r['data']}x{r['model']:<2} "
          f"{r.get('dtype', 'float32'):<8} temp {mib(r.get('temp_bytes')):>7} MB  "
          f"table {mib(r['table_bytes']):>7} MB  peak {mib(r.get('peak_bytes')):>7} MB  "
          f"scaling {r.get('table_scaling', float('nan')):.3f}")
  if args.update_readme:
    import jax  # pylint: disable=g-import-not-at-top
    dates = sorted({r.get("date", date[:10]) for r in rows})
    meta = dict(flags=" --quick" if args.quick else "", date=" and ".join(dates),
                machine=f"{_cpu_name()} (jax {jax.__version__} cpu)")
    png_rel = os.path.relpath(png_path, os.path.dirname(os.path.abspath(args.readme)))
    update_readme(args.readme, readme_section(rows, meta, png_rel))
  return rows


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "CPU"


if __name__ == "__main__":
  main()
