"""The SOLAR long-history encoder inside the retriever: exact on repeated events, errors."""
import dataclasses

import flax.linen as nn
import jax
from configs import base
import numpy as np
import pytest

from mpformer_jax.data import schema
from mpformer_jax.model.retriever import ModelConfig, Retriever
from tests.model.test_retriever import SPEC, model_cfg, toy_batch

L, RECENT = 40, 6


def solar_cfg(rank, **switches):
  return model_cfg(max_len=L, schedule=(), long_history="solar", solar_rank=rank,
                   solar_recent=RECENT, **switches)


def repeated_history_batch():
  """Old events drawn from 5 distinct (item, features, event features) triples."""
  batch = toy_batch(b=3, l=L)
  rng = np.random.default_rng(1)
  pick = rng.integers(0, 5, size=(3, L - RECENT))
  for key in (schema.HISTORY_IDS, schema.HISTORY_ITEM_FEATURES,
              schema.HISTORY_EVENT_FEATURES):
    old = batch[key][:, :L - RECENT]
    batch[key][:, :L - RECENT] = np.take_along_axis(
        old, pick.reshape(pick.shape + (1,) * (old.ndim - 2)), axis=1)
  batch[schema.HISTORY_IDS][0, :20] = 0  # left padding
  batch[schema.HISTORY_ITEM_FEATURES][0, :20] = 0
  batch[schema.HISTORY_EVENT_FEATURES][0, :20] = 0
  return batch


def with_memory_read(params, seed=0):
  """The readers' output projections start at zero (SOLAR starts as the recent window);
  random ones stand in for trained ones, so that the memory reaches the output."""
  rng = np.random.default_rng(seed)
  def fill(path, x):
    if "readers_" in jax.tree_util.keystr(path) and "'out'" in jax.tree_util.keystr(path):
      return np.asarray(rng.normal(0.0, 0.3, x.shape), x.dtype)
    return x
  return jax.tree_util.tree_map_with_path(fill, nn.meta.unbox(params))


def test_solar_starts_as_the_recent_window():
  """At initialisation the memory's read is zero: old events do not move the output yet."""
  model = Retriever(SPEC, solar_cfg(4))
  batch = repeated_history_batch()
  params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
  apply = jax.jit(lambda p, b: model.apply(p, b)[0]["interests"])
  before = np.asarray(apply(params, batch))
  batch[schema.HISTORY_IDS][1, 0] = 49
  np.testing.assert_array_equal(np.asarray(apply(params, batch)), before)
  outs = [x for p, x in jax.tree_util.tree_leaves_with_path(nn.meta.unbox(params))
          if "readers_" in jax.tree_util.keystr(p) and "'out'" in jax.tree_util.keystr(p)]
  assert len(outs) == 2 and all(not np.any(np.asarray(x)) for x in outs)   # one per layer


def test_rank_5_equals_full_attention_on_five_distinct_old_events():
  """Rank 5 vs rank N (every old event a landmark: full softmax): interests and every
  parameter gradient agree, as the condition (<= r distinct memory tokens) promises."""
  batch = repeated_history_batch()
  low, full = Retriever(SPEC, solar_cfg(5)), Retriever(SPEC, solar_cfg(L - RECENT))
  params = with_memory_read(jax.jit(low.init)(jax.random.PRNGKey(0), batch))

  def grad_and_interests(model):
    def loss(p):
      u = model.apply(p, batch)[0]["interests"]
      return (u ** 2).sum(), u
    g, u = jax.jit(jax.grad(loss, has_aux=True))(params)
    return nn.meta.unbox(g), u

  (g_low, u_low), (g_full, u_full) = grad_and_interests(low), grad_and_interests(full)
  np.testing.assert_allclose(u_low, u_full, atol=2e-5)
  for (path, g), (_, w) in zip(jax.tree_util.tree_leaves_with_path(g_low),
                               jax.tree_util.tree_leaves_with_path(g_full)):
    np.testing.assert_allclose(g, w, atol=1e-4 * max(1.0, float(np.abs(w).max())),
                               err_msg=jax.tree_util.keystr(path))


def test_old_events_reach_the_interests_only_through_the_memory():
  """Changing an old event changes the output under SOLAR (it is read), with finite values
  even for a user whose old part is all padding."""
  model = Retriever(SPEC, solar_cfg(4, attention_bias=True, recency_bias=True,
                                    user_gate=True, target_weights=True))
  batch = repeated_history_batch()
  params = with_memory_read(jax.jit(model.init)(jax.random.PRNGKey(0), batch))
  apply = jax.jit(lambda p, b: model.apply(p, b)[0]["interests"])
  before = np.asarray(apply(params, batch))
  batch[schema.HISTORY_IDS][1, 0] = 49
  after = np.asarray(apply(params, batch))
  assert np.isfinite(before).all()
  assert np.abs(after[1] - before[1]).max() > 1e-6
  np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])


@pytest.mark.parametrize("overrides,match", [
    (dict(long_history="lifelong"), "long_history must be one of"),
    (dict(long_history="solar"), r"set model.compression.schedule=\(\)"),
    (dict(long_history="solar", compression={"schedule": ()}, solar={"recent": 64}),
     "solar.recent must be in"),
    (dict(long_history="solar", compression={"schedule": ()}, solar={"rank": 0}),
     "solar.rank must be >= 1"),
])
def test_config_errors(overrides, match):
  c = base.get_config("tiny")
  for key, value in overrides.items():
    if isinstance(value, dict):
      c.model[key].update(value)
    else:
      c.model[key] = value
  with pytest.raises(ValueError, match=match):
    ModelConfig.from_config(c.model, max_len=64)


def test_backbone_len():
  assert dataclasses.replace(solar_cfg(4)).backbone_len == RECENT
  assert model_cfg().backbone_len == model_cfg().max_len


def test_solar_with_the_id_encoder_reads_no_side_features():
  """model.item_encoder="id" leaves side features out of the memory as of the backbone: the
  memory embeds no feature, and new features on old and recent events change nothing."""
  cfg = solar_cfg(4, item_encoder="id", objectives=("click",), d_model=16, item_embed_dim=16,
                  output_dim=16)
  model, batch = Retriever(SPEC, cfg), repeated_history_batch()
  params = with_memory_read(jax.jit(model.init)(jax.random.PRNGKey(0), batch))
  assert set(params["params"]["memory"]) == {"norm"}
  apply = jax.jit(lambda b: model.apply(params, b)[0]["interests"])
  other = dict(batch)
  for key in (schema.HISTORY_ITEM_FEATURES, schema.HISTORY_EVENT_FEATURES):
    other[key] = np.where(batch[key] > 0, batch[key] % 3 + 1, 0).astype(np.int32)
  np.testing.assert_array_equal(apply(other), apply(batch))
  moved = dict(batch, **{schema.HISTORY_IDS: batch[schema.HISTORY_IDS].copy()})
  moved[schema.HISTORY_IDS][1, 25] = 49   # an old event: the memory still reads ids
  assert not np.allclose(apply(moved)[1], apply(batch)[1])
