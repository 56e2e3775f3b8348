"""Embedding tables, the token MLP (DESIGN 2.2) and the item tower (DESIGN 2.6).

The item-id table is shared between history tokens and the item tower, so a candidate's
vector and a history token start from the same row.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpformer_jax.model.layers import MLP
from mpformer_jax.parallel.embedding import lookup as embedding_lookup


# Table rows are padded to a multiple of this so any power-of-two model axis up to it shards
# the table evenly, and a checkpoint restores onto any such mesh (same shapes everywhere).
VOCAB_ROW_MULTIPLE = 128


def _padded_normal(vocab_size: int, stddev: float = 0.02):
  """N(0, stddev) for the real rows, zeros for the padding rows (never looked up).

  The real rows get exactly the values an unpadded table would, so padding changes no result.
  """
  def init(key, shape, dtype=jnp.float32):
    real = nn.initializers.normal(stddev)(key, (vocab_size,) + tuple(shape[1:]), dtype)
    return jnp.pad(real, ((0, shape[0] - vocab_size),) + ((0, 0),) * (len(shape) - 1))
  return init


class ItemTable(nn.Module):
  """The item-id embedding table [num_items + 1 (padded), dim]; row 0 is padding.

  Logical axes ("vocab", "embed"): `parallel/` row-shards it over the model axis and looks
  rows up vocabulary-parallel (`parallel.embedding.lookup`); without a mesh it is a gather.
  """
  vocab_size: int
  dim: int

  def setup(self):
    rows = -(-self.vocab_size // VOCAB_ROW_MULTIPLE) * VOCAB_ROW_MULTIPLE
    self.embedding = self.param(
        "embedding", nn.with_logical_partitioning(_padded_normal(self.vocab_size),
                                                  ("vocab", "embed")),
        (rows, self.dim), jnp.float32)

  def __call__(self, ids: jax.Array) -> jax.Array:
    return embedding_lookup(self.embedding, ids)


class FeatureEmbed(nn.Module):
  """Concatenated embeddings of several categorical features [..., F] -> [..., F * dim]."""
  vocabs: Sequence[tuple[str, int]]
  dim: int

  @nn.compact
  def __call__(self, values: jax.Array) -> jax.Array:
    if values.shape[-1] != len(self.vocabs):
      raise ValueError(f"got {values.shape[-1]} feature columns, expected {len(self.vocabs)} "
                       f"({[name for name, _ in self.vocabs]})")
    outs = []
    for col, (name, vocab) in enumerate(self.vocabs):
      table = self.param(name, nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                            (None, "embed")),
                         (vocab, self.dim), jnp.float32)
      outs.append(jnp.take(table, values[..., col], axis=0))
    if not outs:
      return jnp.zeros(values.shape[:-1] + (0,), jnp.float32)
    return jnp.concatenate(outs, axis=-1)


class TokenEmbedder(nn.Module):
  """t_i = MLP([E_item(id_i); E_f(item features_i); E_f(event features_i)]) -> d_model."""
  d_model: int
  item_features: Sequence[tuple[str, int]]
  event_features: Sequence[tuple[str, int]]
  feature_dim: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, item_emb: jax.Array, item_feats: jax.Array,
               event_feats: jax.Array) -> jax.Array:
    x = jnp.concatenate([
        item_emb,
        FeatureEmbed(self.item_features, self.feature_dim, name="item_features")(item_feats),
        FeatureEmbed(self.event_features, self.feature_dim, name="event_features")(event_feats),
    ], axis=-1)
    return MLP(2 * self.d_model, self.d_model, self.dtype, name="mlp")(x)


class ItemTower(nn.Module):
  """v_x = MLP_item([E_item(x); E_f(side features of x)]) -> out_dim."""
  out_dim: int
  item_features: Sequence[tuple[str, int]]
  feature_dim: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, item_emb: jax.Array, item_feats: jax.Array) -> jax.Array:
    x = jnp.concatenate([
        item_emb,
        FeatureEmbed(self.item_features, self.feature_dim, name="features")(item_feats),
    ], axis=-1)
    return MLP(2 * self.out_dim, self.out_dim, self.dtype, name="mlp")(x).astype(jnp.float32)
