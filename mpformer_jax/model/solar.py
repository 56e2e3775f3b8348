"""SOLAR's long-history encoder (issue 22; `model.long_history="solar"`).

The newest `model.solar.recent` events enter the backbone as usual (token MLP, causal
attention); every older event becomes one memory token of width m = item_embed_dim
  m_j = RMSNorm(E_item(id_j) + sum_f E_f(feature f of event j))
(item and event features, each embedded at width m and summed: a concatenation would double
the width, and reading the memory costs in proportion to it), with no token MLP and no
position, so a repeated event (same item, same features) is the same token and the memory has
the low-rank structure SVD-Attention is exact on (svd_attention.py). The memory is
summarised once per sequence, O(N r m), and before every backbone block each backbone token
reads it with one softmax head whose keys and values are the memory tokens themselves
(a key projection folds into the query's, a value projection into the output's):
  x <- x + W_o svd_read(W_q RMSNorm(x)).
The paper's abstract gives no architecture beyond the attention; this layout (memory read
beside the recent window, once per layer, no per-token work on the old events beyond their
embedding) is ours, chosen so that the old events cost O(N r m) and nothing per layer.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpformer_jax.model.embeddings import FeatureEmbed
from mpformer_jax.model.layers import RMSNorm, dense
from mpformer_jax.model.svd_attention import Summary, read, summarize


class HistoryMemory(nn.Module):
  """Old events -> their SVD-Attention summary (one head of the item embedding's width)."""
  rank: int
  item_features: Sequence[tuple[str, int]]
  event_features: Sequence[tuple[str, int]]

  @nn.compact
  def __call__(self, item_emb: jax.Array, item_feats: jax.Array, event_feats: jax.Array,
               valid: jax.Array) -> Summary:
    m = item_emb.shape[-1]
    x = item_emb.astype(jnp.float32)
    for name, features, values in (("item_features", self.item_features, item_feats),
                                   ("event_features", self.event_features, event_feats)):
      if features:
        x = x + FeatureEmbed(features, m, name=name)(values).reshape(
            values.shape[:-1] + (len(features), m)).sum(-2)
    x = RMSNorm(name="norm")(x)
    x = nn.with_logical_constraint(x, ("batch", "seq", None))[:, :, None, :]  # one head
    return summarize(x, x, valid, self.rank)


class MemoryReader(nn.Module):
  """The residual branch W_o svd_read(W_q RMSNorm(x)) of one backbone layer.

  W_o starts at zero, so SOLAR starts as the recent window alone and learns how much of the
  memory to read: with a random W_o every token took a random read of ~1,000 old events at
  step 0, and on ML-1M that halved validation NDCG@10 after 1,000 steps (0.062 against 0.110
  for the recent window alone; zero-initialised, benchmarks/README.md)."""
  memory_width: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, memory: Summary) -> jax.Array:
    h = RMSNorm(dtype=self.dtype, name="norm")(x)
    q = dense(self.memory_width, ("embed", None), "query", self.dtype)(h)
    out = read(q[:, :, None, :], memory)[:, :, 0].astype(self.dtype)
    return dense(x.shape[-1], (None, "embed"), "out", self.dtype,
                 init=nn.initializers.zeros)(out)
