"""Hand-computed 3x3 in-batch loss with logQ correction and an accidental hit."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpformer_jax import losses

E = math.e
# Scores S[b, c] = <u_b, v_c> with v = identity; Q = (1/2, 1/4, 1/4); ids (7, 9, 7): candidate
# 2 is an accidental hit for row 0 and candidate 0 for row 2.
S = np.array([[2., 1., 0.], [0., 1., 1.], [1., 0., 3.]], np.float32)
LOGQ = np.log(np.array([0.5, 0.25, 0.25], np.float32))
IDS = np.array([7, 9, 7], np.int32)
# Corrected logits: row 0: (2 + ln2, 1 + ln4, masked) -> p = (e/(e+2), 2/(e+2), 0)
# row 1: (ln2, 1 + ln4, 1 + ln4) -> p = (2, 4e, 4e) / (2 + 8e)
# row 2: (masked, 0 + ln4, 3 + ln4) -> p = (0, 1/(1+e^3), e^3/(1+e^3))
P = np.array([[E / (E + 2), 2 / (E + 2), 0.0],
              [2 / (2 + 8 * E), 4 * E / (2 + 8 * E), 4 * E / (2 + 8 * E)],
              [0.0, 1 / (1 + E ** 3), E ** 3 / (1 + E ** 3)]])


def _logits():
  return losses.in_batch_logits(jnp.asarray(S)[:, None, :], jnp.eye(3), jnp.asarray(IDS),
                                jnp.asarray(LOGQ))


def test_probabilities_with_logq_and_accidental_hit():
  p = np.asarray(jnp.exp(jax_log_softmax(_logits())))
  np.testing.assert_allclose(p, P, atol=1e-6)


def jax_log_softmax(x):
  import jax
  return jax.nn.log_softmax(x, axis=-1)


def test_softmax_loss():
  loss, correct = losses.in_batch_loss(_logits(), kind="softmax")
  expected = [-math.log(P[0, 0]), -math.log(P[1, 1]), -math.log(P[2, 2])]
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_array_equal(correct, [True, True, True])


def test_smooth_logq_loss():
  a = 0.1
  loss, _ = losses.in_batch_loss(_logits(), kind="smooth_logq", alpha=a)
  expected = [
      -(1 - a) * math.log(P[0, 0]) - a / 3 * math.log(1 - P[0, 1]),  # c2 masked: log(1-0)=0
      -(1 - a) * math.log(P[1, 1]) - a / 3 * (math.log(1 - P[1, 0]) + math.log(1 - P[1, 2])),
      -(1 - a) * math.log(P[2, 2]) - a / 3 * math.log(1 - P[2, 1]),
  ]
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_label_smoothing_loss():
  a = 0.2
  loss, _ = losses.in_batch_loss(_logits(), kind="label_smoothing", alpha=a)
  expected = [
      -(1 - a) * math.log(P[0, 0]) - a * (math.log(P[0, 0]) + math.log(P[0, 1])) / 2,
      -(1 - a) * math.log(P[1, 1]) - a * np.log(P[1]).mean(),
      -(1 - a) * math.log(P[2, 2]) - a * (math.log(P[2, 1]) + math.log(P[2, 2])) / 2,
  ]
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_without_logq_correction():
  logits = losses.in_batch_logits(jnp.asarray(S)[:, None, :], jnp.eye(3), jnp.asarray(IDS),
                                  None)
  loss, _ = losses.in_batch_loss(logits, kind="softmax")
  # row 1 has no accidental hit: -log softmax(0, 1, 1)[1]
  assert float(loss[1]) == pytest.approx(-math.log(E / (1 + 2 * E)), rel=1e-5)


def test_max_over_interests():
  user = jnp.asarray([[[1., 0.], [0., 3.]]])  # one row, two interests
  cand = jnp.asarray([[2., 1.]])
  logits = losses.in_batch_logits(user, cand, jnp.asarray([1]), None)
  assert float(logits[0, 0]) == pytest.approx(3.0)


def test_unknown_kind():
  with pytest.raises(ValueError, match="loss.kind"):
    losses.in_batch_loss(_logits(), kind="bpr")


def test_multi_objective_rows_and_empty_objective():
  """Each objective averages over its positive rows; an objective with none gives 0, not NaN."""
  user = jnp.stack([jnp.asarray(S)[:, None, :]] * 2, axis=1)  # [B, O=2, k=1, d]
  batch = {"target_labels": jnp.asarray([[1., 0.], [0., 0.], [1., 0.]]),
           "target_id": jnp.asarray(IDS), "target_logq": jnp.asarray(LOGQ)}
  total, m = losses.retrieval_loss(user, jnp.eye(3), batch, objective_columns=(0, 1),
                                   objective_weights=(1.0, 2.0), kind="softmax", alpha=0.0,
                                   logq_correction=True)
  expected0 = (-math.log(P[0, 0]) - math.log(P[2, 2])) / 2
  assert float(m["loss/0"]) == pytest.approx(expected0, rel=1e-5)
  assert float(m["loss/1"]) == 0.0 and float(m["count/1"]) == 0.0
  assert float(total) == pytest.approx(expected0, rel=1e-5)


def test_next_item_loss_by_hand():
  item_out = jnp.asarray([[[1., 0.], [0., 1.]], [[1., 1.], [0., 0.]]])
  next_emb = jnp.asarray([[[2., 0.], [0., 1.]], [[1., 0.], [5., 5.]]])
  next_ids = jnp.asarray([[3, 4], [5, 0]])
  valid = jnp.asarray([[True, True], [True, False]])
  cand, cand_ids = jnp.asarray([[1., 0.], [0., 2.]]), jnp.asarray([4, 7])
  loss = losses.next_item_loss(item_out, next_emb, next_ids, valid, cand, cand_ids, None)
  ce = [math.log(E ** 2 + E + 1) - 2,   # row 0 pos 0: logits (2 | 1, 0)
        math.log(E + E ** 2) - 1,       # row 0 pos 1: (1 | masked hit id 4, 2)
        math.log(2 * E + E ** 2) - 1]   # row 1 pos 0: (1 | 1, 2); row 1 pos 1 invalid
  assert float(loss) == pytest.approx(sum(ce) / 3, rel=1e-6)


# Catalogue negatives: items 1..3 = (1, 0), (0, 1), (-1, 0); row 0 is padding, never scored.
ITEMS = jnp.asarray([[9., 9.], [1., 0.], [0., 1.], [-1., 0.]])


def test_catalogue_loss_by_hand():
  user = jnp.asarray([[[1., 0.]], [[1., 0.]]])           # [B=2, k=1, d=2]
  logits = losses.catalogue_logits(user, ITEMS)          # (masked | 1, 0, -1) per row
  rows, correct = losses.catalogue_loss(logits, jnp.asarray([1, 2]))
  z = math.log(E + 1 + 1 / E)
  np.testing.assert_allclose(rows, [z - 1, z - 0], rtol=1e-6)
  np.testing.assert_array_equal(correct, [True, False])


def test_catalogue_label_smoothing_by_hand():
  user = jnp.asarray([[[1., 0.]]])                       # logits (masked | 1, 0, -1)
  rows, _ = losses.catalogue_loss(losses.catalogue_logits(user, ITEMS), jnp.asarray([1]),
                                  smoothing=0.3)
  z = math.log(E + 1 + 1 / E)
  logp = [1 - z, 0 - z, -1 - z]                          # the padding column is not a class
  want = -(0.7 * logp[0]) - 0.3 * sum(logp) / 3
  assert float(rows[0]) == pytest.approx(want, rel=1e-6)
  with pytest.raises(ValueError, match='"softmax" or "label_smoothing"'):
    losses.catalogue_smoothing("smooth_logq", 0.1)
  assert losses.catalogue_smoothing("softmax", 0.1) == 0.0
  assert losses.catalogue_smoothing("label_smoothing", 0.1) == 0.1


def test_catalogue_label_smoothing_leaves_out_masked_items():
  """With loss.mask_seen the smoothing is uniform over the items left (a masked one is not a
  class): the loss stays the hand value, not a sum over -1e30 logits."""
  user = jnp.asarray([[[1., 0.]]])                       # logits (masked | 1, 0, -1)
  logits = losses.mask_seen(losses.catalogue_logits(user, ITEMS),
                            jnp.asarray([[-1, -1, -1, 0]]), jnp.asarray([0]), jnp.asarray([1]))
  rows, _ = losses.catalogue_loss(logits, jnp.asarray([1]), smoothing=0.3)
  z = math.log(E + 1)                                    # item 3 was seen: (masked | 1, 0, masked)
  want = -(0.7 * (1 - z)) - 0.3 * ((1 - z) + (0 - z)) / 2
  assert float(rows[0]) == pytest.approx(want, rel=1e-6)


def test_catalogue_next_item_label_smoothing_by_hand():
  item_out = jnp.asarray([[[1., 0.], [0., 1.]]])
  next_ids, valid = jnp.asarray([[1, 3]]), jnp.asarray([[True, True]])
  loss = losses.next_item_loss(item_out, None, next_ids, valid, None, None, None, items=ITEMS,
                               smoothing=0.2)
  z1, z2 = math.log(E + 1 + 1 / E), math.log(1 + E + 1)
  row1 = -(0.8 * (1 - z1)) - 0.2 * ((1 - z1) + (0 - z1) + (-1 - z1)) / 3
  row2 = -(0.8 * (0 - z2)) - 0.2 * ((0 - z2) + (1 - z2) + (0 - z2)) / 3
  assert float(loss) == pytest.approx((row1 + row2) / 2, rel=1e-6)


def test_catalogue_max_over_interests():
  user = jnp.asarray([[[1., 0.], [0., 2.]]])             # scores max(1, 0), max(0, 2), max(-1, 0)
  rows, correct = losses.catalogue_loss(losses.catalogue_logits(user, ITEMS, temperature=0.5),
                                        jnp.asarray([2]))
  assert float(rows[0]) == pytest.approx(math.log(E ** 2 + E ** 4 + 1) - 4, rel=1e-5)
  assert bool(correct[0])


def test_catalogue_next_item_loss_by_hand():
  item_out = jnp.asarray([[[1., 0.], [0., 1.]], [[0., 1.], [1., 0.]]])
  next_ids = jnp.asarray([[1, 3], [2, 0]])
  valid = jnp.asarray([[True, True], [True, False]])
  loss = losses.next_item_loss(item_out, None, next_ids, valid, None, None, None, items=ITEMS)
  z1 = math.log(E + 1 + 1 / E)  # (1, 0): logits (1, 0, -1)
  z2 = math.log(1 + E + 1)      # (0, 1): logits (0, 1, 0)
  assert float(loss) == pytest.approx(((z1 - 1) + (z2 - 0) + (z2 - 1)) / 3, rel=1e-6)


def test_catalogue_equals_in_batch_softmax_when_the_batch_is_the_catalogue():
  """Targets 1..N once each, no logQ: in-batch negatives are exactly the whole catalogue."""
  rng = np.random.default_rng(0)
  n, d = 5, 4
  items = jnp.asarray(rng.normal(size=(n + 1, d)), jnp.float32)
  user = jnp.asarray(rng.normal(size=(n, 1, 2, d)), jnp.float32)  # [B, O, k, d]
  batch = {"target_labels": jnp.ones((n, 1), jnp.int32),
           "target_id": jnp.arange(1, n + 1, dtype=jnp.int32),
           "target_logq": jnp.zeros((n,), jnp.float32)}
  kw = dict(objective_columns=(0,), objective_weights=(1.0,), kind="softmax", alpha=0.0,
            logq_correction=False, temperature=0.3)
  in_batch, _ = losses.retrieval_loss(user, items[1:], batch, **kw)
  catalogue, metrics = losses.retrieval_loss(user, items[1:], batch, items=items, **kw)
  assert float(catalogue) == pytest.approx(float(in_batch), rel=1e-5)
  assert 0.0 <= float(metrics["accuracy/0"]) <= 1.0


@pytest.mark.parametrize("catalogue", [False, True])
def test_packed_next_item_loss_matches_dense_forward_and_gradient(catalogue):
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  b, r, d, n = 3, 5, 4, 9
  item_out = jax.random.normal(k[0], (b, r, d))
  next_emb = jax.random.normal(k[1], (b, r, d))
  next_ids = jax.random.randint(k[2], (b, r), 1, n + 1)
  valid = jnp.asarray([[0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]], bool)  # 9 valid
  cand, cand_ids = jax.random.normal(k[3], (b, d)), next_ids[:, -1]
  items = jax.random.normal(k[3], (n + 1, d)) if catalogue else None

  def loss(out, budget):
    return losses.next_item_loss(out, next_emb, next_ids, valid, cand, cand_ids, None, 0.5,
                                 items, max_targets=budget)
  dense, g_dense = jax.value_and_grad(loss)(item_out, 0)
  packed, g_packed = jax.value_and_grad(loss)(item_out, 12)   # budget above the 9 valid
  np.testing.assert_allclose(packed, dense, rtol=1e-6)
  np.testing.assert_allclose(g_packed, g_dense, rtol=1e-5, atol=1e-7)
  # A budget of 4 keeps the first 4 valid positions in row-major order: row 0's three and
  # row 1's one; row 2's gradient is then zero.
  cut, g_cut = jax.value_and_grad(loss)(item_out, 4)
  keep = jnp.zeros((b, r), bool).at[0, 2:].set(True).at[1, 4].set(True)
  ref = losses.next_item_loss(item_out, next_emb, next_ids, keep, cand, cand_ids, None, 0.5,
                              items)
  np.testing.assert_allclose(cut, ref, rtol=1e-6)
  assert float(jnp.abs(g_cut[2]).max()) == 0.0


def test_first_seen_age_by_hand():
  """Left-padded histories [0, 3, 1, 3] and [0, 0, 0, 2] over ids 0..3: events between an
  item's first occurrence and the newest (item 3 first at position 1 of 4: 2), -1 where
  absent and for the padding id."""
  seen_age = losses.first_seen_age(jnp.asarray([[0, 3, 1, 3], [0, 0, 0, 2]]), 4)
  np.testing.assert_array_equal(seen_age, [[-1, 1, -1, 2], [-1, -1, 0, -1]])


def test_candidate_seen_age_by_hand():
  """Candidates 3, 2, 0 (padding), 5 in histories [0, 3, 1, 3] and [0, 0, 0, 2]: item 3 first
  2 events before row 0's newest, item 2 the newest of row 1; first_seen_age's columns."""
  hist = jnp.asarray([[0, 3, 1, 3], [0, 0, 0, 2]])
  cand = jnp.asarray([3, 2, 0, 5])
  got = losses.candidate_seen_age(hist, cand)
  np.testing.assert_array_equal(got, [[2, -1, -1, -1], [-1, 0, -1, -1]])
  np.testing.assert_array_equal(got, losses.first_seen_age(hist, 6)[:, cand])


def test_in_batch_mask_seen_by_hand():
  """Users (1, 0), (1, 0); candidates id 2 at (1, 0), id 3 at (0, 1): logits 1, 0 in both
  rows. Both histories hold item 3. Row 0 (target 2) loses candidate 3: loss 0 (else
  log(e + 1) - 1). Row 1's target is 3, a repeat: it stays, loss log(e + 1) - 0."""
  user = jnp.asarray([[[[1., 0.]]], [[[1., 0.]]]])       # [B=2, O=1, k=1, d=2]
  cand = jnp.asarray([[1., 0.], [0., 1.]])
  batch = {"target_labels": jnp.ones((2, 1), jnp.int32), "target_id": jnp.asarray([2, 3]),
           "target_logq": jnp.zeros((2,), jnp.float32)}
  kw = dict(objective_columns=(0,), objective_weights=(1.0,), kind="softmax", alpha=0.0,
            logq_correction=False)
  seen_age = losses.candidate_seen_age(jnp.asarray([[0, 3], [0, 3]]), batch["target_id"])
  masked, _ = losses.retrieval_loss(user, cand, batch, seen_age=seen_age, **kw)
  assert float(masked) == pytest.approx(math.log(E + 1) / 2, rel=1e-6)
  plain, _ = losses.retrieval_loss(user, cand, batch, **kw)
  assert float(plain) == pytest.approx(math.log(E + 1) - 0.5, rel=1e-6)


def test_in_batch_next_item_mask_seen_by_position():
  """History [1, 2, 3, 4], raw tokens items 2, 3, 4 (2, 1, 0 events before the newest), next
  ids 3, 4, 9; every output (1, 0), positives scored 0, candidates 2, 4, 7 each scored 1.
  Token 0 has seen item 2 only (item 4 comes later): log(1 + 2e). Token 1 loses 2 and 4
  (its own positive, an accidental hit): log(1 + e); token 2 loses 2 and 4: log(1 + e)."""
  item_out = jnp.ones((1, 3, 2)) * jnp.asarray([1., 0.])
  next_emb = jnp.zeros((1, 3, 2))
  next_ids, valid = jnp.asarray([[3, 4, 9]]), jnp.ones((1, 3), bool)
  cand, cand_ids = jnp.asarray([[1., 0.]] * 3), jnp.asarray([2, 4, 7])
  seen_age = losses.candidate_seen_age(jnp.asarray([[1, 2, 3, 4]]), cand_ids)
  want = (math.log(1 + 2 * E) + 2 * math.log(1 + E)) / 3
  for budget in (0, 5):  # dense, then packed into a static buffer
    loss = losses.next_item_loss(item_out, next_emb, next_ids, valid, cand, cand_ids, None,
                                 max_targets=budget, seen_age=seen_age)
    assert float(loss) == pytest.approx(want, rel=1e-6)
  plain = losses.next_item_loss(item_out, next_emb, next_ids, valid, cand, cand_ids, None)
  assert float(plain) == pytest.approx((2 * math.log(1 + 3 * E) + math.log(1 + 2 * E)) / 3,
                                       rel=1e-6)


def test_catalogue_mask_seen_by_hand():
  """Both users (1, 0): logits (masked | 1, 0, -1). Row 0 saw item 1, target 2: the softmax
  is over items 2, 3 only, log(1 + 1/e) - 0. Row 1 saw items 3 and 2, target 2 (a repeat):
  the target stays, item 3 goes: log(e + 1) - 0."""
  user = jnp.asarray([[[[1., 0.]]], [[[1., 0.]]]])       # [B=2, O=1, k=1, d=2]
  batch = {"target_labels": jnp.ones((2, 1), jnp.int32), "target_id": jnp.asarray([2, 2]),
           "target_logq": jnp.zeros((2,), jnp.float32)}
  kw = dict(objective_columns=(0,), objective_weights=(1.0,), kind="softmax", alpha=0.0,
            logq_correction=False, items=ITEMS)
  seen_age = losses.first_seen_age(jnp.asarray([[0, 1], [3, 2]]), 4)
  masked, _ = losses.retrieval_loss(user, None, batch, seen_age=seen_age, **kw)
  want = (math.log(1 + 1 / E) + math.log(E + 1)) / 2
  assert float(masked) == pytest.approx(want, rel=1e-6)
  plain, _ = losses.retrieval_loss(user, None, batch, **kw)
  assert float(plain) == pytest.approx(math.log(E + 1 + 1 / E), rel=1e-6)


def test_catalogue_next_item_mask_seen_by_position():
  """History [1, 2, 3, 4] (L = 4), raw tokens the newest 3 (items 2, 3, 4 at positions 1-3),
  next ids 3, 4 and the target 2. Items (1, 0), (0, 1), (-1, 0), (0, -1).
  Position 1 has seen items 1, 2 only: output (1, 0) scores items 3, 4 as -1, 0, target 3:
  log(1/e + 1) + 1. Item 4 comes later and must stay in. Positions 2 and 3 have one
  candidate left each (item 4; the target 2, a repeat, kept): loss 0."""
  items = jnp.asarray([[9., 9.], [1., 0.], [0., 1.], [-1., 0.], [0., -1.]])
  item_out = jnp.asarray([[[1., 0.], [0., 1.], [0., 1.]]])
  next_ids, valid = jnp.asarray([[3, 4, 2]]), jnp.ones((1, 3), bool)
  seen_age = losses.first_seen_age(jnp.asarray([[1, 2, 3, 4]]), 5)
  want = (math.log(1 / E + 1) + 1) / 3
  for budget in (0, 5):  # dense, then packed into a static buffer
    loss = losses.next_item_loss(item_out, None, next_ids, valid, None, None, None,
                                 items=items, max_targets=budget, seen_age=seen_age)
    assert float(loss) == pytest.approx(want, rel=1e-6)
