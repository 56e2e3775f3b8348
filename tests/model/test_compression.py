"""Compression grouping against a hand computation, incl. all-padding groups."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpformer_jax.model import compression


def test_group_ids_and_token_count_by_hand():
  sched = ((4, 1), (2, 2))
  np.testing.assert_array_equal(compression.schedule_group_ids(sched), [0, 0, 0, 0, 1, 1, 2, 2])
  assert compression.num_tokens(sched, 10) == 3 + 2
  assert compression.num_tokens(((64, 2), (16, 5)), 256) == 55  # DESIGN 2.3
  assert compression.num_tokens((), 50) == 50


def test_schedule_longer_than_max_len_is_rejected():
  with pytest.raises(ValueError, match="covers 12 positions, more than max_len=10"):
    compression.validate_schedule(((4, 2), (2, 2)), 10)
  with pytest.raises(ValueError, match="must be >= 1"):
    compression.validate_schedule(((0, 2),), 10)


def test_masked_mean_by_hand():
  x = jnp.asarray([[[1.], [3.], [5.]], [[2.], [4.], [6.]]])
  valid = jnp.asarray([[False, True, True], [False, False, False]])
  np.testing.assert_allclose(compression.masked_mean(x, valid, 1), [[4.], [0.]])


@pytest.mark.parametrize("pool", compression.POOLS)
def test_compressor_groups(pool):
  sched = ((4, 1), (2, 2))
  b, l, d = 2, 10, 8
  x = jax.random.normal(jax.random.PRNGKey(0), (b, l, d))
  # row 0: positions 0..4 padding -> group 0 (0-3) empty, group 1 (4-5) partial, group 2 full.
  valid = jnp.asarray([[False] * 5 + [True] * 5, [True] * 10])
  mod = compression.Compressor(sched, num_heads=2, mlp_hidden=16, pool=pool, impl="xla")
  params = mod.init(jax.random.PRNGKey(1), x, valid)
  groups, gvalid, raw, raw_valid = mod.apply(params, x, valid)
  assert groups.shape == (b, 3, d) and raw.shape == (b, 2, d)
  np.testing.assert_array_equal(gvalid, [[False, True, True], [True, True, True]])
  np.testing.assert_array_equal(raw, x[:, 8:])
  np.testing.assert_array_equal(raw_valid, valid[:, 8:])
  np.testing.assert_allclose(groups[0, 0], 0.0)  # all-padding group -> zero token
  # padded positions' values never leak into any group token
  x2 = x.at[0, :5].set(100.0)
  groups2 = mod.apply(params, x2, valid)[0]
  np.testing.assert_allclose(groups2[0], groups[0], atol=1e-5)
  # window-4 groups and window-2 groups have separate weights
  names = set(params["params"])
  assert any("window_4" in n for n in names) and any("window_2" in n for n in names)


def test_ffn_pool_is_mean_then_residual_ffn():
  """pool="ffn": group token = m + SwiGLU(RMSNorm(m)), m = masked mean of the group."""
  sched, d = ((3, 2),), 4
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 7, d))
  valid = jnp.asarray([[False, True, True, True, True, True, True]])
  mod = compression.Compressor(sched, num_heads=2, mlp_hidden=6, pool="ffn")
  params = mod.init(jax.random.PRNGKey(1), x, valid)
  groups = mod.apply(params, x, valid)[0]
  p = nn.unbox(params)["params"]
  ffn, scale = p["window_3_ffn"], p["window_3_ffn_norm"]["scale"]
  for g, m in enumerate([(x[0, 1] + x[0, 2]) / 2, x[0, 3:6].mean(0)]):
    n = m / np.sqrt(np.mean(m * m) + 1e-6) * scale
    h = jax.nn.silu(n @ ffn["gate"]["kernel"]) * (n @ ffn["up"]["kernel"])
    np.testing.assert_allclose(groups[0, g], m + h @ ffn["down"]["kernel"], rtol=1e-5,
                               atol=1e-6)


def test_no_schedule_passes_everything_raw():
  x = jnp.ones((1, 5, 4))
  valid = jnp.ones((1, 5), bool)
  mod = compression.Compressor((), 2, 8)
  groups, _, raw, _ = mod.apply({}, x, valid)
  assert groups is None and raw.shape == (1, 5, 4)
