"""The causal BSARec filter: a hand-computed window mean, gradients against a loop
reference, and no position of the model seeing a later item."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpformer_jax.model.frequency import FrequencyFilter, causal_window_mean
from mpformer_jax.model.retriever import Retriever
from tests.model.test_retriever import SPEC, assert_newest_item_unseen, model_cfg, toy_batch


def loop_window_mean(x, valid, window):
  """Reference: position by position, the mean of the valid rows in the window."""
  rows = []
  for t in range(x.shape[1]):
    lo = max(0, t - window + 1)
    w = valid[:, lo:t + 1, None].astype(x.dtype)
    rows.append(jnp.sum(x[:, lo:t + 1] * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0))
  return jnp.stack(rows, axis=1)


def test_window_mean_by_hand():
  x = jnp.array([[9.0, 1.0, 2.0, 3.0, 4.0]])[..., None]
  valid = jnp.array([[False, True, True, True, True]])
  got = causal_window_mean(x, valid, 2)[0, :, 0]
  # padding -> 0; [1] -> 1; [1, 2] -> 1.5; [2, 3] -> 2.5; [3, 4] -> 3.5
  np.testing.assert_allclose(got, [0.0, 1.0, 1.5, 2.5, 3.5])
  np.testing.assert_allclose(causal_window_mean(x, valid, 1)[0, :, 0], [0, 1, 2, 3, 4])


@pytest.mark.parametrize("window", [1, 3, 7, 20])
def test_window_mean_and_grad_match_the_loop(window):
  rng = np.random.default_rng(window)
  x = jnp.asarray(rng.normal(size=(3, 11, 4)), jnp.float32)
  valid = jnp.asarray(rng.random((3, 11)) > 0.3)
  np.testing.assert_allclose(causal_window_mean(x, valid, window),
                             loop_window_mean(x, valid, window), rtol=1e-5, atol=1e-6)
  probe = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  grad = jax.grad(lambda a: jnp.sum(causal_window_mean(a, valid, window) * probe))(x)
  ref = jax.grad(lambda a: jnp.sum(loop_window_mean(a, valid, window) * probe))(x)
  np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-6)


def test_filter_is_low_plus_beta_high():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 6, 4)), jnp.float32)
  valid = jnp.ones((2, 6), bool)
  f = FrequencyFilter(3)
  params = f.init(jax.random.PRNGKey(0), x, valid)
  sqrt_beta = np.array([0.0, 1.0, 2.0, -1.0], np.float32)
  params = {"params": {"sqrt_beta": nn.meta.unbox(params)["params"]["sqrt_beta"] * 0
                       + sqrt_beta}}
  low = loop_window_mean(x, valid, 3)
  np.testing.assert_allclose(f.apply(params, x, valid), low + sqrt_beta ** 2 * (x - low),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("schedule", [(), ((4, 1), (2, 2))])
def test_no_position_sees_a_later_item(schedule):
  """Changing the newest item leaves every earlier raw token's output unchanged (the
  next-item loss at every token stays honest); the filter is on and changes the model."""
  cfg = model_cfg(objectives=("click",), schedule=schedule, freq_mix=0.7, freq_window=3)
  model = Retriever(SPEC, cfg)
  batch = toy_batch()
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch))
  assert "freq" in params["params"]["blocks_0"]
  out, _ = model.apply(params, batch)
  assert_newest_item_unseen(model, params, batch, out)
  plain = Retriever(SPEC, dataclasses.replace(cfg, freq_mix=0.0))
  without_freq = {name: ({k: v for k, v in p.items() if k != "freq"}
                         if name.startswith("blocks_") else p)
                  for name, p in params["params"].items()}
  plain_out, _ = plain.apply({"params": without_freq}, batch)
  assert not np.allclose(plain_out["item_outputs"], out["item_outputs"])
