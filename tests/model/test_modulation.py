"""MPFormer mechanisms against hand computations: bias indexing, recency buckets, objective
mix target and loss, user gate at init, query-token budget."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mpformer_jax import losses
from mpformer_jax.model import modulation
from mpformer_jax.model.retriever import ModelConfig

SCHED = ((4, 1), (2, 2))  # max_len 10: groups end at 4, 6, 8; raw positions 8, 9


def test_recency_buckets_by_hand():
  # ages: groups 10-4=6, 10-6=4, 10-8=2; raw 10-1-8=1, 0 -> floor(log2(age + 1))
  np.testing.assert_array_equal(modulation.recency_buckets(SCHED, 10, True), [0, 2, 2, 1, 1, 0])
  # no schedule, max_len 4: ages 3, 2, 1, 0 -> 2, 1, 1, 0
  np.testing.assert_array_equal(modulation.recency_buckets((), 4, False), [2, 1, 1, 0])


def test_behaviour_types_by_hand():
  ev = np.zeros((1, 10, 2), np.int32)
  ev[0, :, 1] = np.arange(10) + 1  # behaviour column 1
  types = modulation.behaviour_types(jnp.asarray(ev), 1, SCHED, 10, True)
  np.testing.assert_array_equal(types, [[0, 0, 0, 0, 9, 10]])  # user, 3 groups, raw 8 and 9
  types = modulation.behaviour_types(jnp.asarray(ev), None, SCHED, 10, False)
  np.testing.assert_array_equal(types, [[0, 0, 0, 0, 0]])


def test_bias_indexing():
  num_obj, heads, k, types_n = 2, 3, 2, 5
  mod = modulation.ObjectiveBias(num_obj, heads, types_n, recency=True)
  types = jnp.asarray([[0, 3, 4], [1, 2, 0]])
  buckets = np.array([0, 2, 1])
  params = mod.init(jax.random.PRNGKey(0), types, buckets, k)
  beta = jax.random.normal(jax.random.PRNGKey(1), (num_obj, heads, types_n))
  gamma = jax.random.normal(jax.random.PRNGKey(2), (num_obj, heads))
  bias = np.asarray(mod.apply({"params": {"beta": beta, "gamma": gamma}}, types, buckets, k))
  c, s = 3, 3 + num_obj * k
  assert bias.shape == (2, heads, s, s)
  for b in range(2):
    for h in range(heads):
      for row in range(s):
        for col in range(s):
          if row >= c and col < c:
            o = (row - c) // k
            want = beta[o, h, types[b, col]] + gamma[o, h] * buckets[col]
          else:  # context rows and query->query entries carry no bias
            want = 0.0
          assert bias[b, h, row, col] == pytest.approx(float(want), abs=1e-6)


def test_objective_mix_by_hand():
  # objectives at bit columns (0, 2); behaviour = bitmask + 1, 0 = padding
  beh = np.array([[0, 0, 1 + 0b101, 1 + 0b001, 1 + 0b010],   # obj0: 2, obj2: 1
                  [0, 0, 0, 1 + 0b010, 1 + 0b000]])          # none of the served objectives
  ev = jnp.asarray(beh[..., None])
  mix, has_any = modulation.objective_mix(ev, 0, (0, 2), recent=4)
  np.testing.assert_allclose(mix, [[2 / 3, 1 / 3], [0, 0]])
  np.testing.assert_array_equal(has_any, [True, False])
  mix3, _ = modulation.objective_mix(ev, 0, (0, 2), recent=2)  # last 2 events only
  np.testing.assert_allclose(mix3[0], [1.0, 0.0])


def test_objective_mix_loss_by_hand():
  logits = jnp.asarray([[0.0, math.log(3.0)], [5.0, 1.0]])  # softmax row 0 = (1/4, 3/4)
  mix = jnp.asarray([[2 / 3, 1 / 3], [0.0, 0.0]])
  loss = losses.objective_mix_loss(logits, mix, jnp.asarray([True, False]))
  want = -(2 / 3 * math.log(1 / 4) + 1 / 3 * math.log(3 / 4))  # row 1 skipped
  assert float(loss) == pytest.approx(want, rel=1e-6)
  assert float(losses.objective_mix_loss(logits, mix, jnp.asarray([False, False]))) == 0.0


def test_user_gate_is_one_at_init():
  gate = modulation.UserGate(8)
  user = jax.random.normal(jax.random.PRNGKey(0), (3, 16))
  params = gate.init(jax.random.PRNGKey(1), user)
  np.testing.assert_allclose(gate.apply(params, user), 1.0)


def test_query_token_budget():
  c = ml_collections.ConfigDict(dict(
      d_model=16, num_layers=1, num_heads=2, mlp_hidden=8, item_embed_dim=8, feature_dim=4,
      num_queries=20, output_dim=8, objectives=("a", "b", "c", "d"), max_query_tokens=64,
      user_token=True, objective_embedding=True, attention_bias=True, recency_bias=True,
      user_gate=True, target_weights=True, weight_recent=10, readout="queries",
      normalize=False, dropout=0.0, freq_mix=0.0, freq_window=10, item_encoder="mlp",
      positions="rope", ffn="swiglu", norm="rms", output_skip="none", dtype="float32",
      param_dtype="float32",
      compression=dict(schedule=(), pool="mean", impl="auto"), long_history="compress",
      solar=dict(rank=16, recent=48)))
  with pytest.raises(ValueError, match="4 objectives x 20 query tokens = 80 exceeds"):
    ModelConfig.from_config(c, 16)
  c.num_queries = 16
  assert ModelConfig.from_config(c, 16).num_queries == 16
