"""Offline evaluation of a trained checkpoint, exact or ScaNN retrieval (DESIGN 3).

`evaluate(config, workdir, retrieval, split)` rebuilds the model and held-out examples as
`loop.train_and_evaluate` does (same source, users, max_len, logQ table, mesh), restores
the params of the latest checkpoint in `<workdir>/checkpoints`, embeds the whole corpus and
retrieves for every held-out user, per objective, under both protocol variants of
shared/data/README.md: `<split>/<objective>/...` ranks against all items,
`<split>_seen_removed/<objective>/...` drops the items of the user's input sequence. The
target itself is never dropped (as in `exact.target_ranks`), so per user the seen-removed
rank is never worse than the all-items rank.

Exact: metrics from full-ranking target ranks (`exact.target_ranks`), identical to the
trainer's `test/...` numbers for the same params and users. ScaNN: metrics from its
retrieved top-max(K) list (`metrics.list_ranks`; a target outside it is a miss at every K),
plus `scann_recall@K` against the exact top-K list of the same variant.

Throughput `qps/<method>` counts one query per (user, objective): a top-max(K) retrieval
over the corpus (all-items variant) in batches of `eval.batch_size` users. Each method runs
once untimed on a full batch first, so jit compilation (and ScaNN's thread-pool start) is
excluded; the clock then covers every batch and stops after `block_until_ready`.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mpformer_jax.data import pipeline, schema, screening
from mpformer_jax.data.registry import make_source
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.parallel.sharding import Layout
from mpformer_jax.retrieval.exact import exact_top_k, target_ranks
from mpformer_jax.retrieval.metrics import list_ranks, ranking_metrics
from mpformer_jax.retrieval.scann_index import (build_scann, default_scann_params,
                                                leaves_to_search, recall_at_k, scann_search)
from mpformer_jax.train.checkpoint import Checkpointer, abstract_target
from mpformer_jax.train.evaluation import Evaluator
from mpformer_jax.train.state import abstract_state, make_optimizer

RETRIEVALS = ("exact", "scann")
SPLITS = ("valid", "test")
VARIANTS = (("all items", ""), ("seen removed", "_seen_removed"))  # (name, key suffix)
SCANN_FIELDS = ("num_leaves", "num_leaves_to_search", "dims_per_block",
                "anisotropic_quantization_threshold", "reorder_k", "training_sample_size")


def checkpoint_dir(workdir: str) -> str:
  """`<workdir>/checkpoints`, or a FileNotFoundError naming the workdir if it holds none."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  directory = os.path.join(workdir, "checkpoints")
  steps = [d for d in os.listdir(directory) if d.isdigit()] if os.path.isdir(directory) else []
  if not steps:
    raise FileNotFoundError(f"no checkpoint in workdir {workdir!r} ({directory} has no step "
                            f"folders); train first: python -m launch.train --workdir={workdir}")
  return directory


def scann_params(config, num_items: int) -> dict:
  """ScaNN build settings: `config.eval.scann` fields, -1 or missing = `default_scann_params`.

  An automatic `num_leaves_to_search` follows `leaves_to_search` for the leaves actually used;
  `dims_per_block=0` scores brute force instead of asymmetric hashing.
  """
  params = default_scann_params(num_items, num_neighbors=max(config.eval.ks))
  given = config.eval.get("scann") or {}
  unknown = set(given) - set(SCANN_FIELDS)
  if unknown:
    raise ValueError(f"eval.scann: unknown fields {sorted(unknown)}; known: {SCANN_FIELDS}")
  for key in SCANN_FIELDS:
    value = given.get(key, -1)
    if value is not None and value != -1:
      params[key] = value
  if given.get("num_leaves_to_search", -1) == -1 and params["num_leaves"] > 1:
    params["num_leaves_to_search"] = leaves_to_search(params["num_leaves"], num_items,
                                                      max(config.eval.ks))
  if params["dims_per_block"] == 0:
    params["dims_per_block"] = None
  return params


def restore_params(config, workdir: str, model: Retriever, batch, layout: Layout):
  """(params, step) of the latest checkpoint, restored onto the trainer's state structure.

  The target is the trainer's TrainState built abstractly (`state.abstract_state`: same
  model, optimizer and shardings), so nothing is initialised before the restore.
  """
  directory = checkpoint_dir(workdir)
  abstract, shardings = abstract_state(model, make_optimizer(config.train), batch, layout)
  target = abstract_target(nn.meta.unbox(abstract), shardings)
  ckpt = Checkpointer(directory, max_to_keep=config.train.max_checkpoints)
  try:
    restored = ckpt.restore_latest(target, move_damaged=False)
    if restored is None:
      raise FileNotFoundError(f"no finished checkpoint in workdir {workdir!r} ({directory})")
    step, state, _ = restored
  finally:
    ckpt.close()
  return state.params, int(step)


def _user_batches(num_users: int, batch_size: int):
  """Fixed-shape index batches (last one padded by repeating the last user): one compile."""
  bs = min(batch_size, num_users)
  for lo in range(0, num_users, bs):
    yield np.minimum(np.arange(lo, lo + bs), num_users - 1)


def exact_lists(queries, items, k: int, eval_cfg, exclude=None) -> tuple[np.ndarray, float]:
  """(exact top-k ids [U, k], seconds of the timed pass after one untimed warm-up batch)."""
  u = queries.shape[0]

  def run(idx):
    ex = None if exclude is None else exclude[idx]
    return exact_top_k(jnp.take(queries, idx, axis=0), items, k,
                       block_size=eval_cfg.item_block_size, exclude_ids=ex)[1]

  batches = list(_user_batches(u, eval_cfg.batch_size))
  jax.block_until_ready(run(batches[0]))  # compiles
  start = time.perf_counter()
  outs = jax.block_until_ready([run(idx) for idx in batches])
  seconds = time.perf_counter() - start
  return np.concatenate([np.asarray(x) for x in outs])[:u], seconds


def scann_lists(index, queries: np.ndarray, k: int, batch_size: int
                ) -> tuple[np.ndarray, float]:
  """(ScaNN top-k ids [U, k], seconds of the timed pass after one untimed warm-up batch)."""
  u = queries.shape[0]
  scann_search(index, queries[:batch_size], k)
  start = time.perf_counter()
  outs = [scann_search(index, queries[lo:lo + batch_size], k)[0]
          for lo in range(0, u, batch_size)]
  seconds = time.perf_counter() - start
  return np.concatenate(outs), seconds


def drop_excluded(ids: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
  """Row-wise: `ids` without the ones in `exclude` (0 ignored), order kept, first k."""
  chunk = max(1, (1 << 24) // max(1, ids.shape[1] * exclude.shape[1]))
  hit = np.concatenate([
      (ids[lo:lo + chunk, :, None] == exclude[lo:lo + chunk, None, :]).any(axis=2)
      for lo in range(0, ids.shape[0], chunk)])
  hit |= ids == 0
  order = np.argsort(hit, axis=1, kind="stable")  # kept ids first, in their order
  kept = np.take_along_axis(np.where(hit, 0, ids), order, axis=1)[:, :k]
  return np.pad(kept, ((0, 0), (0, max(0, k - kept.shape[1]))))


def _build(config, split: str):
  """Model, examples and evaluator exactly as `loop.train_and_evaluate` builds them."""
  source = screening.screen_users(make_source(config.data), config.data.invalid_users)
  max_len = config.data.max_len
  model = Retriever(source.spec, ModelConfig.from_config(config.model, max_len))
  logq = pipeline.target_log_q(source, max_users=config.data.stats_max_users)
  users = pipeline.eval_users(source, split, config.eval.num_users)
  examples = pipeline.eval_examples(source, split=split, max_len=max_len, logq_table=logq,
                                    users=users)
  schema.validate_batch(source.spec, examples)
  layout = Layout.from_config(config)
  evaluator = Evaluator(model, pipeline.item_corpus_features(source), config.eval, layout)
  return model, examples, layout, evaluator, source


def restore_run(config, workdir: str, split: str):
  """(model, examples, evaluator, params, step, source) of the latest checkpoint."""
  checkpoint_dir(workdir)  # fail before building any data
  model, examples, layout, evaluator, source = _build(config, split)
  params, step = restore_params(config, workdir, model,
                                {k: v[:2] for k, v in examples.items()}, layout)
  return model, examples, evaluator, params, step, source


def evaluate(config, workdir: str, retrieval: str = "exact", split: str = "test"
             ) -> dict[str, Any]:
  """Evaluate the latest checkpoint in `workdir`; writes and returns `eval_<retrieval>.json`.

  Keys: `<split>[_seen_removed]/<objective>/{hr,ndcg}@K` and `.../count` for K in
  `eval.ks`; `qps/exact` (and for ScaNN `qps/scann`, `.../scann_recall@K`,
  `scann/build_s`, `scann_params`); plus step, split, retrieval, num_users, num_items.
  """
  if retrieval not in RETRIEVALS:
    raise ValueError(f"unknown retrieval {retrieval!r}; use one of {RETRIEVALS}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
  workdir = os.path.abspath(os.path.expanduser(workdir))
  model, examples, evaluator, params, step, source = restore_run(config, workdir, split)
  ecfg, objectives = config.eval, model.cfg.objectives
  ks, k = tuple(ecfg.ks), max(ecfg.ks)
  items = evaluator.corpus(params)
  users = evaluator.users(params, examples)  # [U, O, J, d]
  num_users, num_items = users.shape[0], items.shape[0] - 1
  targets = examples[schema.TARGET_ID]
  exclude = np.asarray(examples[schema.SEEN_IDS])  # the whole history, target spared
  # ML-1M's file lost one event of some users (data README): their metrics are also
  # reported without those users, for comparison with numbers computed on complete data.
  incomplete = getattr(source, "incomplete_users", np.zeros(0, np.int64))
  complete = ~np.isin(np.asarray(examples[schema.USER_INDEX]), incomplete)
  out: dict[str, Any] = dict(step=step, split=split, retrieval=retrieval,
                             num_users=int(num_users), num_items=int(num_items),
                             qps_batch_size=int(min(ecfg.batch_size, num_users)))
  index = None
  if retrieval == "scann":
    out["scann_params"] = scann_params(config, num_items)
    start = time.perf_counter()
    index = build_scann(np.asarray(items), num_neighbors=k, **{
        key: out["scann_params"][key] for key in SCANN_FIELDS})
    out["scann/build_s"] = time.perf_counter() - start
  seconds = {"exact": 0.0, "scann": 0.0}
  for o, name in enumerate(objectives):
    queries = users[:, o]
    mask = examples[schema.TARGET_LABELS][:, model.spec.objective_index(name)] > 0
    exact_all, t = exact_lists(queries, items, k, ecfg)
    seconds["exact"] += t
    if index is not None:
      host_q = np.asarray(queries)
      scann_all, t = scann_lists(index, host_q, k, ecfg.batch_size)
      seconds["scann"] += t
      # Seen removed: over-fetch by the history length, then drop the seen ids.
      fetched = scann_search(index, host_q, k + exclude.shape[1])[0]
      scann_seen = drop_excluded(fetched, exclude, k)
      exact_seen, _ = exact_lists(queries, items, k, ecfg, exclude)
    for (_, suffix), ex in zip(VARIANTS, (None, exclude)):
      prefix = f"{split}{suffix}/{name}/"
      if index is None:
        ranks = target_ranks(queries, items, jnp.asarray(targets),
                             block_size=ecfg.item_block_size, exclude_ids=ex)
      else:
        ranks = list_ranks(scann_all if ex is None else scann_seen, targets)
        approx, ref = (scann_all, exact_all) if ex is None else (scann_seen, exact_seen)
        for kk in ks:
          out[f"{prefix}scann_recall@{kk}"] = recall_at_k(approx, ref, kk)
      out.update(ranking_metrics(np.asarray(ranks), ks, prefix=prefix, mask=mask))
      if len(incomplete):
        out.update(ranking_metrics(np.asarray(ranks), ks, mask=mask & complete,
                                   prefix=f"{split}{suffix}_complete_users/{name}/"))
  num_queries = num_users * len(objectives)
  out["qps/exact"] = num_queries / max(seconds["exact"], 1e-9)
  if index is not None:
    out["qps/scann"] = num_queries / max(seconds["scann"], 1e-9)
  path = os.path.join(workdir, f"eval_{retrieval}.json")
  if jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump(out, f, indent=1, sort_keys=True)
  logging.info("wrote %s", path)
  return out


def export_embeddings(config, workdir: str, path: str, split: str = "test") -> dict[str, Any]:
  """Writes a trained model's embeddings to `path` (.npz) for benchmarks/retrieval.py.

  `items` [N + 1, d] (row 0 = padding) and `queries` [U * O, k, d]: the k interest vectors
  of every held-out (user, objective), the unit `launch.evaluate` counts as one query.
  `item_ids` [N + 1] and `query_user_ids` [U * O] give the original ids of the input files
  (row 0 of `items` is the padding, id ""); `objectives` names each query's objective.
  """
  _, examples, evaluator, params, step, source = restore_run(config, os.path.expanduser(workdir),
                                                          split)
  items = np.asarray(evaluator.corpus(params), np.float32)
  users = np.asarray(evaluator.users(params, examples), np.float32)  # [U, O, k, d]
  queries = users.reshape((-1,) + users.shape[2:])
  num_objectives = users.shape[1]
  item_ids = [""] + list(original_ids(source, "items", np.arange(1, items.shape[0])))
  user_ids = original_ids(source, "users", np.asarray(examples[schema.USER_INDEX]))
  if jax.process_index() == 0:
    np.savez(path, items=items, queries=queries, item_ids=np.asarray(item_ids, str),
             query_user_ids=np.repeat(np.asarray(user_ids, str), num_objectives),
             objectives=np.tile(np.asarray(config.model.objectives, str), users.shape[0]))
  logging.info("wrote %s: items %s, queries %s (step %d)", path, items.shape, queries.shape,
               step)
  return dict(step=step, items=items.shape, queries=queries.shape)


def original_ids(source, what: str, dense: np.ndarray) -> np.ndarray:
  """Dense user indices or item ids (1..N) as the original ids of the source's input files
  (`vocab_*.parquet` of a TFDS build); the synthetic platform's ids are their own."""
  if hasattr(source, "original_ids"):
    return source.original_ids(what)[dense if what == "users" else dense - 1]
  return np.asarray([str(x) for x in np.asarray(dense).ravel()], object).reshape(dense.shape)


def top_items(config, workdir: str, n: int, split: str = "test",
              remove_seen: bool = False) -> str:
  """Writes `<workdir>/top_items_<split>.jsonl`: per held-out user and objective, the top-`n`
  items (exact retrieval) as original ids, with scores. Returns the path."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  model, examples, evaluator, params, step, source = restore_run(config, workdir, split)
  items = evaluator.corpus(params)
  users = evaluator.users(params, examples)  # [U, O, J, d]
  exclude = jnp.asarray(examples[schema.SEEN_IDS]) if remove_seen else None
  user_ids = original_ids(source, "users", np.asarray(examples[schema.USER_INDEX]))
  path = os.path.join(workdir, f"top_items_{split}.jsonl")
  with open(path, "w") as f:
    for o, name in enumerate(model.cfg.objectives):
      for idx in _user_batches(users.shape[0], config.eval.batch_size):
        scores, ids = jax.device_get(exact_top_k(
            jnp.take(users[:, o], idx, axis=0), items, n,
            block_size=config.eval.item_block_size,
            exclude_ids=None if exclude is None else exclude[idx]))
        names = original_ids(source, "items", np.maximum(ids, 1))
        for b, row in enumerate(idx[:np.unique(idx).size]):   # the tail repeats the last user
          f.write(json.dumps({"user": str(user_ids[row]), "objective": name, "step": step,
                              "items": [str(x) for x in names[b]],
                              "scores": [round(float(x), 6) for x in scores[b]]}) + "\n")
  logging.info("wrote %s", path)
  return path


def format_table(result: dict[str, Any], objectives) -> str:
  """A per-objective, per-variant table of `evaluate`'s result (plus QPS lines)."""
  split, ks = result["split"], sorted({int(key.rsplit("@", 1)[1]) for key in result
                                       if "/hr@" in key})
  cols = [f"hr@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]
  if result["retrieval"] == "scann":
    cols += [f"scann_recall@{k}" for k in ks]
  head = f"{'variant':<13}{'objective':<12}{'count':>6}" + "".join(
      f"{c.replace('scann_', ''):>11}" for c in cols)
  lines = [f"{split} split, {result['retrieval']} retrieval, checkpoint step {result['step']}, "
           f"{result['num_users']} users, {result['num_items']} items", head]
  for variant, suffix in VARIANTS:
    for name in objectives:
      prefix = f"{split}{suffix}/{name}/"
      lines.append(f"{variant:<13}{name:<12}{int(result[prefix + 'count']):>6}" + "".join(
          f"{result[prefix + c]:>11.4f}" for c in cols))
  qps = ", ".join(f"{m} {result[f'qps/{m}']:,.0f}" for m in RETRIEVALS if f"qps/{m}" in result)
  lines.append(f"queries/s (user x objective, top-{max(ks)}, batch {result['qps_batch_size']}, "
               f"compilation excluded): {qps}")
  if "scann/build_s" in result:
    lines.append(f"ScaNN build {result['scann/build_s']:.2f}s, params {result['scann_params']}")
  return "\n".join(lines)
