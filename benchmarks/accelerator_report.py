"""Tables, summary lines and the plot of benchmarks/accelerator.py's result."""
from __future__ import annotations

from pathlib import Path

from benchmarks import common
from benchmarks.common import mib

README_START, README_END = "<!-- accelerator:start -->", "<!-- accelerator:end -->"
COMMAND = "python benchmarks/accelerator.py --update_readme"


def _ok(rows: list[dict]) -> list[dict]:
  return [r for r in rows if r.get("status") == "ok"]


def _tiles(bs: dict | None) -> str:
  if not bs:
    return "-"
  return f"{bs['block_q']}/{bs['block_k']} fwd, {bs['block_q_bwd']}/{bs['block_k_bwd']} bwd"



def summary_lines(result: dict) -> list[str]:
  """One line per headline figure (printed at the end of a run, quoted in notes)."""
  parts, out = result["parts"], []
  kernel = parts.get("kernel")
  if kernel:
    worst = max((max(p["fwd_max_abs_err"], p["grad_max_abs_err"])
                 for p in _ok(kernel["parity"])), default=float("nan"))
    failed = sum(p["status"] != "ok" for p in kernel["parity"])
    out.append(f"kernel parity: max abs error {worst:.2e} over {len(kernel['parity'])} "
               f"BlockSizes ({failed} failed)")
    for b in kernel["best"]:
      speed = (f"{b['speedup']:.2f}x the XLA reference ({b['xla_s'] * 1e3:.2f} ms)"
               if "speedup" in b else "no reference timing")
      note = "" if kernel["timed"] else " [interpret mode: not a speed]"
      out.append(f"kernel T={b['length']}: best {_tiles(b['block_sizes'])} "
                 f"{b['pallas_s'] * 1e3:.2f} ms fwd+bwd, {speed}{note}")
  for r in (parts.get("step") or {}).get("rows", []):
    if r.get("status") == "ok":
      out.append(f"step {r['name']} (d={r['d_model']}, {r['num_layers']} layers, "
                 f"L={r['max_len']}, B={r['batch_size']}, {r['dtype']}): "
                 f"{r['step_time_s'] * 1e3:.1f} ms, {r['flops_per_step'] / 1e12:.3f} TFLOP, "
                 f"MFU {r['mfu']:.1%} of {r['peak_source']}")
    else:
      why = r.get("reason") or r.get("skip_reason") or r.get("error", "")[:200]
      out.append(f"step {r['name']}: {r.get('status')} ({why})")
  for r in (parts.get("retrieval") or {}).get("rows", []):
    if r.get("status") == "ok":
      extra = (f", recall@100 {r['recall_at_100']:.3f}, build {r['build_s']:.0f} s"
               if r["method"] == "scann_host" else "")
      out.append(f"retrieval {r['num_items']:,} items {r['method']}: "
                 f"{r['users_per_s']:,.0f} users/s{extra}")
    else:
      out.append(f"retrieval {r['num_items']:,} items {r['method']}: {r.get('status')}")
  return out


def _md_table(head, rows, text_columns=()) -> list[str]:
  """Markdown lines: numbers right-aligned, `text_columns` left-aligned, then a blank."""
  align = ["---" if i in text_columns else "---:" for i in range(len(head))]
  return ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"] + [
      "| " + " | ".join(row) + " |" for row in rows] + [""]


def readme_section(result: dict, png_rel: str) -> str:
  dev = result["device"]
  parts = result["parts"]
  out = [README_START, "## Accelerator suite", "",
         f"`{COMMAND}` on {dev['kind']} (jax {dev['jax_version']}, host {result['host']}), "
         f"{result['date']}, {result['elapsed_s']:.0f} s in all (budgets "
         + ", ".join(f"{p} {s:.0f} s" for p, s in result["budgets_s"].items()) + ").", ""]
  kernel = parts.get("kernel")
  if kernel:
    out += _md_table(
        ("history T", "XLA fwd+bwd ms", "best Pallas ms", "speed-up", "best BlockSizes",
         "XLA temp MB", "Pallas temp MB"),
        [(f"{b['length']:,}", f"{b.get('xla_s', float('nan')) * 1e3:.2f}",
          f"{b['pallas_s'] * 1e3:.2f}", f"{b.get('speedup', float('nan')):.2f}x",
          _tiles(b["block_sizes"]), mib(b.get("xla_temp_bytes")),
          mib(b.get("pallas_temp_bytes"))) for b in kernel["best"]], text_columns=(4,))
  step = parts.get("step")
  if step:
    out += _md_table(
        ("train step (bf16)", "d / layers / L / B", "items", "ms", "examples/s",
         "TFLOP/step", "MFU", "temp MB (f32)"),
        [(r["name"], f"{r['d_model']} / {r['num_layers']} / {r['max_len']} / "
          f"{r['batch_size']}", f"{r['num_items'] or 10_000:,}",
          f"{r['step_time_s'] * 1e3:.1f}", f"{r['examples_per_sec']:,.0f}",
          f"{r['flops_per_step'] / 1e12:.3f}", f"{r['mfu']:.1%}",
          f"{mib(r.get('temp_bytes'))} ({mib(r.get('f32_temp_bytes'))})")
         for r in _ok(step["rows"])], text_columns=(0, 1))
  ret = parts.get("retrieval")
  if ret:
    out += _md_table(
        ("items", "method", "users/s", "ScaNN recall@100", "build s"),
        [(f"{r['num_items']:,}", r["method"], f"{r['users_per_s']:,.0f}",
          f"{r['recall_at_100']:.3f}" if "recall_at_100" in r else "-",
          f"{r['build_s']:.0f}" if "build_s" in r else "-") for r in _ok(ret["rows"])],
        text_columns=(1,))
  out += ["Lines:"] + [f"- {line}" for line in summary_lines(result)]
  out += ["", f"![accelerator suite]({png_rel})", README_END]
  return "\n".join(out)


def update_readme(path, result: dict, png_rel: str) -> None:
  common.update_readme_section(path, README_START, README_END, readme_section(result, png_rel))


def plot(result: dict, path: Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  parts = result["parts"]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
  kernel = _ok((parts.get("kernel") or {}).get("rows", []))
  for i, length in enumerate(sorted({r["length"] for r in kernel})):
    sel = [r for r in kernel if r["length"] == length]
    labels = ["XLA" if r["impl"] == "xla" else _tiles(r["block_sizes"]).replace(", ", "\n")
              for r in sel]
    axes[0].bar([f"T={length}\n{lab}" for lab in labels], [r["median_s"] * 1e3 for r in sel])
  axes[0].set(ylabel="fwd+bwd ms", title="compress-attention: XLA vs Pallas BlockSizes")
  axes[0].tick_params(axis="x", labelsize=6, rotation=90)
  step = _ok((parts.get("step") or {}).get("rows", []))
  axes[1].bar([r["name"] for r in step], [100 * r["mfu"] for r in step])
  axes[1].set(ylabel="MFU %", title="bf16 train step")
  ret = _ok((parts.get("retrieval") or {}).get("rows", []))
  axes[2].bar([f"{r['num_items'] / 1e6:g}M\n{r['method']}" for r in ret],
              [r["users_per_s"] for r in ret])
  axes[2].set(yscale="log", ylabel="users/s (top-200)", title="retrieval")
  fig.suptitle(f"accelerator suite on {result['device']['kind']}"
               + (" (--quick: toy sizes)" if result["quick"] else ""))
  fig.tight_layout()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
