"""Analytic FLOPs: SOLAR's memory term, computed by hand."""
import dataclasses

from mpformer_jax.train.flops import user_tower_flops
from tests.model.test_retriever import SPEC, model_cfg


def test_solar_memory_flops_by_hand():
  """max_len 40, the newest 6 in the backbone: the user tower costs what a 6-event model
  costs, plus the memory of 34 old events (width m = item_embed_dim = 8, rank 4):
  summary 4 r N m = 4 * 4 * 34 * 8 = 4,352; reads by 2 layers of S = 1 + 6 + 2 * 3 = 13
  tokens, 4 d m + 4 r m = 512 + 128 each: 2 * 13 * 640 = 16,640."""
  solar = model_cfg(max_len=40, schedule=(), long_history="solar", solar_rank=4,
                    solar_recent=6)
  short = dataclasses.replace(solar, max_len=6, long_history="compress")
  assert user_tower_flops(solar, SPEC) - user_tower_flops(short, SPEC) == 4_352 + 16_640
