"""MPFormer's personalisation mechanisms (DESIGN 2.5 and 2.7), each behind a switch.

* ObjectiveBias: learnable attention modulation. Logits from objective o's query tokens to
  context token i get `beta[o, head, behaviour_type(i)]` (+ `gamma[o, head] * age_bucket(i)`).
  behaviour_type is the event's behaviour feature (objective-label bitmask + 1) for raw items
  and 0 for the user token and compressed groups.
* UserGate: PEPNet-style gate `2 * sigmoid(W2 relu(W1 stop_grad(user)))` on an FFN output.
* TargetWeightHead: `w = softmax(MLP(stop_grad([user out; mean u])))` over objectives,
  trained towards the user's recent objective mix (`objective_mix`).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mpformer_jax.model.layers import dense


def context_layout(schedule, max_len: int, has_user_token: bool) -> tuple[int, int]:
  """(number of group tokens, index of the first raw token) among the context tokens."""
  groups = sum(g for _, g in schedule)
  return groups, int(has_user_token) + groups


def recency_buckets(schedule, max_len: int, has_user_token: bool) -> np.ndarray:
  """[C] log2 age bucket of each context token (age 0 = newest item; user token = 0).

  A group's age is that of its newest item.
  """
  ends = []
  start = 0
  for window, groups in schedule:
    for _ in range(groups):
      start += window
      ends.append(start)
  covered = start
  ages = [max_len - e for e in ends] + [max_len - 1 - p for p in range(covered, max_len)]
  buckets = np.floor(np.log2(np.asarray(ages, np.float64) + 1.0)).astype(np.int32)
  return np.concatenate([np.zeros(int(has_user_token), np.int32), buckets])


def behaviour_types(event_features: jax.Array, behaviour_col: int | None, schedule,
                    max_len: int, has_user_token: bool) -> jax.Array:
  """[B, C] behaviour type of each context token (0 for user token, groups, no feature)."""
  b = event_features.shape[0]
  groups, _ = context_layout(schedule, max_len, has_user_token)
  covered = sum(w * g for w, g in schedule)
  if behaviour_col is None:
    raw = jnp.zeros((b, max_len - covered), jnp.int32)
  else:
    raw = event_features[:, covered:, behaviour_col].astype(jnp.int32)
  return jnp.concatenate([jnp.zeros((b, int(has_user_token) + groups), jnp.int32), raw], 1)


class ObjectiveBias(nn.Module):
  """The additive bias [B, H, S, S] from objective o's query tokens to context tokens."""
  num_objectives: int
  num_heads: int
  num_types: int
  recency: bool

  @nn.compact
  def __call__(self, types: jax.Array, buckets: np.ndarray, num_queries: int) -> jax.Array:
    beta = self.param("beta", nn.initializers.zeros,
                      (self.num_objectives, self.num_heads, self.num_types), jnp.float32)
    b, c = types.shape
    ctx = jnp.take(beta, types, axis=2)  # [O, H, B, C]
    if self.recency:
      gamma = self.param("gamma", nn.initializers.zeros,
                         (self.num_objectives, self.num_heads), jnp.float32)
      ctx = ctx + gamma[:, :, None, None] * jnp.asarray(buckets, jnp.float32)[None, None, None]
    ctx = jnp.transpose(ctx, (2, 1, 0, 3))  # [B, H, O, C]
    q = self.num_objectives * num_queries
    rows = jnp.repeat(ctx, num_queries, axis=2)  # [B, H, O*k, C]
    query_rows = jnp.concatenate([rows, jnp.zeros((b, self.num_heads, q, q))], axis=3)
    return jnp.concatenate([jnp.zeros((b, self.num_heads, c, c + q)), query_rows], axis=2)


class UserGate(nn.Module):
  """2 * sigmoid(W2 relu(W1 stop_grad(user))): per-user scaling of an FFN output, ~1 at init."""
  features: int
  hidden: int = 64

  @nn.compact
  def __call__(self, user: jax.Array) -> jax.Array:
    h = nn.relu(dense(self.hidden, ("embed", "mlp"), "fc1", use_bias=True)(
        jax.lax.stop_gradient(user)))
    out = nn.Dense(self.features, name="fc2", kernel_init=nn.initializers.zeros)(h)
    return 2.0 * nn.sigmoid(out)


class TargetWeightHead(nn.Module):
  """Logits [B, O] of the user's objective mix from stop-gradient user representations."""
  num_objectives: int
  hidden: int = 64

  @nn.compact
  def __call__(self, user_out: jax.Array, interests: jax.Array) -> jax.Array:
    x = jnp.concatenate([user_out, jnp.mean(interests, axis=(1, 2))], axis=-1)
    x = jax.lax.stop_gradient(x)
    x = nn.relu(dense(self.hidden, ("embed", "mlp"), "fc1", use_bias=True)(x))
    return dense(self.num_objectives, ("mlp", None), "fc2", use_bias=True)(x)


def objective_mix(event_features: jax.Array, behaviour_col: int, objective_columns,
                  recent: int) -> tuple[jax.Array, jax.Array]:
  """(mix [B, O], has_any [B]): label frequencies of the served objectives over the user's
  last `recent` events, decoded from the behaviour feature (bit o = objective o, +1)."""
  behaviour = event_features[:, -recent:, behaviour_col].astype(jnp.int32)
  valid = behaviour > 0
  bits = jnp.maximum(behaviour - 1, 0)
  counts = jnp.stack([jnp.sum(((bits >> col) & 1) * valid, axis=1)
                      for col in objective_columns], axis=1).astype(jnp.float32)
  total = jnp.sum(counts, axis=1, keepdims=True)
  return counts / jnp.maximum(total, 1.0), total[:, 0] > 0
