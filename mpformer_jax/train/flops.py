"""Analytic training FLOPs and the device peak, for MFU in logs and benchmarks.

Counting convention: a multiply-add is 2 FLOPs; training = 3 x forward (backward = 2 x
forward); attention is counted dense (the causal / group masks are not exploited), matmuls
only (norms, softmax and embedding gathers are negligible here).

Per example, with d = d_model, h = mlp_hidden, L = max_len, S = backbone tokens:
  token MLP      L * (2 * i_t * 2d + 2 * 2d * d),   i_t = item_embed + (F_item + F_event) * f
  group encoder  per compressed position: 8 d^2 (QKV + out) + 4 w d (QK^T, PV over its window w)
                 + 6 d h (SwiGLU)  [pool="mean"]; pool="attention" runs out-proj + FFN per group;
                 pool="ffn": only 6 d h (SwiGLU) per group
  backbone       num_layers * S * (8 d^2 + 4 S d + 6 d h),  S = user + groups + raw + O k
  SOLAR memory   (long_history="solar"; the token MLP then runs on the newest `recent` only)
                 summary 4 r N m over the N = max_len - recent old events (P = K_J K^T and
                 P V, m = item_embed), + num_layers * S * (4 d m + 4 r m) to read it
  head           O k * 2 d out
  output skip    (model.output_skip="newest") R item towers, one per raw history token
  item tower     2 * i_v * 2 out + 2 * 2 out * out per candidate, i_v = item_embed + F_item f
  loss           O * C * k * 2 out per row (scores against C = B in-batch candidates, or
                 C = N + 1 items with loss.negatives="catalogue", whose tower then runs
                 once per step on all N + 1)
  next-item loss R * C * 2 out per row (R raw tokens), + R item towers when in-batch
With model.item_encoder="id" (SASRec's) the token MLP and item tower terms are 0; with
model.ffn="relu" (SASRec's) each backbone FFN costs 4 d h a token instead of SwiGLU's 6 d h.
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

from mpformer_jax.data.schema import DatasetSpec
from mpformer_jax.model.compression import num_tokens
from mpformer_jax.model.retriever import ModelConfig

# Dense bf16 datasheet peaks (FLOP/s) for accelerators, by substring of device_kind.
_PEAKS = (("h200", 989e12), ("h100", 989e12), ("a100", 312e12), ("v6", 918e12),
          ("v5p", 459e12), ("v5", 197e12), ("v4", 275e12))


def user_tower_flops(cfg: ModelConfig, spec: DatasetSpec) -> float:
  """Forward FLOPs of the user tower for one example (token MLP, groups, backbone, head)."""
  d, h, out = cfg.d_model, cfg.mlp_hidden, cfg.output_dim
  f = cfg.feature_dim
  num_obj, k = len(cfg.objectives), (0 if cfg.readout == "last" else cfg.num_queries)
  i_t = cfg.item_embed_dim + (len(spec.item_features) + len(spec.event_features)) * f
  token_mlp = cfg.backbone_len * (2 * i_t * 2 * d + 2 * 2 * d * d)
  if cfg.item_encoder == "id":  # SASRec's: the id row is the token
    token_mlp = 0
  group = 0.0
  for window, groups in cfg.schedule:
    positions = window * groups
    if cfg.pool == "mean":
      group += positions * (8 * d * d + 4 * window * d + 6 * d * h)
    elif cfg.pool == "ffn":
      group += groups * 6 * d * h
    else:
      group += positions * (6 * d * d + 4 * window * d) + groups * (2 * d * d + 6 * d * h)
  user = int(cfg.user_token and bool(spec.user_features))
  s = user + num_tokens(cfg.schedule, cfg.backbone_len) + num_obj * k
  ffn = (4 if cfg.ffn == "relu" else 6) * d * h
  backbone = cfg.num_layers * s * (8 * d * d + 4 * s * d + ffn)
  head = max(num_obj * k, 1) * 2 * d * out
  memory = 0.0
  if cfg.long_history == "solar":  # memory tokens are item_embed_dim wide
    m = cfg.item_embed_dim
    memory = (4 * cfg.solar_rank * (cfg.max_len - cfg.backbone_len) * m
              + cfg.num_layers * s * (4 * d * m + 4 * cfg.solar_rank * m))
  skip = raw_tokens(cfg) * item_tower_flops(cfg, spec) if cfg.output_skip == "newest" else 0
  return token_mlp + group + backbone + head + memory + skip


def raw_tokens(cfg: ModelConfig) -> int:
  """History tokens the backbone reads uncompressed (the newest ones)."""
  return cfg.backbone_len - sum(w * g for w, g in cfg.schedule)


def item_tower_flops(cfg: ModelConfig, spec: DatasetSpec) -> float:
  """Forward FLOPs of one item vector (0 under model.item_encoder="id": the id row)."""
  if cfg.item_encoder == "id":
    return 0
  out = cfg.output_dim
  i_v = cfg.item_embed_dim + len(spec.item_features) * cfg.feature_dim
  return 2 * i_v * 2 * out + 2 * 2 * out * out


def serve_flops_per_user(cfg: ModelConfig, spec: DatasetSpec, num_items: int) -> float:
  """One served request: the user tower plus exact scoring of every interest vector of every
  objective against `num_items` items (ScaNN scores fewer, so this bounds its work)."""
  vectors = len(cfg.objectives) * (1 if cfg.readout == "last" else cfg.num_queries)
  return user_tower_flops(cfg, spec) + vectors * num_items * 2 * cfg.output_dim


def train_flops_per_step(cfg: ModelConfig, spec: DatasetSpec, batch_size: int,
                         loss_cfg=None) -> float:
  """Training FLOPs of one step; the loss terms follow `loss_cfg` (config.loss) if given."""
  loss_cfg = loss_cfg or {}
  catalogue = loss_cfg.get("negatives", "in_batch") == "catalogue"
  out = cfg.output_dim
  num_obj, k = len(cfg.objectives), (0 if cfg.readout == "last" else cfg.num_queries)
  tower = item_tower_flops(cfg, spec)
  cands = spec.item_vocab_size if catalogue else batch_size
  loss = num_obj * cands * max(k, 1) * 2 * out
  aux = 0.0
  if loss_cfg.get("aux_next_item", 0.0) > 0:
    raw = raw_tokens(cfg)
    if loss_cfg.get("next_item_targets", 0) > 0:  # packed: the budget, spread over the batch
      raw = min(raw, loss_cfg["next_item_targets"] / batch_size)
    aux = raw * (cands * 2 * out + (0 if catalogue else tower))
  forward = user_tower_flops(cfg, spec) + tower + loss + aux
  return 3.0 * (forward * batch_size + catalogue * spec.item_vocab_size * tower)


@functools.lru_cache(maxsize=None)
def measured_matmul_peak(n: int = 2048, iters: int = 5) -> float:
  """Best f32 matmul FLOP/s on the default device (the CPU's practical peak)."""
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  best = float("inf")
  for _ in range(iters):
    t0 = time.perf_counter()
    f(x).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n ** 3 / best


def device_peak_flops() -> tuple[float, str]:
  """(peak FLOP/s, how it was obtained): datasheet bf16 on GPU/TPU, measured f32 on CPU."""
  device = jax.devices()[0]
  kind = device.device_kind.lower()
  if device.platform != "cpu":
    for key, peak in _PEAKS:
      if key in kind:
        return peak, f"datasheet bf16 ({device.device_kind})"
  return measured_matmul_peak(), "measured f32 matmul"
