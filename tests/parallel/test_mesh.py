"""Mesh shapes, rules, batch checks and the lookup's plain-gather path (in process, any
device count; the 8-device checks run in subprocesses, see conftest.py)."""
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import base
from mpformer_jax.model.embeddings import VOCAB_ROW_MULTIPLE, ItemTable
from mpformer_jax.parallel import distributed, embedding, mesh
from mpformer_jax.parallel.sharding import Layout


@pytest.mark.parametrize("cfg,devices,shape", [
    (dict(data=-1, model=1), 8, (8, 1)), (dict(data=2, model=4), 8, (2, 4)),
    (dict(data=-1, model=4), 8, (2, 4)), (dict(data=2, model=2), 8, (2, 2)),
    (dict(data=1, model=-1), 1, (1, 1))])
def test_mesh_shape(cfg, devices, shape):
  assert mesh.mesh_shape(cfg, devices) == shape


@pytest.mark.parametrize("cfg,devices,match", [
    (dict(data=3, model=1), 8, "must divide the device count"),
    (dict(data=-1, model=3), 8, "must divide the device count"),
    (dict(data=4, model=4), 8, "must divide the device count"),
    (dict(data=-1, model=-1), 8, "at most one mesh axis"),
    (dict(data=0, model=1), 8, "positive size or -1")])
def test_bad_mesh_shapes(cfg, devices, match):
  with pytest.raises(ValueError, match=match):
    mesh.mesh_shape(cfg, devices)


def test_bad_batch_size():
  fake = types.SimpleNamespace(shape={"data": 4, "model": 2})
  mesh.check_batch_size(32, fake, mesh.DEFAULT_RULES, num_processes=1)
  with pytest.raises(ValueError, match="batch_size=30 is not divisible by the data-parallel "
                                       "size 4"):
    mesh.check_batch_size(30, fake, mesh.DEFAULT_RULES, num_processes=1)
  with pytest.raises(ValueError, match="not divisible by the 3 processes"):
    mesh.check_batch_size(32, fake, mesh.DEFAULT_RULES, num_processes=3)


def test_rules_from_config_and_fsdp():
  c = base.get_config("tiny")
  rules = mesh.axis_rules(c.parallel)
  assert rules == mesh.DEFAULT_RULES
  assert nn.logical_to_mesh_axes(("vocab", "embed"), rules) == P("model", None)
  assert nn.logical_to_mesh_axes(("embed", "mlp"), rules) == P(None, None)
  c.parallel.fsdp = True
  rules = mesh.axis_rules(c.parallel)
  assert nn.logical_to_mesh_axes(("embed", "mlp"), rules) == P("data", None)
  assert nn.logical_to_mesh_axes(("mlp", "embed"), rules) == P(None, "data")
  # Activations keep the batch on data; their embed dim falls through to unsharded.
  assert nn.logical_to_mesh_axes(("batch", "seq", "embed"), rules) == P("data", None, None)
  c.parallel.fsdp_axis = "mlp"
  rules = mesh.axis_rules(c.parallel)
  assert nn.logical_to_mesh_axes(("embed", "mlp"), rules) == P(None, "data")


def test_rules_name_unknown_mesh_axis():
  with pytest.raises(ValueError, match="mesh axis 'tensor'"):
    mesh.axis_rules({"rules": (("batch", ("data", "tensor")),)})


class _Unpadded(nn.Module):
  def setup(self):
    self.embedding = self.param("embedding", nn.initializers.normal(0.02), (501, 8))

  def __call__(self, ids):
    return self.embedding[ids]


def test_item_table_padding_keeps_real_rows():
  ids = jnp.array([[1, 500, 0]], jnp.int32)
  table = ItemTable(501, 8)
  params = table.init(jax.random.PRNGKey(0), ids)["params"]
  emb = nn.meta.unbox(params)["embedding"]
  assert emb.shape == (512, 8) and VOCAB_ROW_MULTIPLE == 128
  assert not np.asarray(emb[501:]).any()
  unpadded = _Unpadded().init(jax.random.PRNGKey(0), ids)["params"]["embedding"]
  np.testing.assert_array_equal(emb[:501], unpadded)  # same values as an unpadded table
  rows = table.apply({"params": params}, ids)
  np.testing.assert_array_equal(rows, jnp.take(emb, ids, axis=0))
  assert nn.get_partition_spec(params)["embedding"] == P("vocab", "embed")


def test_lookup_without_mesh_or_on_one_device_is_a_gather():
  table = jnp.arange(40.0).reshape(10, 4)
  ids = jnp.array([[3, 0], [9, 9]])
  np.testing.assert_array_equal(embedding.lookup(table, ids), table[ids])
  assert embedding.vocab_axes() == ()
  layout = Layout.from_config(base.get_config("tiny"), devices=jax.devices()[:1])
  with layout.context():
    assert embedding.vocab_axes() == ()  # model axis of size 1
    np.testing.assert_array_equal(jax.jit(embedding.lookup)(table, ids), table[ids])


def test_distributed_only_when_asked(monkeypatch):
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  assert not distributed.requested({"distributed": False})
  assert not distributed.maybe_initialize({"distributed": False})
  assert distributed.requested({"distributed": True})
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  assert distributed.requested({})
  assert distributed.per_host_batch_size(32) == 32 // jax.process_count()
