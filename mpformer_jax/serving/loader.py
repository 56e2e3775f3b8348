"""Load a published artifact and answer "top items for this history", with no training code.

Imports jax (to call the exported user tower), numpy, scann (when the artifact has a ScaNN
searcher) and the numpy/jax-only parts of this package (`serving.*`, `retrieval.exact`,
`retrieval.merge`, `retrieval.multi_objective`); never flax, optax, orbax, grain or TFDS.

Per request: the user tower gives k interest vectors per objective and the personalised
objective weights; each interest fetches its own top list (exact on the device, or ScaNN);
per objective the lists merge by max score into the top n (what `launch.evaluate` ranks),
and the served list merges objectives with personalised quotas (DESIGN 3). An empty history
(or one with no known item) gets the most popular items, marked `cold_start`.
"""
from __future__ import annotations

import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from mpformer_jax.retrieval.exact import per_interest_top_k
from mpformer_jax.retrieval.multi_objective import merge_lists
from mpformer_jax.retrieval.scann_index import dedupe_top_k
from mpformer_jax.serving import artifact, scann_assets
from mpformer_jax.serving.encoding import Encoded, HistoryEncoder, Vocabulary

INPUT_KEYS = ("history_ids", "history_item_features", "history_event_features",
              "user_features")


class ServedModel:
  """One artifact version in memory: exported user tower, corpus, search index, vocabularies."""

  def __init__(self, directory: str, *, verify: bool = True, max_batch: int = 64,
               warm_up: bool = True):
    self.directory = os.path.abspath(directory)
    self.manifest = (artifact.verify(self.directory) if verify
                     else artifact.read_manifest(self.directory))
    m = self.manifest
    self.version = os.path.basename(self.directory)
    self.step = int(m["step"])
    self.objectives = tuple(m["objectives"])
    self.merged_n, self.quota_min = int(m["quotas"]["merged_n"]), int(m["quotas"]["minimum"])
    self.overfetch, self.default_n = float(m["quotas"]["interest_overfetch"]), int(m["default_n"])
    self.max_n = int(m["max_n"])
    self.max_batch = max_batch
    path = lambda name: os.path.join(self.directory, name)  # noqa: E731
    with open(path("user_tower.stablehlo"), "rb") as f:
      self._tower = jax_export.deserialize(bytearray(f.read()))
    with np.load(path("params.npz")) as z:
      self._params = [jnp.asarray(z[f"p{i:05d}"]) for i in range(len(z.files))]
    self.items = jnp.asarray(np.load(path("items.npy")))
    tables = np.load(path("tables.npz"), allow_pickle=False)
    users = (Vocabulary(tables["user_ids"], 0) if "user_ids" in tables.files else None)
    self.item_vocab = Vocabulary(tables["item_ids"], 1)
    self.encoder = HistoryEncoder(m["encoding"], self.item_vocab, tables["item_features"],
                                  users, tables["user_features"] if users else None,
                                  self.max_n)
    self.popular = np.argsort(-tables["popularity"][1:], kind="stable")[:self.max_n] + 1
    self.index_kind = m["index"]["kind"]
    self._scann = None
    if self.index_kind == "scann":
      self._scann = scann_assets.load(path("scann"))
    self.num_interests = int(m["num_interests"])
    self.fetch = int(m["fetch"])   # per-interest list length (>= max_n and the quota's)
    if warm_up:
      self.warm_up()

  # -------------------------------------------------------------- requests
  def encode(self, request: Any) -> Encoded:
    """A request's model inputs (raises `encoding.RequestError` when malformed)."""
    return self.encoder.encode(request, self.default_n)

  def recommend(self, batch: Sequence[Encoded]) -> list[dict[str, Any]]:
    """Answers for encoded requests (any number; run in padded batches of max_batch)."""
    out: list[dict[str, Any]] = []
    for lo in range(0, len(batch), self.max_batch):
      out += self._recommend(batch[lo:lo + self.max_batch])
    return out

  def user_outputs(self, batch: Sequence[Encoded]) -> tuple[np.ndarray, np.ndarray]:
    """(interests [B, O, k, d], objective weights [B, O]) of the exported user tower."""
    size = _bucket(len(batch), self.max_batch)
    pad = list(batch) + [batch[-1]] * (size - len(batch))
    inputs = {key: np.stack([getattr(e, key) for e in pad]) for key in INPUT_KEYS}
    out = self._tower.call(self._params, inputs)
    return (np.asarray(out["interests"])[:len(batch)],
            np.asarray(out["weights"])[:len(batch)])

  def _recommend(self, batch: Sequence[Encoded]) -> list[dict[str, Any]]:
    warm = [i for i, e in enumerate(batch) if e.used > 0]
    answers: list[dict[str, Any]] = [None if e.used > 0 else self._cold(e) for e in batch]
    if not warm:
      return answers
    start = time.perf_counter()
    interests, weights = self.user_outputs([batch[i] for i in warm])
    ids, scores = self.search(interests)                 # [B, O, J, M]
    merged = merge_lists(ids, scores, weights, self.merged_n, minimum=self.quota_min,
                         c=self.overfetch)
    seconds = time.perf_counter() - start
    b, num_obj = ids.shape[:2]
    top_ids, top_scores = dedupe_top_k(ids.reshape(b * num_obj, -1),
                                      scores.reshape(b * num_obj, -1), self.max_n)
    top_ids, top_scores = top_ids.reshape(b, num_obj, -1), top_scores.reshape(b, num_obj, -1)
    for row, i in enumerate(warm):
      e = batch[i]
      per_objective = {}
      for o, name in enumerate(self.objectives):
        keep = top_ids[row, o, :e.n] > 0
        per_objective[name] = {
            "items": self.item_vocab.original(top_ids[row, o, :e.n][keep]),
            "scores": [round(float(s), 6) for s in top_scores[row, o, :e.n][keep]]}
      m = merged[row][merged[row] > 0]
      answers[i] = self._answer(e, per_objective, self.item_vocab.original(m), False,
                                {n: round(float(w), 6) for n, w in zip(self.objectives,
                                                                       weights[row])})
      answers[i]["info"]["batch_seconds"] = round(seconds, 6)
    return answers

  def search(self, interests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-interest top-`fetch` lists: (ids, scores) [B, O, J, fetch], exact or ScaNN."""
    b, num_obj, num_int, dim = interests.shape
    flat = interests.reshape(b * num_obj * num_int, dim).astype(np.float32)
    if self._scann is None:
      scores, ids = per_interest_top_k(jnp.asarray(flat)[None], self.items, self.fetch)
      ids, scores = np.asarray(ids)[0], np.asarray(scores)[0]
    else:
      rows, scores = self._scann.search_batched(flat, final_num_neighbors=self.fetch)
      ids, scores = np.asarray(rows, np.int64) + 1, np.asarray(scores, np.float32)
    shape = (b, num_obj, num_int, self.fetch)
    return ids.reshape(shape), scores.reshape(shape)

  def _cold(self, e: Encoded) -> dict[str, Any]:
    """The popularity answer for a history with no known item."""
    items = self.item_vocab.original(self.popular[:e.n])
    merged = self.item_vocab.original(self.popular[:self.merged_n])
    return self._answer(e, {name: {"items": items, "scores": None} for name in self.objectives},
                        merged, True, None)

  def _answer(self, e: Encoded, per_objective, merged, cold: bool, weights) -> dict[str, Any]:
    return {"objectives": per_objective, "merged": {"items": merged, "weights": weights},
            "cold_start": cold, "source": "popularity" if cold else "model",
            "version": self.version, "step": self.step,
            "info": {"events": e.events, "used_events": e.used,
                     "unknown_items": e.unknown_items, "truncated_events": e.truncated,
                     "known_user": e.known_user}}

  def warm_up(self) -> None:
    """Compiles the tower and the search for every batch bucket before serving."""
    e = self.encode({"history": [{"item": self.item_vocab.ids[0]}]})
    size = 1
    while True:
      self.recommend([e] * size)
      if size >= self.max_batch:
        break
      size = min(2 * size, self.max_batch)


def _bucket(size: int, max_batch: int) -> int:
  """The padded batch size: the next power of two, at most max_batch (few compilations)."""
  return min(max_batch, 1 << max(0, size - 1).bit_length())

