"""Tables, headline ratios and the plot of benchmarks/throughput.py's rows.

Kept apart from the measuring code: everything here reads rows (dicts from
`<out>/throughput.json`) and writes markdown or a PNG, so a saved sweep can be re-reported
without JAX doing any work.
"""
from __future__ import annotations

from typing import Optional

from benchmarks import common
from mpformer_jax.model.compression import POOLS

README_START, README_END = "<!-- throughput:start -->", "<!-- throughput:end -->"
TARGET_RATIO = 1.25  # Issue 7: compressed 256-item step over the uncompressed 64-item step.


def find(rows: list[dict], **kw) -> Optional[dict]:
  """The first measured (ok, non-breakdown) row matching all of `kw`."""
  return next((r for r in rows if r["status"] == "ok" and not r.get("stage")
               and all(r[k] == v for k, v in kw.items())), None)


def ratios(rows: list[dict], group: str = "seq_len") -> dict:
  """Step time at max_len 256 (with / without compression) over 64 without; same batch.

  In the pool group, one ratio per pool ("compressed/<pool>"), all timed interleaved.
  """
  base = find(rows, group=group, max_len=64, compression=False)
  out = {}
  for name, comp in (("compressed", True), ("uncompressed", False)):
    r = find(rows, group=group, max_len=256, compression=comp)
    if base and r:
      out[name] = r["step_time_s"] / base["step_time_s"]
  for pool in POOLS if group == "pool" else ():
    r = find(rows, group=group, max_len=256, compression=True, pool=pool)
    if base and r:
      out[f"compressed/{pool}"] = r["step_time_s"] / base["step_time_s"]
  return out


def plot(rows: list[dict], path: str, base, where: str) -> None:
  """Step time vs max_len (log-log) and examples/s against each other swept knob.

  `base`: the sweep's base point (its max_len, batch_size, ... label the figure).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  ok = [r for r in rows if r["status"] == "ok" and not r.get("stage")]
  fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
  ax = axes[0, 0]
  curves = [("no compression", False, None)] + [(f"compression, pool={p}", True, p)
                                                 for p in POOLS]
  for label, comp, pool in curves:
    # Uncompressed from the seq_len group; each pool from the pool group (timed together).
    pts = sorted((r["max_len"], r["step_time_s"]) for r in ok if r["compression"] == comp and (
        r["group"] == "seq_len" if not comp else r["group"] == "pool" and r["pool"] == pool))
    if pts:
      ax.plot(*zip(*pts), "o-", label=label)
  skipped = [r for r in rows if r["group"] == "seq_len" and r["status"] == "skipped"]
  if skipped:
    ax.plot([r["max_len"] for r in skipped], [r["predicted_step_s"] for r in skipped], "x",
            ms=9, color="gray", label="skipped (predicted time)")
  lens = sorted({r["max_len"] for r in rows if r["group"] == "seq_len"})
  ax.set(xscale="log", yscale="log", xlabel="history length max_len (items)",
         ylabel="train step time (s, median)", title="Step time vs history length")
  ax.set_xticks(lens, [str(n) for n in lens])
  ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
  ax.legend(fontsize=8)
  panels = (("batch", "batch_size", "batch size (examples)"),
            ("width", "d_model", "d_model (mlp_hidden = 3 d_model)"),
            ("depth", "num_layers", "backbone layers"),
            ("objectives", "num_objectives", "objectives (4 query tokens each)"),
            ("devices", "num_devices", "forced host devices (data parallel)"))
  for ax, (group, field, xlabel) in zip(axes.flat[1:], panels):
    pts = sorted((r[field], r["examples_per_sec"]) for r in ok if r["group"] == group)
    if pts:
      ax.plot(*zip(*pts), "o-")
      for x, y in pts:
        ax.annotate(f"{y:,.0f}", (x, y), fontsize=8, xytext=(3, 4), textcoords="offset points")
      ax.set_xscale("log", base=2)
      ax.set_xticks([x for x, _ in pts], [str(x) for x, _ in pts])
      ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
      ax.set_ylim(0, 1.2 * max(y for _, y in pts))
    ax.set(xlabel=xlabel, ylabel="throughput (examples/s)", title=f"Examples/s vs {group}")
  for ax in axes.flat:
    ax.grid(True, alpha=0.3)
  fig.suptitle(f"Train-step throughput ({where}); unless varied: max_len {base.max_len} "
               f"compressed, batch {base.batch_size}, d_model {base.d_model}, {base.num_layers} "
               f"layer(s), {base.num_objectives} objectives, 1 device", fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _cells(*cells) -> str:
  return "| " + " | ".join(str(c) for c in cells) + " |"


def readme_section(rows: list[dict], meta: dict, png_rel: str) -> str:
  """Markdown between the throughput markers: headline ratios, tables, plot."""
  m, rat, d = meta["machine"], ratios(rows), find(rows, **meta["base"])
  out = [README_START, "## Training throughput", "",
         f"`python benchmarks/throughput.py{meta['flags']}` on {m['cpu']} ({m['cores']} cores, "
         f"jax {m['jax_version']} {m['platform']}), {meta['date']}. The real jitted train step "
         f"(AdamW, state donated) on random valid batches already on the device (no input "
         f"pipeline); median step time after warm-up, compile excluded. FLOPs are analytic "
         f"(`train/flops.py`); MFU is against the {meta['peak_source']} peak, "
         f"{meta['peak'] / 1e9:.1f} GFLOP/s. Compression schedule per length: "
         f"`compression_schedule` (48 raw items, then 16-, 64- and 256-windows).", ""]
  kf = ratios(rows, "config")
  if len(rat) == 2:
    verdict = "meets" if rat["compressed"] <= TARGET_RATIO else "does **not** meet"
    out.append(f"**Step time at max_len=256 over max_len=64 without compression (batch "
               f"{d['batch_size']}): {rat['compressed']:.2f}x with compression** ({verdict} the "
               f"<= {TARGET_RATIO}x target; KuaiFormer reports +10%), {rat['uncompressed']:.2f}x "
               f"without." + (f" configs/kuaiformer.py (1 objective, no MPFormer mechanisms): "
                              f"{kf['compressed']:.2f}x with, {kf['uncompressed']:.2f}x without."
                              if len(kf) == 2 else ""))
  pr = ratios(rows, "pool")
  if any(k.startswith("compressed/") for k in pr):
    what = {"mean": " [paper: a transformer layer per group]", "attention": " [ours]",
            "ffn": " [ours: mean, then an FFN per group]"}
    out.append("By group encoder (pool group, timed together), max_len 256 compressed over 64 "
               "uncompressed: " + ", ".join(
                   f"pool={k.split('/')[1]}{what.get(k.split('/')[1], '')} {v:.2f}x"
                   for k, v in pr.items() if k.startswith("compressed/"))
               + f"; configs/base.py uses pool={meta['base']['pool']}.")
  if d:
    out.append(f"Default step (configs/base.py, batch {d['batch_size']}, max_len {d['max_len']}):"
               f" {1e3 * d['step_time_s']:.0f} ms, {d['flops_per_sec'] / 1e9:.1f} GFLOP/s, MFU "
               f"{d['mfu']:.1%}.")
  head = ("group", "config", "max_len", "compressed", "pool", "batch", "d_model", "layers",
          "objectives", "devices", "step (ms)", "examples/s", "tokens/s", "GFLOP/step", "MFU",
          "compile (s)")
  out += ["", _cells(*head), _cells(*["---"] * len(head))]
  for r in (r for r in rows if not r.get("stage")):
    cols = [r["group"], r.get("config"), r["max_len"], "yes" if r["compression"] else "no",
            r["pool"]] + [r[k] for k in ("batch_size", "d_model", "num_layers", "num_objectives",
                                         "num_devices")]
    if r["status"] == "ok":
      cols += [f"{1e3 * r['step_time_s']:,.0f}", f"{r['examples_per_sec']:,.0f}",
               f"{r['tokens_per_sec']:,.0f}", f"{r['flops_per_step'] / 1e9:.1f}",
               f"{r['mfu']:.1%}", f"{r['compile_s']:.1f}"]
    else:
      cols += [f"{r['status']}: {str(r.get('skip_reason', ''))[:70]}".replace("|", "/")] + [""] * 5
    out.append(_cells(*cols))
  stages = [r for r in rows if r.get("stage")]
  if stages:
    out += ["", f"Where the time goes: fwd+bwd of cumulative stages, then the full step; batch "
            f"{stages[0]['batch_size']}, all timed interleaved:", "",
            _cells("max_len", "compressed", "pool", "stage", "cumulative (ms)", "marginal (ms)"),
            _cells(*["---"] * 6)]
    for r in stages:
      what = (r["max_len"], "yes" if r["compression"] else "no", r["pool"])
      out.append(_cells(*what, r["stage"], f"{1e3 * r['step_time_s']:.0f}",
                        f"{1e3 * r['marginal_s']:.0f}"))
  if m["platform"] == "cpu":
    out += ["", f"Forced host devices share the same {m['cores']} CPU cores, so more devices "
            "cannot be faster here; the devices rows check that data parallelism runs."]
  out += ["", f"![throughput benchmark]({png_rel})", README_END]
  return "\n".join(out)


def update_readme(path: str, section: str) -> None:
  """Replaces only the text between the throughput markers (appends it if absent)."""
  common.update_readme_section(path, README_START, README_END, section)
