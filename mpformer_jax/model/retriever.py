"""The two-tower retriever: user tower (KuaiFormer / MPFormer) and item tower.

User tower: token MLP over the history -> adaptive compression -> [user token] [groups]
[raw items] [objective-conditioned query tokens] -> Llama blocks -> u[o, j] (DESIGN 2.2-2.5).
With model.long_history="solar" the events older than the newest `solar.recent` skip the
token MLP and compression and become an SVD-Attention memory that every block reads
(solar.py).
Item tower: MLP over the shared id embedding and side features (DESIGN 2.6).
model.item_encoder="id" (SASRec's) drops both MLPs: the id row is the history token and the
item vector, side features unused; model.positions="learned" swaps RoPE for SASRec's
learned absolute position table, added to the backbone's input; model.ffn="relu" gives the
blocks SASRec's ReLU FFN, model.norm="layer" its LayerNorm (blocks and final norm).
Score for objective o: max_j <u[o, j], v_x>.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpformer_jax.data import schema
from mpformer_jax.model import masks
from mpformer_jax.model.compression import Compressor, num_tokens, validate_schedule
from mpformer_jax.model.embeddings import FeatureEmbed, ItemTable, ItemTower, TokenEmbedder
from mpformer_jax.model.layers import FFNS, MLP, NORMS, Block, Dropout, dense
from mpformer_jax.model.solar import HistoryMemory, MemoryReader
from mpformer_jax.model.modulation import (ObjectiveBias, TargetWeightHead, UserGate,
                                           behaviour_types, recency_buckets)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
LONG_HISTORY = ("compress", "solar")
ITEM_ENCODERS = ("mlp", "id")
POSITIONS = ("rope", "learned")
OUTPUT_SKIPS = ("none", "newest")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Static model hyper-parameters, built from `config.model` by `from_config`: the defaults
  live in configs/base.py only."""
  max_len: int
  d_model: int
  num_layers: int
  num_heads: int
  mlp_hidden: int
  item_embed_dim: int
  feature_dim: int
  num_queries: int
  output_dim: int
  objectives: tuple[str, ...]
  user_token: bool
  objective_embedding: bool
  attention_bias: bool  # beta[o, head, behaviour_type(i)] on query->item logits
  recency_bias: bool  # + gamma[o, head] * age_bucket(i)
  user_gate: bool  # PEPNet gate on every backbone FFN output
  target_weights: bool  # personalised objective-mix head
  weight_recent: int  # recent events defining the objective-mix target
  max_query_tokens: int  # budget for O * k query tokens
  readout: str  # "queries" (k interests) or "last" (SASRec: newest item)
  normalize: bool
  output_skip: str  # "newest": each output adds the vector of the newest item it reads
  dropout: float  # on the token embeddings and residual branches (training)
  freq_mix: float  # BSARec's alpha: the frequency filter's share beside attention (0 = off)
  freq_window: int  # its causal low-pass: the mean of the newest freq_window tokens
  item_encoder: str  # "mlp" (token MLP and item tower over id + side features) or "id"
  positions: str  # "rope" (rotary, relative) or "learned" (SASRec's absolute table)
  ffn: str  # the blocks' feed-forward network: "swiglu" or "relu" (SASRec's)
  norm: str  # the blocks' and final normalisation: "rms" or "layer" (SASRec's)
  schedule: tuple[tuple[int, int], ...]
  long_history: str  # "compress" (the schedule; () = plain) or "solar"
  solar_rank: int  # SVD-Attention landmarks r
  solar_recent: int  # newest events kept in the backbone under "solar"
  pool: str
  impl: str
  dtype: str  # activations and matmuls ("bfloat16": mixed precision)
  param_dtype: str  # parameters and optimizer moments

  @property
  def backbone_len(self) -> int:
    """History positions the backbone (compression, then blocks) sees: the newest
    `solar_recent` under SOLAR, whose older events go to the memory; else all max_len."""
    return self.solar_recent if self.long_history == "solar" else self.max_len

  @classmethod
  def from_config(cls, model_cfg, max_len: int) -> "ModelConfig":
    c = model_cfg
    for field in ("dtype", "param_dtype"):
      if c[field] not in _DTYPES:
        raise ValueError(f"model.{field} must be one of {sorted(_DTYPES)}, got {c[field]!r}")
    if c.d_model % c.num_heads:
      raise ValueError(f"model.d_model={c.d_model} is not divisible by "
                       f"model.num_heads={c.num_heads}")
    if not 0.0 <= c.dropout < 1.0:
      raise ValueError(f"model.dropout must be in [0, 1), got {c.dropout}")
    if not 0.0 <= c.freq_mix <= 1.0:
      raise ValueError(f"model.freq_mix must be in [0, 1], got {c.freq_mix}")
    if c.freq_window < 1:
      raise ValueError(f"model.freq_window must be >= 1, got {c.freq_window}")
    if c.num_queries < 1:
      raise ValueError(f"model.num_queries must be >= 1, got {c.num_queries}")
    if c.item_encoder not in ITEM_ENCODERS:
      raise ValueError(f"model.item_encoder must be one of {ITEM_ENCODERS}, got "
                       f"{c.item_encoder!r}")
    if c.item_encoder == "id" and not c.item_embed_dim == c.d_model == c.output_dim:
      raise ValueError("model.item_encoder='id' uses the id row as the token and as the item "
                       "vector, so model.item_embed_dim, d_model and output_dim must be equal; "
                       f"got {c.item_embed_dim}, {c.d_model}, {c.output_dim}")
    if c.positions not in POSITIONS:
      raise ValueError(f"model.positions must be one of {POSITIONS}, got {c.positions!r}")
    if c.ffn not in FFNS:
      raise ValueError(f"model.ffn must be one of {tuple(FFNS)}, got {c.ffn!r}")
    if c.norm not in NORMS:
      raise ValueError(f"model.norm must be one of {tuple(NORMS)}, got {c.norm!r}")
    if c.output_skip not in OUTPUT_SKIPS:
      raise ValueError(f"model.output_skip must be one of {OUTPUT_SKIPS}, got "
                       f"{c.output_skip!r}")
    if c.readout not in ("queries", "last"):
      raise ValueError(f"model.readout must be 'queries' or 'last', got {c.readout!r}")
    if c.readout == "last" and len(c.objectives) != 1:
      raise ValueError(f"model.readout='last' serves one objective, got {tuple(c.objectives)}")
    if len(c.objectives) * c.num_queries > c.max_query_tokens:
      raise ValueError(f"{len(c.objectives)} objectives x {c.num_queries} query tokens = "
                       f"{len(c.objectives) * c.num_queries} exceeds model.max_query_tokens="
                       f"{c.max_query_tokens}")
    if c.long_history not in LONG_HISTORY:
      raise ValueError(f"model.long_history must be one of {LONG_HISTORY}, got "
                       f"{c.long_history!r}")
    if c.long_history == "solar":
      if tuple(c.compression.schedule):
        raise ValueError("model.long_history='solar' reads the old history itself; set "
                         "model.compression.schedule=() (got "
                         f"{tuple(c.compression.schedule)})")
      if not 1 <= c.solar.recent < max_len:
        raise ValueError(f"model.solar.recent must be in [1, max_len={max_len}), got "
                         f"{c.solar.recent}")
      if c.solar.rank < 1:
        raise ValueError(f"model.solar.rank must be >= 1, got {c.solar.rank}")
    return cls(max_len=max_len, d_model=c.d_model, num_layers=c.num_layers,
               num_heads=c.num_heads, mlp_hidden=c.mlp_hidden,
               item_embed_dim=c.item_embed_dim, feature_dim=c.feature_dim,
               num_queries=c.num_queries, output_dim=c.output_dim,
               objectives=tuple(c.objectives), user_token=c.user_token,
               objective_embedding=c.objective_embedding,
               attention_bias=c.attention_bias, recency_bias=c.recency_bias,
               user_gate=c.user_gate, target_weights=c.target_weights,
               weight_recent=c.weight_recent, max_query_tokens=c.max_query_tokens,
               readout=c.readout, output_skip=c.output_skip,
               normalize=c.normalize, dropout=c.dropout, freq_mix=c.freq_mix,
               freq_window=c.freq_window, item_encoder=c.item_encoder,
               positions=c.positions, ffn=c.ffn, norm=c.norm,
               schedule=validate_schedule(c.compression.schedule, max_len),
               long_history=c.long_history, solar_rank=c.solar.rank,
               solar_recent=c.solar.recent, pool=c.compression.pool,
               impl=c.compression.impl, dtype=c.dtype,
               param_dtype=c.param_dtype)


class Retriever(nn.Module):
  """User and item towers sharing the item-id table."""
  spec: schema.DatasetSpec
  cfg: ModelConfig

  def setup(self):
    c, dt = self.cfg, _DTYPES[self.cfg.dtype]
    for name in c.objectives:
      self.spec.objective_index(name)  # raises a clear error for unknown objectives
    self.item_table = ItemTable(self.spec.item_vocab_size, c.item_embed_dim)
    if c.item_encoder == "mlp":
      self.token_embedder = TokenEmbedder(c.d_model, self.spec.item_features,
                                          self.spec.event_features, c.feature_dim, dt)
      self.item_tower = ItemTower(c.output_dim, self.spec.item_features, c.feature_dim, dt)
    self.compressor = Compressor(c.schedule, c.num_heads, c.mlp_hidden, c.pool, c.impl, dt)
    if c.user_token and self.spec.user_features:
      self.user_features = FeatureEmbed(self.spec.user_features, c.feature_dim)
      self.user_mlp = MLP(2 * c.d_model, c.d_model, dt)
    init = nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed"))
    self.queries = self.param("queries", init, (c.num_queries, c.d_model), jnp.float32)
    if c.objective_embedding and len(c.objectives) > 1:
      self.objective_emb = self.param("objective_embedding", init,
                                      (len(c.objectives), c.d_model), jnp.float32)
    if c.positions == "learned":  # one row per backbone position (masks.backbone_positions)
      num_positions = (int(self.has_user_token) + num_tokens(c.schedule, c.backbone_len)
                       + self.num_query_tokens)
      self.position_emb = self.param("position_embedding", init, (num_positions, c.d_model),
                                     jnp.float32)
    self.blocks = [Block(c.num_heads, c.mlp_hidden, dt, c.dropout, c.freq_mix, c.freq_window,
                         rope=c.positions == "rope", ffn=c.ffn, norm=c.norm)
                   for _ in range(c.num_layers)]
    self.token_dropout = Dropout(c.dropout)
    if c.long_history == "solar":
      features = c.item_encoder == "mlp"  # "id": the memory is the id rows alone too
      self.memory = HistoryMemory(c.solar_rank, self.spec.item_features if features else (),
                                  self.spec.event_features if features else ())
      self.readers = [MemoryReader(c.item_embed_dim, dt) for _ in range(c.num_layers)]
      self.memory_dropout = Dropout(c.dropout)
    num_obj = len(c.objectives)
    if c.attention_bias or c.recency_bias:
      num_types = self.behaviour_vocab if c.attention_bias else 1
      self.objective_bias = ObjectiveBias(num_obj, c.num_heads, num_types, c.recency_bias)
    if c.user_gate:
      if not self.has_user_token:
        raise ValueError("model.user_gate needs the user token (model.user_token=True and a "
                         f"dataset with user features; {self.spec.name!r} has "
                         f"{self.spec.user_features})")
      self.gates = [UserGate(c.d_model) for _ in range(c.num_layers)]
    if c.target_weights:
      if self.spec.behaviour_feature is None:
        raise ValueError(f"model.target_weights needs a behaviour feature; dataset "
                         f"{self.spec.name!r} has none")
      self.weight_head = TargetWeightHead(num_obj)
    self.final_norm = NORMS[c.norm](dtype=dt)
    self.head = dense(c.output_dim, ("embed", "mlp"), "head", dt)
    if c.output_skip == "newest":
      self.skip_scale = self.param("newest_skip_scale", nn.initializers.ones, (), jnp.float32)

  @property
  def has_user_token(self) -> bool:
    return self.cfg.user_token and bool(self.spec.user_features)

  @property
  def num_query_tokens(self) -> int:
    """Query tokens per objective appended to the sequence (0 for readout='last')."""
    return 0 if self.cfg.readout == "last" else self.cfg.num_queries

  @property
  def behaviour_col(self) -> int | None:
    names = [n for n, _ in self.spec.event_features]
    bf = self.spec.behaviour_feature
    return names.index(bf) if bf is not None else None

  @property
  def behaviour_vocab(self) -> int:
    col = self.behaviour_col
    return 1 if col is None else self.spec.event_features[col][1]

  def __call__(self, batch: Mapping[str, jax.Array]) -> tuple[dict, jax.Array]:
    """(user outputs, target item embeddings [B, out]) for training.

    User outputs: "interests" [B, O, k, out] and, with target_weights, "weight_logits" [B, O].
    """
    return self.user_outputs(batch), self.embed_items(batch[schema.TARGET_ID],
                                                      batch[schema.TARGET_ITEM_FEATURES])

  def embed_items(self, ids: jax.Array, feats: jax.Array) -> jax.Array:
    v = self.item_table(ids)
    if self.cfg.item_encoder == "mlp":
      v = self.item_tower(v, feats)
    return _l2_normalize(v) if self.cfg.normalize else v

  def user_embeddings(self, batch: Mapping[str, jax.Array]) -> jax.Array:
    """[B, O, k, out] interest vectors u[o, j]."""
    return self.user_outputs(batch)["interests"]

  def objective_weights(self, batch: Mapping[str, jax.Array]) -> jax.Array:
    """[B, O] personalised objective weights (uniform without the weight head)."""
    out = self.user_outputs(batch)
    if "weight_logits" in out:
      return jax.nn.softmax(out["weight_logits"], axis=-1)
    b, num_obj = out["interests"].shape[:2]
    return jnp.full((b, num_obj), 1.0 / num_obj)

  def user_outputs(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    c = self.cfg
    ids = batch[schema.HISTORY_IDS]
    item_feats = batch[schema.HISTORY_ITEM_FEATURES]
    event_feats = batch[schema.HISTORY_EVENT_FEATURES]
    b, old = ids.shape[0], ids.shape[1] - c.backbone_len
    memory = None
    if c.long_history == "solar":  # the oldest events: memory; the newest: the backbone
      memory = self.memory(self.item_table(ids[:, :old]), item_feats[:, :old],
                           event_feats[:, :old], ids[:, :old] > 0)
      ids, item_feats, event_feats = ids[:, old:], item_feats[:, old:], event_feats[:, old:]
    valid = ids > 0
    tokens = self.item_table(ids)
    if c.item_encoder == "mlp":
      tokens = self.token_embedder(tokens, item_feats, event_feats)
    else:  # SASRec's: the id row itself
      tokens = tokens.astype(_DTYPES[c.dtype])
    tokens = self.token_dropout(tokens)
    groups, group_valid, raw, raw_valid = self.compressor(tokens, valid)
    parts, part_valid, user = [], [], None
    if self.has_user_token:
      user = self.user_mlp(self.user_features(batch[schema.USER_FEATURES]))
      parts.append(user[:, None])
      part_valid.append(jnp.ones((b, 1), bool))
    if groups is not None:
      parts.append(groups)
      part_valid.append(group_valid)
    parts.append(raw)
    part_valid.append(raw_valid)
    context_valid = jnp.concatenate(part_valid, axis=1)
    num_obj, k = len(c.objectives), self.num_query_tokens
    queries = jnp.broadcast_to(self.queries[:k], (num_obj, k, c.d_model))
    if c.objective_embedding and num_obj > 1:
      queries = queries + self.objective_emb[:, None, :]
    queries = jnp.broadcast_to(queries.reshape(1, num_obj * k, c.d_model),
                               (b, num_obj * k, c.d_model)).astype(tokens.dtype)
    x = jnp.concatenate(parts + [queries], axis=1)
    x = nn.with_logical_constraint(x, ("batch", "seq", "embed"))
    num_context = context_valid.shape[1]
    mask = masks.backbone_mask(context_valid, num_obj, k)
    seq_valid = jnp.pad(context_valid, ((0, 0), (0, num_obj * k)))  # the history tokens
    positions = jnp.asarray(masks.backbone_positions(num_context, num_obj, k))[None]
    if c.positions == "learned":
      x = x + self.position_emb[positions].astype(x.dtype)
    bias = None
    if c.attention_bias or c.recency_bias:
      types = behaviour_types(event_feats, self.behaviour_col if c.attention_bias else None,
                              c.schedule, c.backbone_len, self.has_user_token)
      buckets = recency_buckets(c.schedule, c.backbone_len, self.has_user_token)
      bias = self.objective_bias(types, buckets, k)
    for i, block in enumerate(self.blocks):
      if memory is not None:
        x = x + self.memory_dropout(self.readers[i](x, memory))
      gate = self.gates[i](user)[:, None] if c.user_gate else None
      x = block(x, mask, positions, bias, gate, seq_valid)
    x = self.final_norm(x)
    if c.readout == "last":  # SASRec: the newest item's output is the single interest
      u = self.head(x[:, num_context - 1])[:, None, None].astype(jnp.float32)
    else:
      u = self.head(x[:, num_context:]).astype(jnp.float32)
      u = u.reshape(b, num_obj, k, c.output_dim)
    # Outputs of the raw item tokens, for the auxiliary next-item loss (unused ones are
    # removed by XLA).
    r = raw.shape[1]
    items_out = self.head(x[:, num_context - r:num_context]).astype(jnp.float32)
    if c.output_skip == "newest":  # raw tokens: the newest r events, newest last
      raw_items = self._skip_items(ids[:, -r:], item_feats[:, -r:])
      u = self._add_skip(u, raw_items[:, -1][:, None, None])
      items_out = self._add_skip(items_out, raw_items)
    out = {"interests": _l2_normalize(u) if c.normalize else u,
           "item_outputs": _l2_normalize(items_out) if c.normalize else items_out}
    if c.target_weights:
      user_out = x[:, 0] if self.has_user_token else jnp.zeros((b, c.d_model), x.dtype)
      out["weight_logits"] = self.weight_head(user_out, u)
    return out

  def _skip_items(self, ids: jax.Array, feats: jax.Array) -> jax.Array:
    """[B, r, out] item vectors of history ids as the item tower embeds targets; 0 at padding."""
    return self.embed_items(ids, feats) * (ids > 0)[..., None].astype(jnp.float32)

  def _add_skip(self, out: jax.Array, item: jax.Array) -> jax.Array:
    """out + scale * item: both unit length first under model.normalize, so the skip starts
    as the output's equal (the score then starts as "items like the newest one")."""
    if self.cfg.normalize:
      out = _l2_normalize(out)
    return out + self.skip_scale * item


def _l2_normalize(x: jax.Array) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def interest_scores(user: jax.Array, items: jax.Array) -> jax.Array:
  """max_j <u[b, j], v[c]> for user [B, k, d] and items [C, d] -> [B, C]."""
  return jnp.max(jnp.einsum("bkd,cd->bkc", user, items), axis=1)
