"""Held-out evaluation: exact full ranking over the whole corpus, per objective.

For each objective o, the metrics average over held-out events whose label y[o] = 1; the
first objective's metrics are also reported without the objective in the key
(`eval/hr@50`). Two baselines are scored on the same targets: `popularity` ranks items by
training-target counts, `transitions` by how often each followed the user's newest item in
training (then by popularity).

With several objectives, "multi-objective exposure" scores the merged list of
`eval.merged_n` items (per-objective quotas from the personalised weights, and from uniform
weights for comparison): `eval/merged/<objective>/hr@N` is the hit rate on held-out events of
that objective, `eval/merged/mean_exposure` their mean over the objectives that have held-out
events (an objective with none is left out, not counted as 0; `eval/merged_uniform/...`
likewise).
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from mpformer_jax.data import schema
from mpformer_jax.model.retriever import Retriever
from mpformer_jax.parallel.sharding import in_context
from mpformer_jax.retrieval.exact import target_ranks
from mpformer_jax.retrieval.metrics import list_ranks, ranking_metrics
from mpformer_jax.retrieval.multi_objective import merged_lists
from mpformer_jax.retrieval.popularity import popularity_ranks
from mpformer_jax.retrieval.transitions import transition_ranks
from mpformer_jax.train.state import device_batch


class Baselines(NamedTuple):
  """Training counts behind the baselines (data/pipeline.py builds both)."""
  popularity: np.ndarray                                # [N + 1] target counts
  transitions: Optional[scipy.sparse.csr_matrix] = None  # [N + 1, N + 1]; None: not scored


def baseline_ranks(baselines: Baselines, examples: Mapping[str, np.ndarray],
                   exclude: Optional[np.ndarray]) -> dict[str, np.ndarray]:
  """{baseline name: [U] ranks of the examples' targets} without the `exclude` ids."""
  targets = examples[schema.TARGET_ID]
  out = {"popularity": popularity_ranks(baselines.popularity, targets, exclude_ids=exclude)}
  if baselines.transitions is not None:  # histories are left-padded: newest item last
    out["transitions"] = transition_ranks(baselines.transitions, baselines.popularity,
                                          examples[schema.HISTORY_IDS][:, -1], targets,
                                          exclude_ids=exclude)
  return out


class Evaluator:
  """Embeds the corpus and the held-out users, ranks every target against every item."""

  def __init__(self, model: Retriever, corpus_features: np.ndarray, eval_cfg, layout=None):
    self.model = model
    self.cfg = eval_cfg
    self.corpus_features = corpus_features
    self._embed_items = jax.jit(
        lambda p, ids, f: model.apply({"params": p}, ids, f, method=Retriever.embed_items))
    self._embed_users = jax.jit(
        lambda p, b: model.apply({"params": p}, b, method=Retriever.user_embeddings))
    self._weights = jax.jit(
        lambda p, b: model.apply({"params": p}, b, method=Retriever.objective_weights))
    if layout is not None:  # trace under the mesh: the corpus uses the vocab-parallel lookup
      self._embed_items, self._embed_users, self._weights = (
          in_context(layout, f) for f in (self._embed_items, self._embed_users, self._weights))

  def corpus(self, params) -> jax.Array:
    """[N + 1, out] item embeddings (row 0 = padding, never ranked)."""
    n = self.corpus_features.shape[0]
    block = min(self.cfg.item_block_size, n)
    outs = []
    for start in range(0, n, block):
      ids = np.arange(start, start + block, dtype=np.int32)
      feats = self.corpus_features[np.minimum(ids, n - 1)]
      outs.append(self._embed_items(params, np.minimum(ids, n - 1), feats))
    return jnp.concatenate(outs)[:n]

  def users(self, params, examples: Mapping[str, np.ndarray], fn=None) -> jax.Array:
    """[U, O, k, out] user embeddings (or `fn`'s output), batched, last batch padded."""
    fn = fn or self._embed_users
    u = len(examples[schema.TARGET_ID])
    bs = self.cfg.batch_size
    outs = []
    for start in range(0, u, bs):
      idx = np.minimum(np.arange(start, start + bs), u - 1)
      outs.append(fn(params, device_batch({k: v[idx] for k, v in examples.items()})))
    return jnp.concatenate(outs)[:u]

  def scored_objectives(self) -> list[tuple[int, str]]:
    """(model objective index, dataset objective) pairs to report: the model's objectives,
    or `eval.objectives` (dataset objectives; one the model lacks is ranked with the model's
    first objective's vectors, e.g. a model trained on all events scored per behaviour)."""
    names = tuple(self.cfg.get("objectives", ())) or self.model.cfg.objectives
    own = self.model.cfg.objectives
    return [(own.index(n) if n in own else 0, n) for n in names]

  def merged(self, params, users, items, examples, prefix: str) -> dict[str, float]:
    """Multi-objective exposure of the merged list, personalised and uniform quotas."""
    objectives = self.model.cfg.objectives
    n = self.cfg.merged_n
    personal = np.asarray(self.users(params, examples, self._weights))
    out: dict[str, float] = {}
    for name, weights in (("merged", personal),
                          ("merged_uniform", np.full_like(personal, 1 / len(objectives)))):
      lists = merged_lists(np.asarray(users), items, weights, n, minimum=self.cfg.quota_min,
                           c=self.cfg.interest_overfetch, block_size=self.cfg.item_block_size)
      ranks = list_ranks(lists, examples[schema.TARGET_ID])
      hits = []
      for obj in objectives:
        mask = examples[schema.TARGET_LABELS][:, self.model.spec.objective_index(obj)] > 0
        if not mask.any():  # No held-out event of this objective (retail's test: buys only).
          continue
        hr = ranking_metrics(ranks, (n,), mask=mask)[f"hr@{n}"]
        out[f"{prefix}/{name}/{obj}/hr@{n}"] = hr
        hits.append(hr)
      if hits:
        out[f"{prefix}/{name}/mean_exposure"] = float(np.mean(hits))
    for o, obj in enumerate(objectives):
      out[f"{prefix}/weights/{obj}"] = float(personal[:, o].mean())
    return out

  def __call__(self, params, examples: Mapping[str, np.ndarray], baselines: Baselines,
               prefix: str = "eval") -> dict[str, float]:
    items = self.corpus(params)
    users = self.users(params, examples)
    targets = jnp.asarray(examples[schema.TARGET_ID])
    exclude = examples[schema.SEEN_IDS] if self.cfg.remove_seen else None
    ranks_of = baseline_ranks(baselines, examples, exclude)
    ks = tuple(self.cfg.ks)
    out: dict[str, Any] = {}
    for k, (o, name) in enumerate(self.scored_objectives()):
      first = k == 0   # also reported without the objective in the key
      mask = examples[schema.TARGET_LABELS][:, self.model.spec.objective_index(name)] > 0
      ranks = np.asarray(target_ranks(users[:, o], items, targets,
                                      block_size=self.cfg.item_block_size,
                                      exclude_ids=exclude))
      for source, source_ranks in [("", ranks), *ranks_of.items()]:
        base = f"{prefix}/{source}/" if source else f"{prefix}/"
        for key, value in ranking_metrics(source_ranks, ks, mask=mask).items():
          out[f"{base}{name}/{key}"] = value
          if first:
            out[f"{base}{key}"] = value
    if len(self.model.cfg.objectives) > 1:
      out.update(self.merged(params, users, items, examples, prefix))
    return out
