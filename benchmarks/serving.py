"""The retrieval service under load, on loopback: latency and QPS, exact vs ScaNN (issue 20).

For each corpus size (10k and 1M items) an artifact of the default MPFormer
(configs/base.py, 4 objectives) is published twice, searched exactly and with ScaNN, and
served by `python -m launch.serve` in its own process. A fixed, bounded number of requests
(each a user's held-out history from the synthetic platform) is sent by 1, 8 and 64
concurrent clients; every request is timed from send to parsed answer. Reported per cell:
p50 / p99 latency, QPS (requests / wall time of the cell), the analytic FLOPs of a request
(user tower + exact scoring of its 16 interest vectors; ScaNN scores fewer) and the MFU
those imply against the CPU's measured matmul peak.

Multi-objective serving cost: one MPFormer answering all four objectives against four
KuaiFormer artifacts (configs/kuaiformer.py, one objective each) answering one each, the
same requests at 8 clients: total serving seconds of the four over the one.

The weights are the initialisation (no training): latency does not depend on their values,
but ScaNN's recall does, and is low on such unstructured embeddings; the recall printed at
export is therefore a floor (trained embeddings: `launch.evaluate --retrieval=scann`).
The client runs on the same 2 cores as the server, so the QPS is a lower bound.

  python benchmarks/serving.py --update_readme    # ~15 min on 2 CPU cores
  python benchmarks/serving.py --quick            # toy sizes, about a minute
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

if not __package__:  # Run as `python benchmarks/serving.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
from benchmarks import common
from configs import base, kuaiformer
from mpformer_jax.data import pipeline
from mpformer_jax.data.registry import make_source
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.parallel.sharding import Layout
from mpformer_jax.serving import artifact
from mpformer_jax.train.evaluation import Evaluator
from mpformer_jax.train.export import Exporter
from mpformer_jax.train.flops import serve_flops_per_user
from mpformer_jax.train.state import init_state, make_optimizer
# pylint: enable=g-import-not-at-top,wrong-import-position

REPO = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- serving:start -->", "<!-- serving:end -->"
FULL = dict(corpora=(10_000, 1_000_000), clients=(1, 8, 64), requests={1: 100, 8: 200, 64: 512},
            users=2_000, cost_items=10_000, cost_requests=800)
QUICK = dict(corpora=(500, 3_000), clients=(1, 8), requests={1: 8, 8: 16}, users=300,
             cost_items=500, cost_requests=16)


def synthetic_config(num_items: int, users: int, index: str, objectives=None,
                     quick: bool = False):
  """The default MPFormer (or a KuaiFormer for `objectives`) over `num_items` synthetic items."""
  c = kuaiformer.get_config() if objectives else base.get_config()
  if quick:
    tiny = base.get_config("tiny")
    c.model.update({k: tiny.model[k] for k in ("d_model", "num_layers", "num_heads",
                                               "mlp_hidden", "item_embed_dim", "feature_dim",
                                               "num_queries", "output_dim")})
    c.model.compression.schedule, c.data.max_len = tiny.model.compression.schedule, 32
  if objectives:
    c.model.objectives, c.loss.objective_weights = tuple(objectives), (1.0,)
  c.data.synthetic.update(num_users=users, num_items=num_items)
  c.export.update(index=index, keep=1)
  return c


def publish(c, root: Path, users: int, requests: int = 200) -> dict:
  """Publishes config `c`'s model with initialised weights; returns the manifest, the
  held-out examples of `requests` test users, request bodies (their histories, as original
  item ids) and the analytic FLOPs of a request."""
  c.eval.num_users = requests
  source = make_source(c.data)
  spec, max_len = source.spec, c.data.max_len
  model = Retriever(spec, ModelConfig.from_config(c.model, max_len))
  popularity = pipeline.popularity_counts(source, max_users=users)
  logq = pipeline.target_log_q(source, max_users=users)
  held_out = pipeline.eval_examples(source, split="test", max_len=max_len, logq_table=logq,
                                    users=pipeline.eval_users(source, "test", requests))
  layout = Layout.from_config(c)
  evaluator = Evaluator(model, pipeline.item_corpus_features(source), c.eval, layout)
  state, _ = init_state(model, make_optimizer(c.train), {k: v[:2] for k, v in held_out.items()},
                        c.seed, layout)
  Exporter(c, source, model, evaluator, popularity, held_out, str(root)).publish(
      jax.device_get(state.params), 0, {})
  directory = artifact.latest(str(root))
  items = np.load(os.path.join(directory, "tables.npz"))["item_ids"]   # original ids, 1..N
  bodies = [{"history": [{"item": str(i)} for i in items[row[row > 0] - 1]], "n": 50}
            for row in held_out["history_ids"]]
  return dict(manifest=artifact.read_manifest(directory), bodies=bodies, directory=directory,
              flops=serve_flops_per_user(model.cfg, spec, spec.num_items))


class Server:
  """`python -m launch.serve` on a free port, in its own process."""

  def __init__(self, root: Path, max_batch: int = 64):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      self.port = s.getsockname()[1]
    self.url = f"http://127.0.0.1:{self.port}"
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "launch.serve", f"--artifacts={root}", f"--port={self.port}",
         f"--max_batch={max_batch}", "--poll_seconds=3600"], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

  def __enter__(self) -> str:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
      if self.proc.poll() is not None:
        raise RuntimeError(f"launch.serve exited: {self.proc.stderr.read()[-2000:]}")
      try:
        if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
          return self.url
      except httpx.TransportError:
        pass
      time.sleep(0.5)
    raise RuntimeError("launch.serve did not become healthy in 10 minutes")

  def __exit__(self, *exc) -> None:
    self.proc.terminate()
    self.proc.wait(timeout=60)


def drive(url: str, bodies: list, clients: int, count: int) -> dict:
  """Sends `count` requests with `clients` concurrent clients; latency percentiles and QPS."""
  work = [bodies[i % len(bodies)] for i in range(count)]
  with httpx.Client(timeout=300) as warm:   # one untimed request per client slot
    for body in work[:clients]:
      assert warm.post(f"{url}/recommend", json=body).status_code == 200

  def client(share):
    times = []
    with httpx.Client(timeout=300) as http:
      for body in share:
        start = time.perf_counter()
        r = http.post(f"{url}/recommend", json=body)
        r.json()
        if r.status_code != 200:
          raise RuntimeError(f"request failed: {r.status_code} {r.text[:300]}")
        times.append(time.perf_counter() - start)
    return times

  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    latencies = sum(pool.map(client, [work[i::clients] for i in range(clients)]), [])
  wall = time.perf_counter() - start
  return dict(requests=count, clients=clients, wall_seconds=wall, qps=count / wall,
              p50_ms=1e3 * float(np.percentile(latencies, 50)),
              p99_ms=1e3 * float(np.percentile(latencies, 99)))


def main(argv=None) -> dict:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=str(common.DEFAULT_README))
  p.add_argument("--scratch", default="", help="artifact folder (default: a temporary one)")
  args = common.parse_args(p, argv)
  size = QUICK if args.quick else FULL
  scratch = Path(args.scratch or tempfile.mkdtemp(prefix="mpformer_serving_"))
  peak = common.peak_flops(np.float32) or float("nan")
  rows, cost = [], {}
  for num_items in size["corpora"]:
    for index in ("exact", "scann"):
      root = scratch / f"{index}_{num_items}"
      built = publish(synthetic_config(num_items, size["users"], index, quick=args.quick),
                      root, size["users"])
      recall = {k: v for k, v in built["manifest"]["index"].items() if k.startswith("recall@")}
      with Server(root) as url:
        for clients in size["clients"]:
          r = drive(url, built["bodies"], clients, size["requests"][clients])
          # MFU for exact search only: ScaNN scores a fraction of the corpus.
          r.update(num_items=num_items, index=index, flops_per_request=built["flops"],
                   mfu=r["qps"] * built["flops"] / peak if index == "exact" else None,
                   **recall)
          rows.append(r)
          print(f"{num_items:>9,} items {index:<5} {clients:>2} clients: p50 {r['p50_ms']:7.1f} "
                f"ms  p99 {r['p99_ms']:7.1f} ms  {r['qps']:7.1f} QPS  "
                f"{built['flops'] / 1e6:.1f} MFLOP/request"
                + (f"  MFU {100 * r['mfu']:.3f}%" if r["mfu"] is not None else "")
                + (f"  ScaNN {recall}" if recall else ""), flush=True)
  cost = serving_cost(scratch, size, args.quick)
  result = dict(rows=rows, cost=cost, date=datetime.datetime.now().isoformat(timespec="seconds"),
                machine={**common.device_description(), "cpu": common.cpu_model(),
                         "cores": os.cpu_count()}, peak_flops=peak, quick=args.quick)
  common.write_json(args.out / "serving.json", result)
  plot(result, args.out / "serving.png")
  if args.update_readme:
    common.update_readme_section(args.readme, README_START, README_END, readme_section(result))
  return result


def serving_cost(scratch: Path, size: dict, quick: bool) -> dict:
  """Seconds to answer the same users for all four objectives: one MPFormer vs four singles."""
  num_items, clients, count = size["cost_items"], 8, size["cost_requests"]
  runs = {}
  for name, objectives in [("mpformer", None)] + [(f"single/{o}", (o,)) for o in
                                                  ("click", "long_view", "like", "follow")]:
    root = scratch / f"cost_{name.replace('/', '_')}"
    built = publish(synthetic_config(num_items, size["users"], "exact", objectives, quick),
                    root, size["users"])
    with Server(root) as url:
      runs[name] = drive(url, built["bodies"], clients, count)
    runs[name]["params_bytes"] = os.path.getsize(next(root.glob("v*/params.npz")))
  singles = sum(v["wall_seconds"] for k, v in runs.items() if k.startswith("single/"))
  return dict(runs=runs, num_items=num_items, clients=clients, requests=count,
              seconds_ratio=runs["mpformer"]["wall_seconds"] / singles,
              params_ratio=runs["mpformer"]["params_bytes"] / sum(
                  v["params_bytes"] for k, v in runs.items() if k.startswith("single/")))


def plot(result: dict, path: Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for (num_items, index) in sorted({(r["num_items"], r["index"]) for r in result["rows"]}):
    rows = [r for r in result["rows"] if (r["num_items"], r["index"]) == (num_items, index)]
    label = f"{num_items:,} items, {index}"
    axes[0].plot([r["clients"] for r in rows], [r["qps"] for r in rows], "o-", label=label)
    axes[1].plot([r["clients"] for r in rows], [r["p99_ms"] for r in rows], "o-", label=label)
  for ax, name in zip(axes, ("requests / s", "p99 latency (ms)")):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(f"launch.serve on loopback ({result['machine']['cpu']}, "
               f"{result['machine']['cores']} cores, {result['date'][:10]})")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def readme_section(result: dict) -> str:
  m, cost = result["machine"], result["cost"]
  lines = [README_START, "## Serving: the HTTP service under load", "",
           f"`python benchmarks/serving.py --update_readme` ({result['date'][:10]}, "
           f"{m['cpu']}, {m['cores']} cores, jax {m['jax_version']}; client and server share "
           "the cores). `launch.serve` in its own process, default MPFormer (4 objectives x 4 "
           "interests, d 64, max_len 256) with initialised weights; each request is one "
           "synthetic user's history, top 50 per objective plus the merged 200. MFU: the "
           "analytic FLOPs of a request (user tower + exact scoring of its 16 vectors) x QPS "
           "over the measured f32 matmul peak (exact search only: ScaNN scores a fraction of the "
           "corpus).", "",
           "| items | search | clients | requests | p50 ms | p99 ms | QPS | MFLOP/request | MFU | "
           "ScaNN recall at export |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in result["rows"]:
    recall = next((f"{v:.3f} ({k})" for k, v in r.items() if k.startswith("recall@")), "")
    mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.2f}%"
    lines.append(f"| {r['num_items']:,} | {r['index']} | {r['clients']} | {r['requests']} | "
                 f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['qps']:.1f} | "
                 f"{r['flops_per_request'] / 1e6:.0f} | {mfu} | {recall} |")
  big = max(r["num_items"] for r in result["rows"])
  qps = {(r["index"], r["clients"]): r["qps"] for r in result["rows"] if r["num_items"] == big}
  ratio = max(qps[("scann", c)] / qps[("exact", c)] for c in {c for _, c in qps})
  lines += ["", "On these 2 shared cores the host work of a request (HTTP, JSON, the per-user "
            "quota merge in numpy) bounds the small corpus: more clients raise latency more "
            f"than throughput. At {big:,} items exact scoring dominates, and ScaNN answers up to "
            f"{ratio:.1f}x more requests per second."]
  lines += ["", f"Multi-objective serving cost ({cost['num_items']:,} items, exact, "
            f"{cost['clients']} clients, {cost['requests']} requests each): one MPFormer "
            "answering four objectives against four KuaiFormers answering one each.", "",
            "| artifact | seconds | QPS | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
  for name, r in cost["runs"].items():
    lines.append(f"| {name} | {r['wall_seconds']:.1f} | {r['qps']:.1f} | {r['p50_ms']:.1f} | "
                 f"{r['p99_ms']:.1f} |")
  lines += ["", f"One MPFormer serves the four objectives in **{cost['seconds_ratio']:.2f}x** "
            f"the time of the four single-objective services (parameters "
            f"{cost['params_ratio']:.2f}x).", "", "![serving](results/serving.png)", README_END]
  return "\n".join(lines)


if __name__ == "__main__":
  main()
