"""Publish a trained retriever as a self-contained serving artifact (`serving.artifact`).

What a version holds, all read by `serving.loader` with jax, numpy and scann only:
  user_tower.stablehlo  the user tower as a serialized `jax.export` function with a symbolic
                        batch dimension: (param leaves, inputs) -> interests [B, O, k, d] and
                        the personalised objective weights [B, O] (the target-weight head)
  params.npz            its parameters (float32 leaves, cast to model.param_dtype inside)
  items.npy             the corpus embeddings [N + 1, d] (row 0 = padding)
  scann/                a serialized ScaNN searcher (large corpora; small ones search exactly)
  tables.npz            original item ids, item side features, popularity counts, and the
                        user ids and features when the model has a user token
  config.json           the run's config
  manifest.json         step, objectives, quota settings, the request encoding, the index and
                        its recall against exact search at export, the run's metrics at that
                        step, and every file's SHA-256
The exported tower always runs the XLA path of compression (`impl="xla"`): serving is one
forward pass, and the artifact then runs on any platform it was lowered for.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax import export as jax_export

from mpformer_jax.data import pipeline, schema
from mpformer_jax.data.synthetic import GAP_EDGES_S
from mpformer_jax.model.retriever import Retriever
from mpformer_jax.retrieval.exact import exact_top_k
from mpformer_jax.retrieval.merge import interest_quota
from mpformer_jax.retrieval.scann_index import build_scann, recall_at_k, scann_search
from mpformer_jax.serving import artifact, scann_assets
from mpformer_jax.serving.loader import INPUT_KEYS
from mpformer_jax.train import run_config
from mpformer_jax.train.metric_writer import read_metrics
from mpformer_jax.train.offline_eval import original_ids, restore_run, scann_params

INDEXES = ("auto", "exact", "scann")
RECALL_USERS = 1000   # held-out users whose ScaNN lists are compared with exact at export


class Exporter:
  """Publishes artifacts of one run (built once per run; `publish` per exported step)."""

  def __init__(self, config, source, model: Retriever, evaluator, popularity: np.ndarray,
               held_out: Mapping[str, np.ndarray], root: str):
    self.config, self.source, self.evaluator, self.root = config, source, evaluator, root
    e = config.export
    if e.index not in INDEXES:
      raise ValueError(f"export.index must be one of {INDEXES}, got {e.index!r}")
    self.model = Retriever(model.spec, dataclasses.replace(model.cfg, impl="xla"))
    self.popularity = np.asarray(popularity, np.int64)
    self.held_out = {k: v[:RECALL_USERS] for k, v in held_out.items()}
    self._tables = None
    self._exported = None

  def publish(self, params, step: int, metrics: Mapping[str, Any]) -> str:
    """Publishes the params of `step` as the next version under the root; returns its path."""
    start = time.perf_counter()
    params = jax.device_get(params)
    path = artifact.publish(self.root, lambda tmp: self._write(tmp, params, step, metrics),
                            keep=self.config.export.keep)
    logging.info("exported step %d to %s in %.1fs", step, path, time.perf_counter() - start)
    return path

  def _write(self, tmp: str, params, step: int, metrics: Mapping[str, Any]) -> dict:
    cfg, spec = self.config, self.model.spec
    leaves = jax.tree.leaves(params)
    if self._exported is None:   # the function does not depend on the param values
      self._exported = self._export_tower(params)
    exported = self._exported
    with open(os.path.join(tmp, "user_tower.stablehlo"), "wb") as f:
      f.write(exported.serialize())
    np.savez(os.path.join(tmp, "params.npz"),
             **{f"p{i:05d}": np.asarray(x, np.float32) for i, x in enumerate(leaves)})
    items = np.asarray(self.evaluator.corpus(params), np.float32)
    np.save(os.path.join(tmp, "items.npy"), items)
    np.savez(os.path.join(tmp, "tables.npz"), **self.tables())
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(run_config.plain(cfg), f, indent=1, sort_keys=True)
    max_n = max(cfg.export.default_n, cfg.eval.merged_n)
    num_interests = self.model.num_query_tokens or 1
    fetch = min(max(max_n, interest_quota(cfg.eval.merged_n, num_interests,
                                          cfg.eval.interest_overfetch)), spec.num_items)
    index = self._index(tmp, items, params, fetch)
    return {
        "step": int(step), "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "dataset": spec.name, "num_items": spec.num_items,
        "objectives": list(self.model.cfg.objectives),
        "num_interests": num_interests, "fetch": fetch,
        "quotas": {"merged_n": cfg.eval.merged_n, "minimum": cfg.eval.quota_min,
                   "interest_overfetch": cfg.eval.interest_overfetch},
        "default_n": cfg.export.default_n, "max_n": max_n,
        "encoding": self.encoding(), "index": index,
        "platforms": list(exported.platforms),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "package_version": run_config.package_version(),
    }

  def _export_tower(self, params) -> jax_export.Exported:
    """The user tower with a symbolic batch dimension, lowered for `export.platforms`
    (jax's names: "cpu", "cuda", "rocm", "tpu"; empty = this machine's)."""
    model = self.model
    leaves, tree = jax.tree.flatten(params)
    dtypes = [x.dtype for x in leaves]

    def tower(param_leaves, inputs):
      p = jax.tree.unflatten(tree, [x.astype(d) for x, d in zip(param_leaves, dtypes)])
      batch = dict(inputs)
      out = model.apply({"params": p}, batch, method=Retriever.user_outputs)
      num_obj = out["interests"].shape[1]
      weights = (jax.nn.softmax(out["weight_logits"], axis=-1) if "weight_logits" in out
                 else jnp.full(out["interests"].shape[:1] + (num_obj,), 1.0 / num_obj))
      return {"interests": out["interests"], "weights": weights}

    b, = jax_export.symbolic_shape("b")
    sample = {k: self.held_out[k] for k in INPUT_KEYS}
    inputs = {k: jax.ShapeDtypeStruct((b,) + v.shape[1:], jnp.int32) for k, v in sample.items()}
    param_specs = [jax.ShapeDtypeStruct(x.shape, jnp.float32) for x in leaves]
    platforms = tuple(self.config.export.platforms) or None
    return jax_export.export(jax.jit(tower), platforms=platforms)(param_specs, inputs)

  def tables(self) -> dict[str, np.ndarray]:
    """Vocabularies and side tables (computed once per run: they do not change)."""
    if self._tables is None:
      spec, source = self.model.spec, self.source
      item_ids = original_ids(source, "items", np.arange(1, spec.num_items + 1))
      out = {"item_ids": np.asarray(item_ids).astype(str),
             "item_features": pipeline.item_corpus_features(source),
             "popularity": self.popularity}
      if self.model.has_user_token:
        users = np.arange(len(source))
        out["user_ids"] = np.asarray(original_ids(source, "users", users)).astype(str)
        out["user_features"] = np.stack([np.asarray(source.user(u)[schema.SEQ_USER_FEATURES])
                                         for u in users]).astype(np.int32)
      self._tables = out
    return self._tables

  def encoding(self) -> dict[str, Any]:
    """What `serving.encoding` needs to turn a raw history into the model's inputs."""
    spec, data = self.model.spec, self.config.data
    behaviours = {}
    if data.name == "interactions" and data.interactions.behaviour_col:
      for name, values in data.interactions.objectives:
        for value in values:
          behaviours.setdefault(str(value), []).append(name)
    return {"max_len": data.max_len, "dataset_objectives": list(spec.objectives),
            "event_features": [list(f) for f in spec.event_features],
            "item_features": [list(f) for f in spec.item_features],
            # The tower's input width, read or not: a model without the user token takes
            # zeros there (the user table above is exported only when the token reads it).
            "user_features": [list(f) for f in spec.user_features],
            "behaviours": behaviours, "gap_edges_s": list(GAP_EDGES_S)}

  def _index(self, tmp: str, items: np.ndarray, params, k: int) -> dict[str, Any]:
    """Builds and saves the ScaNN searcher for a large corpus; its recall against exact."""
    e, num_items = self.config.export, items.shape[0] - 1
    kind = e.index if e.index != "auto" else ("scann" if num_items >= e.exact_below
                                              else "exact")
    if kind == "exact":
      return {"kind": "exact"}
    scann_cfg = scann_params(self.config, num_items)
    start = time.perf_counter()
    index = build_scann(items, num_neighbors=k, **{
        key: scann_cfg[key] for key in ("num_leaves", "num_leaves_to_search", "dims_per_block",
                                        "anisotropic_quantization_threshold", "reorder_k",
                                        "training_sample_size")})
    build_s = time.perf_counter() - start
    os.makedirs(os.path.join(tmp, "scann"))
    index.searcher.serialize(os.path.join(tmp, "scann"))
    scann_assets.make_relative(os.path.join(tmp, "scann"))
    users = np.asarray(self.evaluator.users(params, self.held_out), np.float32)  # [U, O, J, d]
    queries = users.reshape((-1,) + users.shape[2:])
    approx = scann_search(index, queries, k)[0]
    exact = np.asarray(exact_top_k(jnp.asarray(queries), jnp.asarray(items), k)[1])
    recall = recall_at_k(approx, exact, k)
    logging.info("ScaNN over %d items: built in %.1fs, recall@%d against exact %.4f "
                 "(%d held-out queries)", num_items, build_s, k, recall, queries.shape[0])
    return {"kind": "scann", "params": scann_cfg, "build_seconds": round(build_s, 3),
            f"recall@{k}": recall, "recall_queries": int(queries.shape[0])}


def last_metrics(workdir: str, step: int) -> dict[str, Any]:
  """The newest evaluation record at or before `step` in the run's metrics.jsonl."""
  records = [r for r in read_metrics(workdir) if r.get("step", 0) <= step
             and any(k.startswith(("eval/", "test/")) for k in r)]
  return records[-1] if records else {}


def export_run(config, workdir: str, root: str = "") -> str:
  """Publishes the newest intact checkpoint of `workdir` (launch.export); returns the path."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  model, examples, evaluator, params, step, source = restore_run(config, workdir, "valid")
  popularity = pipeline.popularity_counts(source, max_users=config.data.stats_max_users)
  root = root or config.export.dir or os.path.join(workdir, "export")
  exporter = Exporter(config, source, model, evaluator, popularity, examples, root)
  return exporter.publish(params, step, last_metrics(workdir, step))
