"""Pallas compress_attention vs the pure-jnp reference (interpret mode on CPU)."""
import functools

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpformer_jax.kernels import compress_attention as ca
from mpformer_jax.kernels import dispatch

TOL = {jnp.float32: dict(rtol=1e-5, atol=1e-5),
       jnp.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def _inputs(seed, batch, heads, dim, ids, dtype, mask="left"):
  """Random q/k/v/cotangent and a padding mask (left-padded or random)."""
  rng = np.random.default_rng(seed)
  length, groups = len(ids), int(ids.max()) + 1
  q, k, v = (jnp.asarray(rng.normal(size=(batch, length, heads, dim)), dtype)
             for _ in range(3))
  ct = jnp.asarray(rng.normal(size=(batch, groups, heads, dim)), jnp.float32)
  if mask == "left":  # Row 0 fully valid, later rows left-padded.
    pads = [0] + list(rng.integers(0, length + 1, size=batch - 1))
    valid = np.arange(length)[None, :] >= np.asarray(pads)[:, None]
  else:
    valid = rng.random((batch, length)) < 0.6
  return q, k, v, jnp.asarray(valid), ct


@functools.lru_cache(maxsize=None)
def _runner(impl: str, ids_key: tuple, block_sizes):
  """Jitted (out, dq, dk, dv) for loss = sum(out * ct); cached per config."""
  ids = np.asarray(ids_key)
  if impl == "kernel":
    fn = functools.partial(ca.compress_attention, block_sizes=block_sizes,
                           interpret=True)
  else:
    fn = ca.compress_attention_reference

  def loss(q, k, v, valid, ct):
    out = fn(q, k, v, ids, valid)
    return jnp.sum(out.astype(jnp.float32) * ct), out

  def run(q, k, v, valid, ct):
    (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2),
                                         has_aux=True)(q, k, v, valid, ct)
    return (out, *grads)

  return jax.jit(run)


def _compare(ids, batch, heads, dim, dtype, seed=0, mask="left",
             block_sizes=None):
  args = _inputs(seed, batch, heads, dim, ids, dtype, mask)
  key = tuple(int(i) for i in ids)
  got = _runner("kernel", key, block_sizes)(*args)
  want = _runner("reference", key, None)(*args)
  for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
    assert g.dtype == jnp.dtype(dtype) and g.shape == w.shape, name
    assert np.all(np.isfinite(np.asarray(g, np.float32))), name
    np.testing.assert_allclose(np.asarray(g, np.float32),
                               np.asarray(w, np.float32), err_msg=name,
                               **TOL[dtype])
  return args, got


CASES = [  # (schedule, batch, heads, dim, dtype, mask)
    (((64, 2), (16, 5)), 2, 2, 16, jnp.float32, "left"),    # Paper schedule.
    (((4, 6),), 1, 1, 16, jnp.float32, "random"),
    (((256, 1),), 1, 1, 32, jnp.float32, "left"),
    (((4, 3), (16, 2), (64, 1), (8, 4)), 3, 3, 24, jnp.float32, "left"),
    (((48, 1), (12, 3), (5, 2)), 2, 4, 128, jnp.float32, "random"),
    (((64, 2), (16, 5)), 2, 2, 32, jnp.bfloat16, "left"),
    (((256, 1), (32, 2), (4, 2)), 2, 1, 64, jnp.bfloat16, "random"),
]


@pytest.mark.parametrize("schedule,batch,heads,dim,dtype,mask", CASES)
def test_matches_reference(schedule, batch, heads, dim, dtype, mask):
  ids = ca.group_ids_from_schedule(schedule, 1024)
  _compare(ids, batch, heads, dim, dtype, mask=mask)


@pytest.mark.parametrize("skip", [True, False])
def test_small_tiles_span_groups(skip):
  """Tiles smaller than a window: multi-tile groups and tile skipping."""
  tiles = (16, 32, 32, 16) if skip else (16, 16, 16, 16)  # q/k, fwd/bwd.
  bs = ca.BlockSizes(*tiles, min_block=16, skip_empty_tiles=skip,
                     num_warps=None, num_stages=None)
  ids = ca.group_ids_from_schedule(((64, 1), (16, 3), (8, 2)), 256)
  _compare(ids, 2, 2, 16, jnp.float32, mask="random", block_sizes=bs)


@hypothesis.settings(max_examples=3, deadline=None, derandomize=True)
@hypothesis.given(
    schedule=st.lists(st.tuples(st.sampled_from([4, 7, 16, 32, 64]),
                                st.integers(1, 3)), min_size=1, max_size=3),
    batch=st.integers(1, 3), heads=st.integers(1, 4),
    dim=st.sampled_from([16, 40]), seed=st.integers(0, 2**16))
def test_random_schedules(schedule, batch, heads, dim, seed):
  ids = ca.group_ids_from_schedule(tuple(schedule), 1024)
  _compare(ids, batch, heads, dim, jnp.float32, seed=seed, mask="random")


@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_all_padding_group_is_exactly_zero(impl):
  ids = ca.group_ids_from_schedule(((16, 2), (4, 4)), 256)
  q, k, v, _, ct = _inputs(1, 2, 2, 16, ids, jnp.float32)
  valid = np.ones((2, len(ids)), bool)
  valid[0, :20] = False   # Group 0 empty, group 1 partial.
  valid[1, 32:36] = False  # Group 2 (first window-4 group) empty.
  out, dq, dk, dv = _runner(impl, tuple(int(i) for i in ids), None)(
      q, k, v, jnp.asarray(valid), ct)
  for b, g, sl in ((0, 0, slice(0, 16)), (1, 2, slice(32, 36))):
    assert np.all(np.asarray(out[b, g]) == 0.0)
    for grad in (dq, dk, dv):
      assert np.all(np.asarray(grad[b, sl]) == 0.0)
  assert np.all(np.isfinite(np.asarray(out)))
  # Invalid queries/keys of a partial group get no gradient either.
  for grad in (dq, dk, dv):
    assert np.all(np.asarray(grad[0, 16:20]) == 0.0)


def test_group_ids_from_schedule():
  ids = ca.group_ids_from_schedule(((64, 2), (16, 5)), 256)
  assert ids.shape == (208,) and ids.dtype == np.int32
  assert list(np.bincount(ids)) == [64, 64, 16, 16, 16, 16, 16]
  assert ca.group_ids_from_schedule((), 8).shape == (0,)
  with pytest.raises(ValueError, match="max_len"):
    ca.group_ids_from_schedule(((64, 4), (16, 1)), 256)
  with pytest.raises(ValueError, match="window"):
    ca.group_ids_from_schedule(((0, 2),), 256)


@hypothesis.settings(max_examples=50, deadline=None)
@hypothesis.given(sizes=st.lists(st.integers(1, 70), min_size=1, max_size=20),
                  min_block=st.sampled_from([16, 64]))
def test_plan_packs_whole_groups(sizes, min_block):
  ids = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
  plan = ca._make_plan(ids.tobytes(), len(ids), min_block)
  assert plan.wb >= max(sizes) and plan.wb & (plan.wb - 1) == 0
  real = plan.src_idx < len(ids)
  np.testing.assert_array_equal(plan.src_idx[real], np.arange(len(ids)))
  np.testing.assert_array_equal(plan.src_idx[plan.inv_idx], np.arange(len(ids)))
  blocks = plan.pos_group.reshape(plan.nb, plan.wb)
  for g in range(len(sizes)):  # Each group lives in exactly one block.
    assert np.sum(np.any(blocks == g, axis=1)) == 1
  assert np.all(plan.seg[~real] == ca._PAD)


def _arrays(shape=(2, 8, 2, 16), dtype=jnp.float32):
  x = jnp.zeros(shape, dtype)
  return x, x, x, np.repeat(np.arange(2), 4), jnp.ones(shape[:2], bool)


@pytest.mark.parametrize("fn", [
    functools.partial(ca.compress_attention, interpret=True),
    ca.compress_attention_reference])
def test_bad_inputs(fn):
  q, k, v, ids, valid = _arrays()
  cases = [
      ((q, k[:, :4], v, ids, valid), "shape"),
      ((q[0], k[0], v[0], ids, valid), "shape"),
      ((q, k, v, ids[:4], valid), "group_ids"),
      ((q, k, v, np.array([0, 0, 2, 2, 2, 2, 3, 3]), valid), "contiguous"),
      ((q, k, v, np.array([0, 0, 1, 1, 0, 0, 1, 1]), valid), "contiguous"),
      ((q, k, v, ids + 1, valid), "contiguous"),
      ((q, k, v, ids.astype(float), valid), "integers"),
      ((q, k, v, ids, valid[:, :4]), "valid"),
      ((q, k, v, ids, valid.astype(jnp.float32)), "valid"),
      ((q.astype(jnp.float16), k.astype(jnp.float16), v.astype(jnp.float16),
        ids, valid), "float32 or bfloat16"),
      ((q, k.astype(jnp.bfloat16), v, ids, valid), "float32 or bfloat16"),
      ((q.astype(jnp.int32), k.astype(jnp.int32), v.astype(jnp.int32), ids,
        valid), "float32 or bfloat16"),
  ]
  for args, match in cases:
    with pytest.raises(ValueError, match=match):
      fn(*args)
  with pytest.raises(ValueError, match="static"):
    jax.jit(lambda i: fn(q, k, v, i, valid))(jnp.asarray(ids))


def test_block_sizes():
  with pytest.raises(ValueError, match="power of two"):
    ca.BlockSizes(block_q=48)
  for backend in ("cpu", "gpu", "tpu"):
    bs = ca.BlockSizes.get_default(backend)
    assert bs.block_q >= 16 and hash(bs) == hash(ca.BlockSizes.get_default(backend))
  assert ca.BlockSizes.get_default() == ca.BlockSizes.get_default(
      jax.default_backend())


def test_dispatch():
  ids = ca.group_ids_from_schedule(((16, 2), (4, 4)), 64)
  q, k, v, valid, _ = _inputs(3, 2, 2, 16, ids, jnp.float32)
  want = ca.compress_attention_reference(q, k, v, ids, valid)
  for impl in ("auto", "xla", "pallas"):
    got = dispatch.compress_attention_op(q, k, v, ids, valid, impl=impl)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5,
                               atol=1e-5)
  with pytest.raises(ValueError, match="impl"):
    dispatch.compress_attention_op(q, k, v, ids, valid, impl="cuda")
