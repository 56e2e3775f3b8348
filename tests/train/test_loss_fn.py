"""make_loss_fn (catalogue softmax; seen items masked) against the losses rebuilt in numpy."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import base
from mpformer_jax.data import pipeline, schema
from mpformer_jax.data.registry import make_source
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.train import state as st
from mpformer_jax.train.loop import train_and_evaluate

TEMPERATURE = 0.2


@pytest.fixture(scope="module")
def setup():
  config = base.get_config("tiny")
  config.model.normalize = True
  config.loss.update(negatives="catalogue", kind="softmax", aux_next_item=0.5,
                     temperature=TEMPERATURE)
  source = make_source(config.data)
  model = Retriever(source.spec, ModelConfig.from_config(config.model, config.data.max_len))
  logq = pipeline.target_log_q(source, max_users=config.data.stats_max_users)
  batch = st.device_batch(next(pipeline.train_iterator(
      source, max_len=config.data.max_len, batch_size=16, seed=0, logq_table=logq)))
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch)["params"])
  return config, model, batch, pipeline.item_corpus_features(source), params


def _logsumexp(x):
  m = x.max(-1)
  return m + np.log(np.exp(x - m[..., None]).sum(-1))


def _ce(logits, target):
  logits = logits.astype(np.float64)
  logits[..., 0] = -np.inf  # padding id
  return _logsumexp(logits) - np.take_along_axis(logits, target[..., None], -1)[..., 0]


def _run(setup, config):
  """make_loss_fn's (loss, metrics), the model's outputs, every item's vector, the targets."""
  _, model, batch, feats, params = setup
  loss, metrics = jax.jit(st.make_loss_fn(model, config, feats))(params, batch)
  out, _ = model.apply({"params": params}, batch)
  items = np.asarray(model.apply({"params": params}, np.arange(len(feats)), feats,
                                 method=Retriever.embed_items))
  return loss, metrics, out, items, np.asarray(batch[schema.TARGET_ID])


def test_catalogue_losses_match_numpy(setup):
  config, model, batch, *_ = setup
  loss, metrics, out, items, target = _run(setup, config)
  labels = np.asarray(batch[schema.TARGET_LABELS])
  for o, name in enumerate(model.cfg.objectives):
    user = np.asarray(out["interests"][:, o])                        # [B, k, d]
    rows = _ce(np.einsum("bkd,nd->bkn", user, items).max(1) / TEMPERATURE, target)
    col = model.spec.objective_index(name)
    want = (rows * labels[:, col]).sum() / max(labels[:, col].sum(), 1)
    assert float(metrics[f"loss/{o}"]) == pytest.approx(want, rel=1e-4)
  item_out = np.asarray(out["item_outputs"])                         # [B, R, d]
  r = item_out.shape[1]
  hist = np.asarray(batch[schema.HISTORY_IDS])[:, -r:]
  nxt = np.concatenate([hist[:, 1:], target[:, None]], axis=1)
  valid = (hist > 0) & (nxt > 0)
  ce = _ce(np.einsum("brd,nd->brn", item_out, items) / TEMPERATURE, nxt)
  assert valid.sum() > 0
  assert float(metrics["loss/next_item"]) == pytest.approx(ce[valid].mean(), rel=1e-4)
  assert np.isfinite(float(loss))


def test_catalogue_needs_corpus_features_and_a_known_mode(setup):
  config, model, *_ = setup
  with pytest.raises(ValueError, match="corpus item features"):
    st.make_loss_fn(model, config)
  bad = base.get_config("tiny")
  bad.loss.negatives = "sampled"
  with pytest.raises(ValueError, match="loss.negatives must be one of"):
    st.make_loss_fn(model, bad)


def test_catalogue_with_an_in_batch_correction_is_rejected(tmp_path):
  config = base.get_config("tiny")
  config.loss.negatives = "catalogue"  # kind stays "smooth_logq"
  with pytest.raises(ValueError, match='loss.kind must be "softmax" or "label_smoothing"'):
    train_and_evaluate(config, str(tmp_path))


def test_mask_seen_matches_numpy(setup):
  """loss.mask_seen: each row's history items leave its target softmax; position t's
  next-item softmax loses the items at history positions <= t. The target always stays."""
  config, model, batch, *_ = setup
  config = config.copy_and_resolve_references()
  config.loss.mask_seen = True
  _, metrics, out, items, target = _run(setup, config)
  full = np.asarray(batch[schema.HISTORY_IDS])
  b, length = full.shape
  user = np.asarray(out["interests"][:, 0])
  logits = np.einsum("bkd,nd->bkn", user, items).max(1) / TEMPERATURE
  for i in range(b):
    seen = [x for x in set(full[i]) if x > 0 and x != target[i]]
    logits[i, seen] = -np.inf
  col = model.spec.objective_index(model.cfg.objectives[0])
  y = np.asarray(batch[schema.TARGET_LABELS])[:, col]
  want = (_ce(logits, target) * y).sum() / max(y.sum(), 1)
  assert float(metrics["loss/0"]) == pytest.approx(want, rel=1e-4)
  item_out = np.asarray(out["item_outputs"])
  r = item_out.shape[1]
  nxt = np.concatenate([full[:, -r + 1:], target[:, None]], axis=1)
  logits = np.einsum("brd,nd->brn", item_out, items) / TEMPERATURE
  for i in range(b):
    for t in range(r):
      seen = [x for x in set(full[i, :length - r + t + 1]) if x > 0 and x != nxt[i, t]]
      logits[i, t, seen] = -np.inf
  valid = (full[:, -r:] > 0) & (nxt > 0)
  ce = _ce(logits, nxt)
  assert float(metrics["loss/next_item"]) == pytest.approx(ce[valid].mean(), rel=1e-4)
  _, unmasked, *_ = _run(setup, setup[0])
  assert float(metrics["loss/0"]) < float(unmasked["loss/0"])  # fewer negatives


def test_in_batch_mask_seen_matches_numpy(setup):
  """loss.mask_seen with in-batch negatives (logQ-corrected): row b's softmax loses the other
  rows' targets its history holds, its own target kept; position t's next-item softmax loses
  those at history positions <= t."""
  _, model, batch, feats, params = setup
  config = base.get_config("tiny")
  config.loss.update(kind="softmax", aux_next_item=0.5, temperature=TEMPERATURE,
                     mask_seen=True)
  _, metrics = jax.jit(st.make_loss_fn(model, config))(params, batch)
  out, cand = model.apply({"params": params}, batch)
  cand = np.asarray(cand, np.float64)
  items = np.asarray(model.apply({"params": params}, np.arange(len(feats)), feats,
                                 method=Retriever.embed_items), np.float64)
  full, target = np.asarray(batch[schema.HISTORY_IDS]), np.asarray(batch[schema.TARGET_ID])
  logq = np.asarray(batch[schema.TARGET_LOGQ], np.float64)
  b, length = full.shape

  def masked(row, upto, positive):  # [C] bool: candidates masked from this softmax
    seen = set(full[row, :upto].tolist()) - {0}
    return np.asarray([t == positive or t in seen for t in target.tolist()])

  user = np.asarray(out["interests"][:, 0], np.float64)
  logits = np.einsum("bkd,cd->bkc", user, cand).max(1) / TEMPERATURE - logq[None]
  pairs = 0
  for i in range(b):
    drop = masked(i, length, target[i])
    drop[i] = False
    pairs += drop.sum() - (target == target[i]).sum() + 1   # seen, not accidental hits
    logits[i, drop] = -np.inf
  assert pairs > 0  # the batch has seen candidates to mask
  col = model.spec.objective_index(model.cfg.objectives[0])
  y = np.asarray(batch[schema.TARGET_LABELS])[:, col]
  rows = _logsumexp(logits) - np.diag(logits)
  assert float(metrics["loss/0"]) == pytest.approx((rows * y).sum() / max(y.sum(), 1),
                                                   rel=1e-4)
  item_out = np.asarray(out["item_outputs"], np.float64)
  r = item_out.shape[1]
  nxt = np.concatenate([full[:, -r + 1:], target[:, None]], axis=1)
  pos = np.sum(item_out * items[nxt], -1) / TEMPERATURE
  neg = np.einsum("brd,cd->brc", item_out, cand) / TEMPERATURE - logq
  for i in range(b):
    for t in range(r):
      neg[i, t, masked(i, length - r + t + 1, nxt[i, t])] = -np.inf
  ce = _logsumexp(np.concatenate([pos[..., None], neg], -1)) - pos
  valid = (full[:, -r:] > 0) & (nxt > 0)
  assert float(metrics["loss/next_item"]) == pytest.approx(ce[valid].mean(), rel=1e-4)
