"""8-device checks of the sharded train step (run by test_sharded_training.py).

Prints `RESULT {json}`: measured differences against one device, shardings, donation and
the bad-input errors, for the test to assert on.
"""
import json
import os
import sys
import tempfile

import jax
import numpy as np

from configs import base
from mpformer_jax.data import pipeline
from mpformer_jax.data.registry import make_source
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.parallel.sharding import Layout, MeshJit
from mpformer_jax.train import state as st
from mpformer_jax.train.loop import train_and_evaluate


def rel_err(a, b) -> float:
  """max |a - b| / max |a| over one leaf (0 when both are zero)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  scale = np.abs(a).max()
  return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(b).max())


def tree_err(a, b) -> float:
  return max(rel_err(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def spec_of(x) -> list:
  return [None if s is None else (s if isinstance(s, str) else list(s)) for s in x.sharding.spec]


def sharded_run(model, tx, config, batch, loss_fn, ref_params):
  """Init on the config's mesh, loss + grads on the global batch, one donated train step."""
  layout = Layout.from_config(config)
  state, _ = st.init_state(model, tx, batch, config.seed, layout)
  gbatch = layout.shard_batch(batch)
  grad_fn = MeshJit(jax.jit(jax.value_and_grad(loss_fn, has_aux=True)), layout)
  (loss, _), grads = grad_fn(state.params, gbatch)
  table = state.params["item_table"]["embedding"]
  out = dict(
      mesh=dict(layout.mesh.shape), loss=float(loss), init_err=tree_err(ref_params, state.params),
      table_spec=spec_of(table), table_shard=list(table.addressable_shards[0].data.shape),
      table_devices=len(table.sharding.device_set),
      table_grad_spec=spec_of(grads["item_table"]["embedding"]),
      moment_spec=spec_of(state.opt_state[1][0].mu["item_table"]["embedding"]),
      batch_spec=spec_of(gbatch["history_ids"]),
      batch_shard=list(gbatch["history_ids"].addressable_shards[0].data.shape),
      dense_specs=sorted({str(spec_of(x)) for p, x in jax.tree_util.tree_leaves_with_path(
          state.params) if "item_table" not in jax.tree_util.keystr(p) and x.ndim == 2}))
  step = st.make_train_step(model, tx, config, layout, st.shardings_of(state))
  old_leaves = jax.tree.leaves(state)
  new_state, metrics = step(state, gbatch)
  out.update(step_loss=float(metrics["loss"]),
             donated=all(x.is_deleted() for x in old_leaves),
             step_table_spec=spec_of(new_state.params["item_table"]["embedding"]))
  return out, grads


def bad_inputs(config) -> dict:
  """Bad mesh and batch sizes fail before anything is built (the workdir is not created)."""
  out = {}
  for name, updates in (("mesh", dict(data=3, model=1)), ("batch", dict(data=8, model=1))):
    c = base.get_config("tiny")
    c.mesh.update(updates)
    c.train.batch_size = 36
    workdir = os.path.join(tempfile.mkdtemp(), "never")
    try:
      train_and_evaluate(c, workdir)
      out[name] = "no error"
    except ValueError as e:
      out[name] = str(e)
    out[name + "_workdir_created"] = os.path.exists(workdir)
  return out


def main():
  config = base.get_config("tiny")
  source = make_source(config.data)
  model = Retriever(source.spec, ModelConfig.from_config(config.model, config.data.max_len))
  logq = pipeline.target_log_q(source, max_users=config.data.stats_max_users)
  it = pipeline.train_iterator(source, max_len=config.data.max_len,
                               batch_size=config.train.batch_size, seed=0, logq_table=logq)
  batch = st.device_batch(next(it))
  tx = st.make_optimizer(config.train)
  loss_fn = st.make_loss_fn(model, config)

  ref_state, _ = st.init_state(model, tx, batch, config.seed)  # one device, no mesh
  (ref_loss, _), ref_grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      ref_state.params, batch)
  result = dict(devices=jax.device_count(), ref_loss=float(ref_loss),
                table_rows=int(ref_state.params["item_table"]["embedding"].shape[0]))
  ref_params = jax.device_get(ref_state.params)
  for name, mesh, fsdp in (("dp2_mp4", (2, 4), False), ("fsdp4_mp2", (4, 2), True)):
    c = base.get_config("tiny")
    c.mesh.data, c.mesh.model = mesh
    c.parallel.fsdp = fsdp
    out, grads = sharded_run(model, tx, c, batch, loss_fn, ref_params)
    out["grad_err"] = tree_err(ref_grads, grads)
    out["loss_err"] = abs(out["loss"] - float(ref_loss)) / abs(float(ref_loss))
    result[name] = out
  result["errors"] = bad_inputs(config)
  print("RESULT " + json.dumps(result))


if __name__ == "__main__":
  sys.exit(main())
