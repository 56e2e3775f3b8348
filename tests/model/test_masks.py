"""Backbone masks: no token sees the future; queries see only their own objective's past."""
import jax.numpy as jnp
import numpy as np

from mpformer_jax.model import masks


def test_context_is_causal_and_queries_causal_among_themselves():
  c, k = 4, 3
  m = masks.static_structure(c, 1, k)
  for i in range(c + k):
    for j in range(c + k):
      if j > i:
        assert not m[i, j], (i, j)  # nothing sees the future
  for a in range(k):  # query a sees every context token and queries 0..a
    assert m[c + a, :c].all()
    np.testing.assert_array_equal(m[c + a, c:], np.arange(k) <= a)


def test_objectives_do_not_see_each_other():
  c, o, k = 2, 3, 2
  m = masks.static_structure(c, o, k)
  for oi in range(o):
    rows = slice(c + oi * k, c + (oi + 1) * k)
    for oj in range(o):
      cols = slice(c + oj * k, c + (oj + 1) * k)
      if oi == oj:
        np.testing.assert_array_equal(m[rows, cols], np.tril(np.ones((k, k), bool)))
      else:
        assert not m[rows, cols].any()
  assert not m[:c, c:].any()  # context never sees queries


def test_padding_keys_masked_and_diagonal_kept():
  valid = jnp.asarray([[False, True, True], [False, False, True]])
  m = np.asarray(masks.backbone_mask(valid, 1, 2))[:, 0]
  assert m.shape == (2, 5, 5)
  assert not m[0, 1:, 0].any()      # padding key 0 invisible to later tokens
  assert m[1, 1, 1] and m[1, 0, 0]  # padding rows still see themselves: no empty row
  assert m.any(axis=-1).all()
  np.testing.assert_array_equal(m[1, 3], [False, False, True, True, False])


def test_positions():
  np.testing.assert_array_equal(masks.backbone_positions(3, 2, 2), [0, 1, 2, 3, 4, 3, 4])
