"""SASRec's item encoder (model.item_encoder="id"), learned positions (model.positions),
ReLU FFN (model.ffn) and LayerNorm (model.norm)."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from configs import base

from mpformer_jax.data import schema
from mpformer_jax.model.layers import Attention, LayerNorm, ReluFFN
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.train.flops import train_flops_per_step, user_tower_flops
from tests.model.test_retriever import SPEC, assert_newest_item_unseen, model_cfg, toy_batch

ID_DIMS = dict(d_model=16, item_embed_dim=16, output_dim=16)


def _init(cfg, batch):
  model = Retriever(SPEC, cfg)
  return model, nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch))


def test_id_encoder_uses_the_id_row_and_no_side_features():
  """The item vector is the id row itself; history tokens are too, so the item and event
  features change nothing, and neither MLP has parameters."""
  cfg = model_cfg(item_encoder="id", objectives=("click",), **ID_DIMS)
  batch = toy_batch()
  model, params = _init(cfg, batch)
  assert "token_embedder" not in params["params"] and "item_tower" not in params["params"]
  out, items = model.apply(params, batch)
  table = params["params"]["item_table"]["embedding"]
  np.testing.assert_array_equal(items, table[batch[schema.TARGET_ID]])
  other = dict(batch)
  for key in (schema.HISTORY_ITEM_FEATURES, schema.HISTORY_EVENT_FEATURES,
              schema.TARGET_ITEM_FEATURES):
    other[key] = np.where(batch[key] > 0, batch[key] % 3 + 1, 0).astype(np.int32)
  out2, items2 = model.apply(params, other)
  np.testing.assert_array_equal(items2, items)
  np.testing.assert_array_equal(out2["interests"], out["interests"])
  # The default encoder does read the features (the comparison above could fail).
  mlp_model, mlp_params = _init(model_cfg(objectives=("click",)), batch)
  assert not np.allclose(mlp_model.apply(mlp_params, other)[0]["interests"],
                         mlp_model.apply(mlp_params, batch)[0]["interests"])


def test_attention_without_rope_ignores_positions():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 8))
  mask = jnp.tril(jnp.ones((5, 5), bool))[None, None]
  pos, shifted = jnp.arange(5)[None], (jnp.arange(5) * 3 + 1)[None]
  for use_rope in (True, False):
    attn = Attention(num_heads=2, rope=use_rope)
    params = attn.init(jax.random.PRNGKey(1), x, mask, pos)
    same = np.allclose(attn.apply(params, x, mask, pos), attn.apply(params, x, mask, shifted),
                       atol=1e-6)
    assert same == (not use_rope)


@pytest.mark.parametrize("schedule,pool", [((), "mean"), (((4, 1), (2, 2)), "mean"),
                                           (((4, 1), (2, 2)), "attention")])
def test_learned_positions(schedule, pool):
  """One table row per backbone position (user token, groups, raw items, queries); the rows
  enter the output; the model stays causal over the raw items, with either pool."""
  cfg = model_cfg(positions="learned", objectives=("click",), schedule=schedule, pool=pool)
  batch = toy_batch()
  model, params = _init(cfg, batch)
  num_context = 1 + (12 if not schedule else 4 + 1 + 2)
  table = params["params"]["position_embedding"]
  assert table.shape == (num_context + 3, 16)
  out, _ = model.apply(params, batch)
  moved = jax.tree_util.tree_map(lambda x: x, params)
  moved["params"]["position_embedding"] = table.at[num_context - 1].add(1.0)
  assert not np.allclose(model.apply(moved, batch)[0]["item_outputs"][:, -1],
                         out["item_outputs"][:, -1])
  assert_newest_item_unseen(model, params, batch, out)


def test_relu_ffn_by_hand():
  """relu(x W1 + b1) W2 + b2 on x = (1, -2): x W1 = (1 - 2, -2, 2) = (-1, -2, 2), + b1 =
  (-0.5, -1, 1), relu -> (0, 0, 1); times W2 = (3, -1), + b2 = (3.5, -1). The negative
  pre-activations are cut, so a SwiGLU or a missing bias would give another answer."""
  ffn = ReluFFN(hidden=3)
  x = jnp.array([[1.0, -2.0]])
  params = nn.meta.unbox(ffn.init(jax.random.PRNGKey(0), x))
  params = {"params": {
      "up": {"kernel": jnp.array([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0]]),
             "bias": jnp.array([0.5, 1.0, -1.0])},
      "down": {"kernel": jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, -1.0]]),
               "bias": jnp.array([0.5, 0.0])}}}
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
      nn.meta.unbox(ffn.init(jax.random.PRNGKey(0), x)))
  np.testing.assert_allclose(ffn.apply(params, x), [[3.5, -1.0]])


def test_relu_ffn_in_the_blocks():
  """model.ffn="relu" puts SASRec's FFN (kernels and biases, no gate) in every block."""
  batch = toy_batch()
  _, params = _init(model_cfg(ffn="relu", objectives=("click",)), batch)
  blocks = [k for k in params["params"] if k.startswith("blocks_")]
  assert len(blocks) == 2
  for name in blocks:
    ffn = params["params"][name]["ffn"]
    assert set(ffn) == {"up", "down"} and set(ffn["up"]) == {"kernel", "bias"}
    assert ffn["up"]["kernel"].shape == (16, 32) and ffn["down"]["kernel"].shape == (32, 16)
  _, swiglu = _init(model_cfg(objectives=("click",)), batch)
  assert set(swiglu["params"][blocks[0]]["ffn"]) == {"gate", "up", "down"}


def test_layer_norm_by_hand():
  """x = (1, 3): mean 2, centred (-1, 1), variance 1, so y = (-1, 1); times scale (2, 3)
  plus bias (0.5, -1) = (-1.5, 2). RMSNorm would give x / sqrt(5) * scale, no bias."""
  norm = LayerNorm()
  x = jnp.array([[1.0, 3.0]])
  params = nn.meta.unbox(norm.init(jax.random.PRNGKey(0), x))
  assert set(params["params"]) == {"scale", "bias"}
  params = {"params": {"scale": jnp.array([2.0, 3.0]), "bias": jnp.array([0.5, -1.0])}}
  np.testing.assert_allclose(norm.apply(params, x), [[-1.5, 2.0]], rtol=1e-5)


def test_layer_norm_in_the_blocks_and_the_final_norm():
  """model.norm="layer" gives both norms of every block and the final norm a bias; the
  default keeps RMSNorm's scale alone."""
  batch = toy_batch()
  for norm, keys in (("layer", {"scale", "bias"}), ("rms", {"scale"})):
    model, params = _init(model_cfg(norm=norm, objectives=("click",)), batch)
    p = params["params"]
    assert set(p["final_norm"]) == keys
    for name in ("blocks_0", "blocks_1"):
      assert set(p[name]["attn_norm"]) == set(p[name]["ffn_norm"]) == keys
    assert np.isfinite(np.asarray(model.apply(params, batch)[0]["interests"])).all()


def test_relu_ffn_flops_by_hand():
  """ReLU's FFN is 4 d h a token against SwiGLU's 6 d h: 2 layers x S tokens x 2 d h saved,
  S = user token 1 + groups 1 + 2 + raw 12 - 4 - 4 = 4 + queries 2 objectives x 3 = 14, d = 16,
  h = 32: 2 * 14 * 2 * 16 * 32 = 28,672 per example."""
  swiglu = model_cfg()
  relu = dataclasses.replace(swiglu, ffn="relu")
  assert user_tower_flops(swiglu, SPEC) - user_tower_flops(relu, SPEC) == 28_672


def test_switch_errors():
  c = base.get_config("tiny").model
  c.item_encoder = "tower"
  with pytest.raises(ValueError, match="model.item_encoder must be one of"):
    ModelConfig.from_config(c, 32)
  c.item_encoder = "id"
  c.d_model, c.item_embed_dim, c.output_dim = 32, 32, 16
  with pytest.raises(ValueError, match="must be equal; got 32, 32, 16"):
    ModelConfig.from_config(c, 32)
  c.output_dim = 32
  c.positions = "absolute"
  with pytest.raises(ValueError, match="model.positions must be one of"):
    ModelConfig.from_config(c, 32)
  c.positions = "learned"
  assert ModelConfig.from_config(c, 32).positions == "learned"
  c.ffn = "gelu"
  with pytest.raises(ValueError, match=r"model.ffn must be one of \('swiglu', 'relu'\)"):
    ModelConfig.from_config(c, 32)
  c.ffn = "relu"
  c.norm = "batch"
  with pytest.raises(ValueError, match=r"model.norm must be one of \('rms', 'layer'\)"):
    ModelConfig.from_config(c, 32)


def test_id_encoder_flops_by_hand():
  """Without the two MLPs a step saves, per example, the token MLP over 12 positions,
  12 * (2 * i_t * 2d + 2 * 2d * d) with i_t = 16 + (1 + 2) * 4 = 28, d = 16: 12 * (1,792 +
  1,024) = 33,792, and the target's item tower, 2 * i_v * 2 out + 2 * 2 out * out with
  i_v = 16 + 4 = 20, out = 16: 1,280 + 1,024 = 2,304; training is 3x the forward, batch 4."""
  mlp = model_cfg(**ID_DIMS)
  ident = dataclasses.replace(mlp, item_encoder="id")
  assert user_tower_flops(mlp, SPEC) - user_tower_flops(ident, SPEC) == 33_792
  saved = train_flops_per_step(mlp, SPEC, 4) - train_flops_per_step(ident, SPEC, 4)
  assert saved == 3 * 4 * (33_792 + 2_304)
