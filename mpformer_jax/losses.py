"""In-batch softmax losses with logQ correction (KuaiFormer Eq. 10-12, DESIGN 2.7).

Candidates are the batch's target items. For row b with positive b:
  logit(b, c) = s_b(x_c) / T - log Q(x_c)          (logQ correction, optional)
  logit(b, c) = -inf  if c != b and id_c == id_b    (accidental hit)
  p = softmax over candidates c
Kinds:
  "smooth_logq":      L = -(1-a) log p(x+) - (a/C) sum_{c != b} log(1 - p(x_c))
  "label_smoothing":  L = -(1-a) log p(x+) - (a/C') sum_{valid c} log p(x_c)
  "softmax":          L = -log p(x+)
with C the number of candidates and C' the number of unmasked ones. With
loss.negatives="catalogue" (the exact softmax over all N items) "softmax" and
"label_smoothing" apply, the latter with C' = the items left after loss.mask_seen (N without
it) for the target and every next-item position.
loss.mask_seen drops from each row's softmax (catalogue or in-batch) the items already in its
input history, as the seen-removed evaluation drops them from the ranking (the target stays).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

from mpformer_jax.data import schema

KINDS = ("smooth_logq", "label_smoothing", "softmax")
NEGATIVES = ("in_batch", "catalogue")
_MASKED = -1e30


def in_batch_logits(user: jax.Array, cand: jax.Array, cand_ids: jax.Array,
                    cand_logq: jax.Array | None, temperature: float = 1.0) -> jax.Array:
  """[B, C] corrected logits for user [B, k, d] (max over interests) vs candidates [C, d].

  Row b's positive is candidate b (requires C == B); rows' own ids are cand_ids.
  """
  scores = jnp.max(jnp.einsum("bkd,cd->bkc", user, cand), axis=1) / temperature
  if cand_logq is not None:
    scores = scores - cand_logq[None, :]
  b = user.shape[0]
  accidental = (cand_ids[None, :] == cand_ids[:b, None]) & ~jnp.eye(b, cand.shape[0],
                                                                      dtype=bool)
  return jnp.where(accidental, _MASKED, scores)


def catalogue_logits(user: jax.Array, items: jax.Array, temperature: float = 1.0) -> jax.Array:
  """[B, N + 1] logits of user [B, k, d] (max over interests) vs every item [N + 1, d].

  Column 0 is the padding id, never a candidate. The exact softmax over the whole corpus:
  no sampling, so no logQ correction and no accidental hits.
  """
  scores = jnp.max(jnp.einsum("bkd,nd->bkn", user, items), axis=1) / temperature
  return scores.at[:, 0].set(_MASKED)


def first_seen_age(history_ids: jax.Array, num_columns: int) -> jax.Array:
  """[B, num_columns] int32: how many events before the newest of the left-padded history
  [B, L] each item id first occurs (0: the newest event); -1 where it does not occur, and
  always for the padding id 0."""
  b, length = history_ids.shape
  age = jnp.broadcast_to(jnp.arange(length - 1, -1, -1, dtype=jnp.int32), (b, length))
  first = jnp.full((b, num_columns), -1, jnp.int32)
  first = first.at[jnp.arange(b)[:, None], history_ids].max(age)
  return first.at[:, 0].set(-1)


def candidate_seen_age(history_ids: jax.Array, cand_ids: jax.Array) -> jax.Array:
  """[B, C] int32: `first_seen_age` of the in-batch candidates' ids [C] in each row's
  left-padded history [B, L], without a table over the catalogue (which may hold millions of
  items); -1 where absent. Costs B * L * C comparisons, fused into the reduction."""
  length = history_ids.shape[1]
  age = jnp.arange(length - 1, -1, -1, dtype=jnp.int32)[None, :, None]
  hit = (history_ids[:, :, None] == cand_ids[None, None, :]) & (history_ids[:, :, None] > 0)
  return jnp.max(jnp.where(hit, age, -1), axis=1)


def mask_seen(logits: jax.Array, seen_age: jax.Array, age: jax.Array,
              target_ids: jax.Array) -> jax.Array:
  """Masks logits [R, N + 1] of the items each row had seen by the event `age` [R] events
  before the newest (`seen_age` [R, N + 1] from `first_seen_age`), except the row's target."""
  seen = seen_age >= age[:, None]
  seen &= jnp.arange(logits.shape[-1])[None, :] != target_ids[:, None]
  return jnp.where(seen, _MASKED, logits)


def _unmasked_mean(values: jax.Array, logits: jax.Array) -> jax.Array:
  """Per-row mean [R] of values [R, C] over the columns whose logit is not masked."""
  valid = logits > _MASKED / 2
  return jnp.sum(jnp.where(valid, values, 0.0), axis=-1) / jnp.sum(valid, axis=-1)


def catalogue_loss(logits: jax.Array, target_ids: jax.Array,
                   smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Per-row cross-entropy [B] and correctness [B] of logits [B, N + 1] vs target ids [B].

  smoothing a > 0: -(1-a) log p(x+) - (a/N') sum over the N' items left in the row
  (column 0 and the columns `mask_seen` masked excluded) of log p(x_c), label smoothing
  towards the uniform distribution over the items the row can rank.
  """
  logits = logits.astype(jnp.float32)
  pos = jnp.take_along_axis(logits, target_ids[:, None], axis=-1)[:, 0]
  lse = jax.nn.logsumexp(logits, axis=-1)
  loss = lse - pos
  if smoothing:
    items = logits[:, 1:]
    loss = lse - (1.0 - smoothing) * pos - smoothing * _unmasked_mean(items, items)
  return loss, jnp.argmax(logits, axis=-1) == target_ids


def catalogue_smoothing(kind: str, alpha: float) -> float:
  """The catalogue softmax's label smoothing for loss.kind (0 for the plain softmax)."""
  if kind not in ("softmax", "label_smoothing"):
    raise ValueError('loss.negatives="catalogue" is the exact softmax: loss.kind must be '
                     f'"softmax" or "label_smoothing" (got {kind!r}, a correction for '
                     "in-batch sampling)")
  return alpha if kind == "label_smoothing" else 0.0


def in_batch_loss(logits: jax.Array, *, kind: str = "smooth_logq",
                  alpha: float = 0.1) -> tuple[jax.Array, jax.Array]:
  """Per-row loss [B] and correctness [B] (positive ranked first) from logits [B, C]."""
  if kind not in KINDS:
    raise ValueError(f"loss.kind must be one of {KINDS}, got {kind!r}")
  b, c = logits.shape
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  pos = jnp.eye(b, c, dtype=bool)
  logp_pos = jnp.sum(jnp.where(pos, logp, 0.0), axis=-1)
  valid = logits > _MASKED / 2
  if kind == "softmax":
    loss = -logp_pos
  elif kind == "smooth_logq":
    # log(1 - p) computed stably; p is clipped away from 1 so the log stays finite.
    log1m_p = jnp.log1p(-jnp.minimum(jnp.exp(logp), 1.0 - 1e-7))
    neg = jnp.sum(jnp.where(~pos & valid, log1m_p, 0.0), axis=-1)
    loss = -(1.0 - alpha) * logp_pos - (alpha / c) * neg
  else:  # label_smoothing
    loss = -(1.0 - alpha) * logp_pos - alpha * _unmasked_mean(logp, logits)
  correct = jnp.argmax(logits, axis=-1) == jnp.arange(b)
  return loss, correct


def retrieval_loss(user: jax.Array, cand: jax.Array, batch: Mapping[str, jax.Array], *,
                   objective_columns: Sequence[int], objective_weights: Sequence[float],
                   kind: str, alpha: float, logq_correction: bool,
                   temperature: float = 1.0, items: jax.Array | None = None,
                   seen_age: jax.Array | None = None
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Multi-objective loss: sum_o lambda_o * mean over rows with y[o] = 1 of L_o.

  user [B, O, k, d]; cand [B, d] the batch's target embeddings, the in-batch negatives;
  `seen_age` ([B, B], `candidate_seen_age` of the history) masks from row b's softmax the
  other rows' targets it has seen. With `items` [N + 1, d] (loss.negatives="catalogue") L_o
  is instead the exact softmax cross-entropy over the whole corpus, and `seen_age`
  ([B, N + 1], `first_seen_age` of the history) masks each row's history items from it. An
  objective with no positive row in the batch contributes 0 (and reports count 0), never NaN.
  """
  labels = batch[schema.TARGET_LABELS]
  cand_ids = batch[schema.TARGET_ID]
  logq = batch[schema.TARGET_LOGQ] if logq_correction else None
  total = jnp.zeros((), jnp.float32)
  metrics = {}
  for o, (col, weight) in enumerate(zip(objective_columns, objective_weights)):
    if items is None:
      logits = in_batch_logits(user[:, o], cand, cand_ids, logq, temperature)
      if seen_age is not None:  # the positive (the diagonal) stays, as a repeat may be one
        logits = jnp.where((seen_age >= 0) & ~jnp.eye(*logits.shape, dtype=bool), _MASKED,
                           logits)
      rows, correct = in_batch_loss(logits, kind=kind, alpha=alpha)
    else:
      logits = catalogue_logits(user[:, o], items, temperature)
      if seen_age is not None:  # the target follows the newest event: all of it is seen
        logits = mask_seen(logits, seen_age, jnp.zeros_like(cand_ids), cand_ids)
      rows, correct = catalogue_loss(logits, cand_ids, catalogue_smoothing(kind, alpha))
    y = labels[:, col].astype(jnp.float32)
    count = jnp.sum(y)
    loss_o = jnp.sum(rows * y) / jnp.maximum(count, 1.0)
    total = total + weight * loss_o
    metrics[f"loss/{o}"] = loss_o
    metrics[f"accuracy/{o}"] = jnp.sum(correct * y) / jnp.maximum(count, 1.0)
    metrics[f"count/{o}"] = count
  return total, metrics


def objective_mix_loss(logits: jax.Array, mix: jax.Array, has_any: jax.Array) -> jax.Array:
  """Cross-entropy -sum_o mix_o log softmax(logits)_o, averaged over rows with any label.

  Trains the personalised target-weight head towards each user's recent objective mix;
  rows whose recent events carry no label of the served objectives are skipped.
  """
  ce = -jnp.sum(mix * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)
  w = has_any.astype(jnp.float32)
  return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


def next_item_loss(item_out: jax.Array, next_emb: jax.Array | None, next_ids: jax.Array,
                   valid: jax.Array, cand: jax.Array, cand_ids: jax.Array,
                   cand_logq: jax.Array | None, temperature: float = 1.0,
                   items: jax.Array | None = None, max_targets: int = 0,
                   smoothing: float = 0.0, seen_age: jax.Array | None = None) -> jax.Array:
  """Auxiliary next-item softmax at every raw item token (SASRec-style training signal).

  Position t of row b scores its next item (positive) against the batch's C target items
  (negatives, logQ-corrected if `cand_logq` is given, accidental hits masked); the loss is
  the mean cross-entropy over valid positions. item_out, next_emb [B, R, d]; next_ids and
  valid [B, R]; cand [C, d]. With `items` [N + 1, d] the softmax is over the whole corpus
  instead (next_emb, cand unused): SASRec trained with full cross-entropy, label-smoothed
  by `smoothing` (`catalogue_loss`).
  max_targets > 0 scores only the first max_targets valid positions (row-major), gathered
  into a static [max_targets] buffer, so padding costs nothing: left-padded histories of
  short users are mostly padding. Positions past the budget are left out of this step.
  `seen_age` ([B, N + 1], `first_seen_age` of the whole history; or [B, C],
  `candidate_seen_age` of the candidates) masks from raw token t's softmax the items seen by
  it: token t is R - 1 - t events before the newest.
  """
  b, r, d = item_out.shape
  rows = jnp.arange(b * r)
  out, ids = item_out.reshape(b * r, d), next_ids.reshape(b * r)
  emb = None if next_emb is None else next_emb.reshape(b * r, d)
  w = valid.reshape(b * r).astype(jnp.float32)
  if max_targets > 0:
    idx = jnp.nonzero(valid.reshape(b * r), size=max_targets, fill_value=0)[0]
    out, ids, rows = out[idx], ids[idx], rows[idx]
    emb = None if emb is None else emb[idx]
    w = (jnp.arange(max_targets) < jnp.sum(w)).astype(jnp.float32)
  age = r - 1 - rows % r     # events between each position's own item and the newest
  if items is not None:  # Every position is a row of the catalogue softmax.
    logits = catalogue_logits(out[:, None], items, temperature)
    if seen_age is not None:
      logits = mask_seen(logits, seen_age[rows // r], age, ids)
    ce, _ = catalogue_loss(logits, ids, smoothing)
  else:
    pos = jnp.sum(out * emb, axis=-1) / temperature
    neg = (out @ cand.T) / temperature
    if cand_logq is not None:
      neg = neg - cand_logq[None, :]
    neg = jnp.where(cand_ids[None, :] == ids[:, None], _MASKED, neg)
    if seen_age is not None:
      neg = jnp.where(seen_age[rows // r] >= age[:, None], _MASKED, neg)
    logits = jnp.concatenate([pos[:, None], neg], axis=-1)
    ce = jax.nn.logsumexp(logits, axis=-1) - pos
  return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)
