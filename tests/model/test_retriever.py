"""Retriever shapes, objective separation and config errors on a hand-made spec."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from configs import base
import numpy as np
import pytest

from mpformer_jax.data import schema
from mpformer_jax.model.retriever import ModelConfig, Retriever

SPEC = schema.DatasetSpec(
    name="toy", num_items=50, item_features=(("category", 6),),
    event_features=(("behaviour", 5), ("watch", 4)), user_features=(("age", 3), ("gender", 3)),
    objectives=("click", "like"), behaviour_feature="behaviour")


def toy_batch(b=3, l=12, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, 51, (b, l)).astype(np.int32)
  ids[0, :7] = 0  # left padding
  return {
      schema.HISTORY_IDS: ids,
      schema.HISTORY_ITEM_FEATURES: rng.integers(1, 6, (b, l, 1)).astype(np.int32) * (ids > 0)[..., None],
      schema.HISTORY_EVENT_FEATURES: rng.integers(1, 4, (b, l, 2)).astype(np.int32) * (ids > 0)[..., None],
      schema.USER_FEATURES: rng.integers(1, 3, (b, 2)).astype(np.int32),
      schema.TARGET_ID: rng.integers(1, 51, (b,)).astype(np.int32),
      schema.TARGET_ITEM_FEATURES: rng.integers(1, 6, (b, 1)).astype(np.int32),
      schema.TARGET_LABELS: np.ones((b, 2), np.float32),
      schema.TARGET_LOGQ: np.full((b,), -3.0, np.float32),
  }


def assert_newest_item_unseen(model, params, batch, out):
  """Changing the newest item leaves every earlier raw token's output `out` unchanged (the
  next-item loss at every token stays honest) and changes the newest one's."""
  changed = dict(batch)
  ids = batch[schema.HISTORY_IDS].copy()
  ids[:, -1] = ids[:, -1] % 50 + 1
  changed[schema.HISTORY_IDS] = ids
  out2, _ = model.apply(params, changed)
  np.testing.assert_allclose(out2["item_outputs"][:, :-1], out["item_outputs"][:, :-1],
                             atol=1e-5)
  assert not np.allclose(out2["item_outputs"][:, -1], out["item_outputs"][:, -1])


def model_cfg(**overrides):
  cfg = ModelConfig(max_len=12, d_model=16, num_layers=2, num_heads=2, mlp_hidden=32,
                    item_embed_dim=8, feature_dim=4, num_queries=3, output_dim=8,
                    objectives=("click", "like"), user_token=True, objective_embedding=True,
                    attention_bias=False, recency_bias=False, user_gate=False,
                    target_weights=False, weight_recent=50, max_query_tokens=64,
                    readout="queries", output_skip="none", normalize=False, dropout=0.0,
                    freq_mix=0.0, freq_window=3, item_encoder="mlp", positions="rope",
                    ffn="swiglu", norm="rms", schedule=((4, 1), (2, 2)), long_history="compress",
                    solar_rank=16, solar_recent=48, pool="mean", impl="auto", dtype="float32",
                    param_dtype="float32")
  return dataclasses.replace(cfg, **overrides)


@pytest.mark.parametrize("schedule", [((4, 1), (2, 2)), ()])
def test_shapes(schedule):
  model = Retriever(SPEC, model_cfg(schedule=schedule))
  batch = toy_batch()
  params = model.init(jax.random.PRNGKey(0), batch)
  out, item = model.apply(params, batch)
  user = out["interests"]
  assert user.shape == (3, 2, 3, 8) and item.shape == (3, 8)
  assert np.isfinite(np.asarray(user)).all()


@pytest.mark.parametrize("mpformer", [False, True])
def test_objectives_are_separable(mpformer):
  """Changing objective 1's embedding leaves objective 0's interests unchanged."""
  switches = dict(attention_bias=True, recency_bias=True, user_gate=True,
                  target_weights=True) if mpformer else {}
  model = Retriever(SPEC, model_cfg(**switches))
  batch = toy_batch()
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch))
  user = model.apply(params, batch, method=Retriever.user_embeddings)
  p2 = jax.tree_util.tree_map(lambda x: x, params)
  emb = p2["params"]["objective_embedding"]
  p2["params"]["objective_embedding"] = emb.at[1].add(5.0)
  user2 = model.apply(p2, batch, method=Retriever.user_embeddings)
  np.testing.assert_allclose(user2[:, 0], user[:, 0], atol=1e-6)
  assert not np.allclose(user2[:, 1], user[:, 1])
  if mpformer:
    weights = model.apply(params, batch, method=Retriever.objective_weights)
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-6)


def test_later_queries_do_not_change_earlier_ones():
  """Query j sees queries 1..j only: perturbing the last query leaves the others unchanged."""
  model = Retriever(SPEC, model_cfg(objectives=("click",)))
  batch = toy_batch()
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch))
  user = model.apply(params, batch, method=Retriever.user_embeddings)
  p2 = jax.tree_util.tree_map(lambda x: x, params)
  p2["params"]["queries"] = p2["params"]["queries"].at[2].add(3.0)
  user2 = model.apply(p2, batch, method=Retriever.user_embeddings)
  np.testing.assert_allclose(user2[:, 0, :2], user[:, 0, :2], atol=1e-6)
  assert not np.allclose(user2[:, 0, 2], user[:, 0, 2])


def test_padding_does_not_leak():
  model = Retriever(SPEC, model_cfg())
  batch = toy_batch()
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch))
  user = model.apply(params, batch, method=Retriever.user_embeddings)
  batch2 = dict(batch)
  feats = batch[schema.HISTORY_EVENT_FEATURES].copy()
  feats[0, :7] = 3  # event features under padded ids
  batch2[schema.HISTORY_EVENT_FEATURES] = feats
  user2 = model.apply(params, batch2, method=Retriever.user_embeddings)
  np.testing.assert_allclose(user2, user, atol=1e-5)


def test_unknown_objective_is_a_clear_error():
  model = Retriever(SPEC, model_cfg(objectives=("click", "share")))
  with pytest.raises(ValueError, match="objective 'share' is not in dataset 'toy'"):
    model.init(jax.random.PRNGKey(0), toy_batch())


def test_from_config_errors():
  c = base.get_config("tiny").model
  c.d_model, c.num_heads = 30, 4
  with pytest.raises(ValueError, match="d_model=30 is not divisible"):
    ModelConfig.from_config(c, 32)
  c.d_model = 32
  c.freq_mix = 1.5
  with pytest.raises(ValueError, match=r"model.freq_mix must be in \[0, 1\], got 1.5"):
    ModelConfig.from_config(c, 32)
  c.freq_mix, c.freq_window = 0.7, 0
  with pytest.raises(ValueError, match="model.freq_window must be >= 1, got 0"):
    ModelConfig.from_config(c, 32)
  c.freq_window = 10
  c.compression.schedule = ((8, 2),)
  with pytest.raises(ValueError, match="more than max_len=8"):
    ModelConfig.from_config(c, 8)


def test_sasrec_readout_uses_the_newest_item():
  model = Retriever(SPEC, model_cfg(readout="last", objectives=("click",), schedule=()))
  batch = toy_batch()
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch))
  out, _ = model.apply(params, batch)
  assert out["interests"].shape == (3, 1, 1, 8)
  np.testing.assert_allclose(out["interests"][:, 0, 0], out["item_outputs"][:, -1], atol=1e-6)
  assert "queries" not in params["params"] or params["params"]["queries"].shape[0] == 3


def test_dropout_acts_only_with_a_dropout_rng():
  """No rng: the deterministic model, equal to dropout=0 with the same params; an rng:
  a different output per key, and the same one for the same key."""
  batch = toy_batch()
  plain = Retriever(SPEC, model_cfg())
  dropped = Retriever(SPEC, model_cfg(dropout=0.3))
  params = plain.init(jax.random.PRNGKey(0), batch)
  ref = np.asarray(plain.apply(params, batch)[0]["interests"])
  np.testing.assert_array_equal(np.asarray(dropped.apply(params, batch)[0]["interests"]), ref)
  a = np.asarray(dropped.apply(params, batch, rngs={"dropout": jax.random.PRNGKey(1)})[0]
                 ["interests"])
  a2 = np.asarray(dropped.apply(params, batch, rngs={"dropout": jax.random.PRNGKey(1)})[0]
                  ["interests"])
  b = np.asarray(dropped.apply(params, batch, rngs={"dropout": jax.random.PRNGKey(2)})[0]
                 ["interests"])
  np.testing.assert_array_equal(a, a2)
  assert np.abs(a - ref).max() > 1e-3 and np.abs(a - b).max() > 1e-3


def test_dropout_layer_zeroes_and_rescales():
  """Inverted dropout: each entry is 0 or x / (1 - rate), about `rate` of them zero."""
  from mpformer_jax.model.layers import Dropout
  x = jnp.ones((200, 100))
  y = np.asarray(Dropout(0.25).apply({}, x, rngs={"dropout": jax.random.PRNGKey(0)}))
  np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-6)
  assert abs((y == 0).mean() - 0.25) < 0.02
  np.testing.assert_array_equal(np.asarray(Dropout(0.25).apply({}, x)), x)


def test_dropout_rate_is_checked():
  config = base.get_config("tiny")
  config.model.dropout = 1.0
  with pytest.raises(ValueError, match=r"model.dropout must be in \[0, 1\)"):
    ModelConfig.from_config(config.model, 32)
