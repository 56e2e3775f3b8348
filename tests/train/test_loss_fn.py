"""make_loss_fn with loss.negatives="catalogue" against the losses rebuilt by hand in numpy."""
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


def _ce(logits, target):
  logits = logits.astype(np.float64)
  logits[..., 0] = -np.inf  # padding id
  m = logits.max(-1)
  return m + np.log(np.exp(logits - m[..., None]).sum(-1)) - np.take_along_axis(
      logits, target[..., None], -1)[..., 0]


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


def test_mask_seen_needs_the_catalogue(setup):
  _, model, *_ = setup
  config = base.get_config("tiny")
  config.loss.mask_seen = True
  with pytest.raises(ValueError, match='loss.mask_seen .* needs loss.negatives="catalogue"'):
    st.make_loss_fn(model, config)
