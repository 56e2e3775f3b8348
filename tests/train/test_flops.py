"""Analytic FLOPs: SOLAR's memory term and the output skip's item towers, by hand."""
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


def test_output_skip_flops_by_hand():
  """model.output_skip="newest" runs the item tower on each raw token: max_len 12 with
  groups (4, 1), (2, 2) leaves 4 raw; one tower (item_embed 8 + 1 feature x 4 = 12 in,
  out 8): 2 * 12 * 16 + 2 * 16 * 8 = 640, so 4 * 640 = 2,560; none under the id encoder."""
  plain = model_cfg()
  skip = dataclasses.replace(plain, output_skip="newest")
  assert user_tower_flops(skip, SPEC) - user_tower_flops(plain, SPEC) == 2_560
  ident = dict(item_encoder="id", d_model=16, item_embed_dim=16, output_dim=16)
  assert (user_tower_flops(dataclasses.replace(skip, **ident), SPEC)
          == user_tower_flops(dataclasses.replace(plain, **ident), SPEC))
