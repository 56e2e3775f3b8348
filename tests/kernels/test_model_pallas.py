"""The model with pool="attention" gives the same loss and gradients with impl=xla and
impl=pallas (interpret mode on CPU), and the same 20-step training loss curve."""
import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import base
from mpformer_jax.data.synthetic import SyntheticPlatform
from mpformer_jax.data import pipeline
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.train.loop import train_and_evaluate
from mpformer_jax.train.metric_writer import read_metrics
from mpformer_jax.train.state import device_batch, make_loss_fn


def _config(impl):
  c = base.get_config("tiny")
  c.model.compression.pool = "attention"
  c.model.compression.impl = impl
  return c


def test_loss_and_gradients_match():
  config = _config("xla")
  source = SyntheticPlatform(**config.data.synthetic)
  logq = pipeline.target_log_q(source, max_users=200)
  batch = device_batch(next(pipeline.train_iterator(
      source, max_len=config.data.max_len, batch_size=64, seed=0, logq_table=logq)))
  # keep the 8 longest histories so the compressed groups hold real items
  rows = np.argsort(-(batch["history_ids"] > 0).sum(1))[:8]
  batch = {k: v[rows] for k, v in batch.items()}
  assert (batch["history_ids"][:, 0] > 0).any()
  cfg = ModelConfig.from_config(config.model, config.data.max_len)
  grads, losses = {}, {}
  params = None
  for impl in ("xla", "pallas"):
    model = Retriever(source.spec, dataclasses.replace(cfg, impl=impl))
    if params is None:
      params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch))["params"]
    loss_fn = make_loss_fn(model, config)
    (losses[impl], _), grads[impl] = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
  np.testing.assert_allclose(losses["pallas"], losses["xla"], rtol=1e-5)
  flat_x = jax.tree_util.tree_leaves_with_path(grads["xla"])
  flat_p = jax.tree.leaves(grads["pallas"])
  for (path, gx), gp in zip(flat_x, flat_p):
    np.testing.assert_allclose(gp, gx, rtol=1e-4, atol=1e-6, err_msg=str(path))
  # the compression weights do get gradient through the kernel
  comp = grads["pallas"]["compressor"]
  assert any(float(np.abs(g).max()) > 0 for g in jax.tree.leaves(comp))


@pytest.mark.slow   # ~75 s on 2 cores; the one-step loss and gradient check above stays default
def test_twenty_step_loss_curve_matches(tmp_path):
  curves = {}
  for impl in ("xla", "pallas"):
    c = _config(impl)
    c.train.update(num_steps=20, log_every_steps=5, eval_every_steps=100,
                   checkpoint_every_steps=100)
    c.eval.num_users = 64
    train_and_evaluate(c, str(tmp_path / impl))
    curves[impl] = [r["train/loss"] for r in read_metrics(str(tmp_path / impl))
                    if "train/loss" in r and not r.get("final")]
  assert len(curves["xla"]) == 4
  np.testing.assert_allclose(curves["pallas"], curves["xla"], rtol=1e-4)
