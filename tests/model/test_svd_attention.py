"""SVD-Attention against full softmax attention: exact under its condition, error vs rank."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpformer_jax.model import svd_attention as sa

svd_attention = jax.jit(sa.svd_attention, static_argnames="rank")
reference_attention = jax.jit(sa.reference_attention)


def repeated_keys(seed, b=2, n=200, m=7, h=2, d=8, dv=5, distinct=9):
  """Keys that repeat `distinct` vectors (per row), free queries and values, padding."""
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(b, distinct, h, d)).astype(np.float32)
  which = rng.integers(0, distinct, size=(b, n))
  which[:, :distinct] = np.arange(distinct)  # every distinct key occurs
  rng.shuffle(which, axis=1)
  q = rng.normal(size=(b, m, h, d)).astype(np.float32)
  v = rng.normal(size=(b, n, h, dv)).astype(np.float32)
  valid = np.ones((b, n), bool)
  valid[1, : n // 3] = False  # left padding
  return q, table, which, v, valid


def gather(table, which):
  return jnp.take_along_axis(table, jnp.asarray(which)[:, :, None, None], axis=1)


def test_hand_computed_case():
  """Two copies of k1 and one k2, rank 2: out = (2 e^{a} v1 + e^{b} v2) / (2 e^{a} + e^{b})."""
  k1, k2 = np.array([1.0, 0.0]), np.array([0.0, 2.0])
  k = np.stack([k1, k2, k1])[None, :, None, :].astype(np.float32)
  v = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0]], np.float32)[None, :, None, :]
  q = np.array([[0.5, 1.0]], np.float32)[None, :, None, :]
  a, b = np.exp(0.5 / np.sqrt(2)), np.exp(2.0 / np.sqrt(2))
  want = (a * (v[0, 0, 0] + v[0, 2, 0]) + b * v[0, 1, 0]) / (2 * a + b)
  got = svd_attention(q, k, v, np.ones((1, 3), bool), rank=2)
  np.testing.assert_allclose(np.asarray(got)[0, 0, 0], want, rtol=1e-5)


def test_landmarks_take_each_distinct_key_once():
  _, table, which, _, valid = repeated_keys(1)
  k = gather(table, which)
  idx, taken = sa.farthest_point_landmarks(k.reshape(k.shape[0], k.shape[1], -1), valid, 12)
  for row in range(k.shape[0]):
    picked = np.asarray(which)[row, np.asarray(idx)[row][np.asarray(taken)[row]]]
    assert sorted(picked) == list(range(9))            # 9 distinct: each once
    assert np.asarray(valid)[row, np.asarray(idx)[row]].all()
  assert not np.asarray(taken)[:, 9:].any()            # the rest repeat: dropped


@pytest.mark.parametrize("seed,rank", [(0, 9), (1, 12), (2, 32)])
def test_exact_when_keys_take_at_most_rank_values(seed, rank):
  """Outputs and gradients (queries, the distinct keys, values) equal full attention."""
  q, table, which, v, valid = repeated_keys(seed)

  def loss(fn, q, table, v):
    return jnp.sum(jnp.sin(fn(q, gather(table, which), v, valid)))

  svd = lambda q, k, v, valid: sa.svd_attention(q, k, v, valid, rank)
  np.testing.assert_allclose(svd_attention(q, gather(table, which), v, valid, rank=rank),
                             reference_attention(q, gather(table, which), v, valid),
                             atol=2e-5)
  got = jax.jit(jax.grad(lambda *a: loss(svd, *a), argnums=(0, 1, 2)))(q, table, v)
  want = jax.jit(jax.grad(lambda *a: loss(sa.reference_attention, *a),
                          argnums=(0, 1, 2)))(q, table, v)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=2e-5 * max(1.0, float(jnp.max(jnp.abs(w)))))


def test_no_valid_key_reads_zeros_with_finite_gradients():
  q, table, which, v, valid = repeated_keys(3)
  valid[0] = False
  out = svd_attention(q, gather(table, which), v, valid, rank=8)
  assert np.all(np.asarray(out)[0] == 0) and np.isfinite(np.asarray(out)).all()
  g = jax.jit(jax.grad(lambda t: jnp.sum(sa.svd_attention(q, gather(t, which), v, valid,
                                                          8))))(table)
  assert np.isfinite(np.asarray(g)).all()


def relative_error(rank, keys, q, v, valid):
  got = svd_attention(q, keys, v, valid, rank=rank)
  want = reference_attention(q, keys, v, valid)
  return float(jnp.sqrt(jnp.mean((got - want) ** 2) / jnp.mean(want ** 2)))


def test_error_against_rank_on_keys_outside_the_condition():
  """Distinct keys: a bounded error (a positive average of values) that is small on keys
  near a few centres once r covers them, and vanishes at r = N on well-separated keys.
  The errors are printed (pytest -s); benchmarks/solar.py charts them at N = 4,096."""
  rng = np.random.default_rng(4)
  b, n, h, d = 2, 128, 2, 8
  centres = rng.normal(size=(b, 6, h, d))
  which = rng.integers(0, 6, size=(b, n))
  q = rng.normal(size=(b, 16, h, d)).astype(np.float32)
  v = rng.normal(size=(b, n, h, 4)).astype(np.float32)
  valid = np.ones((b, n), bool)
  ranks = (2, 4, 8, 16, 32, 64, 128)
  for noise in (0.05, 1.0):  # clustered (near low rank) and unstructured keys
    keys = (np.take_along_axis(centres, which[:, :, None, None], 1)
            + noise * rng.normal(size=(b, n, h, d))).astype(np.float32)
    errors = {r: relative_error(r, keys, q, v, valid) for r in ranks}
    print(f"keys = 6 centres + {noise} noise, N={n}: relative error by rank", errors)
    assert all(np.isfinite(e) and e < 2.0 for e in errors.values()), errors
    if noise < 0.1:
      assert max(errors[r] for r in ranks if r >= 8) < 0.1, errors
    else:
      assert errors[128] < 0.1 and errors[128] < errors[2] / 10, errors
