"""8-device checks of the sharded train step (run by test_sharded_training.py).

Prints `RESULT {json}`: measured differences against one device, shardings, donation, a
save-on-8 / restore-on-4-and-1 checkpoint round trip and the bad-input errors, for the test
to assert on. One process for all of it: every compile costs seconds of CPU here.
"""
import functools
import json
import os
import sys
import tempfile

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import SingleDeviceSharding

from configs import base
from mpformer_jax.data import pipeline
from mpformer_jax.data.registry import make_source
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.parallel.sharding import Layout, MeshJit
from mpformer_jax.train import state as st
from mpformer_jax.train.checkpoint import Checkpointer, abstract_target
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


def sharded_run(model, tx, config, batch, loss_fn, ref_state, full: bool):
  """Loss + grads on the global batch on the config's mesh; with `full`, the state comes from
  `init_state` on the mesh and one donated train step follows (else the reference state is
  placed with the layout's shardings: each init compile costs ~10 s of CPU)."""
  layout = Layout.from_config(config)
  if full:
    state, _ = st.init_state(model, tx, batch, config.seed, layout)
  else:
    _, shardings = st.abstract_state(model, tx, batch, layout)
    state = jax.device_put(ref_state, shardings)
  gbatch = layout.shard_batch(batch)
  grad_fn = MeshJit(jax.jit(jax.value_and_grad(loss_fn, has_aux=True)), layout)
  (loss, _), grads = grad_fn(state.params, gbatch)
  table = state.params["item_table"]["embedding"]
  out = dict(
      mesh=dict(layout.mesh.shape), loss=float(loss),
      init_err=tree_err(jax.device_get(ref_state.params), state.params),
      table_spec=spec_of(table), table_shard=list(table.addressable_shards[0].data.shape),
      table_devices=len(table.sharding.device_set),
      table_grad_spec=spec_of(grads["item_table"]["embedding"]),
      moment_spec=spec_of(state.opt_state[1][0].mu["item_table"]["embedding"]),
      batch_spec=spec_of(gbatch["history_ids"]),
      batch_shard=list(gbatch["history_ids"].addressable_shards[0].data.shape),
      dense_specs=sorted({str(spec_of(x)) for p, x in jax.tree_util.tree_leaves_with_path(
          state.params) if "item_table" not in jax.tree_util.keystr(p) and x.ndim == 2}))
  if not full:
    return out, grads, None
  step = st.make_train_step(model, tx, config, layout, st.shardings_of(state))
  old_leaves = jax.tree.leaves(state)
  new_state, metrics = step(state, gbatch)
  out.update(step_loss=float(metrics["loss"]),
             donated=all(x.is_deleted() for x in old_leaves),
             step_table_spec=spec_of(new_state.params["item_table"]["embedding"]))
  return out, grads, new_state


def catalogue_check(tx, source, batch) -> dict:
  """The recipe's sparse path: loss.negatives="catalogue" (+ next-item loss) and
  model.output_skip="newest" (history items embedded through the table too): mesh 2 x 4 (the
  vocabulary-parallel table) against one device, loss and gradients."""
  c = base.get_config("tiny")
  c.loss.update(negatives="catalogue", kind="softmax", aux_next_item=0.5, temperature=0.2)
  c.model.output_skip = "newest"
  model = Retriever(source.spec, ModelConfig.from_config(c.model, c.data.max_len))
  loss_fn = st.make_loss_fn(model, c, pipeline.item_corpus_features(source))
  ref_state, _ = st.init_state(model, tx, batch, c.seed)
  (ref_loss, _), ref_grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      ref_state.params, batch)
  c.mesh.data, c.mesh.model = 2, 4
  out, grads, _ = sharded_run(model, tx, c, batch, loss_fn, ref_state, full=False)
  return dict(ref_loss=float(ref_loss), loss_err=abs(out["loss"] - float(ref_loss)) / abs(
      float(ref_loss)), grad_err=tree_err(ref_grads, grads))


def dropout_check(source, tx, batch, ref_state) -> dict:
  """model.dropout with a fixed key: mesh 2 x 4 against one device (the masks must not
  depend on the sharding), plus the loss without dropout for contrast."""
  c = base.get_config("tiny")
  c.model.dropout = 0.3
  model = Retriever(source.spec, ModelConfig.from_config(c.model, c.data.max_len))
  loss_fn = functools.partial(st.make_loss_fn(model, c), dropout_rng=jax.random.PRNGKey(7))
  (ref_loss, _), ref_grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      ref_state.params, batch)
  plain_loss, _ = jax.jit(st.make_loss_fn(model, c))(ref_state.params, batch)
  c.mesh.data, c.mesh.model = 2, 4
  out, grads, _ = sharded_run(model, tx, c, batch, loss_fn, ref_state, full=False)
  return dict(ref_loss=float(ref_loss), plain_loss=float(plain_loss),
              loss_err=abs(out["loss"] - float(ref_loss)) / abs(float(ref_loss)),
              grad_err=tree_err(ref_grads, grads))


def solar_check(source, tx, batch) -> dict:
  """model.long_history="solar" (SVD-Attention memory): mesh 4 x 2 with FSDP against one
  device, loss and gradients."""
  c = base.get_config("tiny")
  c.model.long_history = "solar"
  c.model.compression.schedule = ()
  c.model.solar.update(rank=8, recent=8)
  model = Retriever(source.spec, ModelConfig.from_config(c.model, c.data.max_len))
  loss_fn = st.make_loss_fn(model, c)
  ref_state, _ = st.init_state(model, tx, batch, c.seed)
  (ref_loss, _), ref_grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      ref_state.params, batch)
  c.mesh.data, c.mesh.model = 4, 2
  c.parallel.fsdp = True
  out, grads, _ = sharded_run(model, tx, c, batch, loss_fn, ref_state, full=False)
  return dict(ref_loss=float(ref_loss), loss_err=abs(out["loss"] - float(ref_loss)) / abs(
      float(ref_loss)), grad_err=tree_err(ref_grads, grads))


def checkpoint_roundtrip(model, tx, batch, state) -> dict:
  """Save the 8-device state; restore it onto 4 devices (mesh 1 x 4) and onto 1 device."""
  directory = tempfile.mkdtemp()
  ckpt = Checkpointer(directory)
  ckpt.save(1, state, {"next_index": 7})
  ckpt.close()
  saved = jax.device_get(state)
  out = {}
  for name in ("4", "1"):
    if name == "4":
      c = base.get_config("tiny")
      c.mesh.data, c.mesh.model = 1, 4
      layout = Layout.from_config(c, devices=jax.devices()[:4])
      abstract, shardings = st.abstract_state(model, tx, batch, layout)
    else:
      abstract, _ = st.abstract_state(model, tx, batch)
      shardings = jax.tree.map(lambda _: SingleDeviceSharding(jax.devices()[0]),
                               nn.meta.unbox(abstract))
    target = abstract_target(nn.meta.unbox(abstract), shardings)
    restored, data = Checkpointer(directory).restore(1, target)
    table = restored.params["item_table"]["embedding"]
    out[name] = dict(
        identical=all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                      zip(jax.tree.leaves(saved), jax.tree.leaves(restored))),
        num_leaves=len(jax.tree.leaves(restored)), data_state=data,
        table_devices=len(table.sharding.device_set),
        table_shard=list(table.addressable_shards[0].data.shape),
        step=int(restored.step))
  return out


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
  for name, mesh, fsdp in (("dp2_mp4", (2, 4), False), ("fsdp4_mp2", (4, 2), True)):
    c = base.get_config("tiny")
    c.mesh.data, c.mesh.model = mesh
    c.parallel.fsdp = fsdp
    full = name == "dp2_mp4"
    out, grads, new_state = sharded_run(model, tx, c, batch, loss_fn, ref_state, full)
    out["grad_err"] = tree_err(ref_grads, grads)
    out["loss_err"] = abs(out["loss"] - float(ref_loss)) / abs(float(ref_loss))
    result[name] = out
    if full:
      result["checkpoint"] = checkpoint_roundtrip(model, tx, batch, new_state)
  result["catalogue"] = catalogue_check(tx, source, batch)
  result["dropout"] = dropout_check(source, tx, batch, ref_state)
  result["solar"] = solar_check(source, tx, batch)
  result["errors"] = bad_inputs(config)
  print("RESULT " + json.dumps(result))


if __name__ == "__main__":
  sys.exit(main())
