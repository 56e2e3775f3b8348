"""MPFormer on MovieLens-100K with three objectives: watch (any rating), like (>= 4), love (5).

  python -m launch.train --config=configs/ml100k.py --workdir=/tmp/ml100k
  python -m launch.train --config=configs/ml100k.py:watch --workdir=/tmp/ml100k_watch  # KuaiFormer
Raw files are read from data.dir (default $MPFORMER_DATA or ../shared/data) and built once
with TFDS. The `test` variant is the small real-data run of the default test suite; `watch`
is KuaiFormer (MPFormer's mechanisms off) on watch alone, on the same build.
"""
import os

from configs import base, kuaiformer


def get_config(arg: str | None = None):
  variant = arg or "default"
  if variant not in ("default", "test", "watch"):
    raise ValueError(f"configs/ml100k.py: unknown variant {variant!r}; use 'default', 'test' "
                     "or 'watch'")
  c = base.get_config("default")
  c.data.name = "ml100k"
  c.data.dir = os.environ.get("MPFORMER_DATA", "../shared/data")
  c.data.max_len = 128
  c.data.stats_max_users = 1_000_000  # all users
  c.model.objectives = ("watch", "like", "love")
  c.model.compression.schedule = ((16, 4),)  # oldest 64 events in 4 groups, newest 64 raw
  c.loss.objective_weights = (1.0, 1.0, 1.0)
  c.train.update(num_steps=1_500, batch_size=128, learning_rate=2e-3, warmup_steps=100,
                 eval_every_steps=500, checkpoint_every_steps=500)
  c.eval.num_users = 0  # all 943 users
  c.eval.merged_n = 50
  c.eval.quota_min = 5
  if variant == "watch":
    kuaiformer.single_objective(c, "watch")
  if variant == "test":
    c.model.update(d_model=32, num_layers=1, num_heads=2, mlp_hidden=64, item_embed_dim=32,
                   feature_dim=8, num_queries=2, output_dim=32)
    c.train.update(num_steps=300, batch_size=64, learning_rate=3e-3, warmup_steps=20,
                   log_every_steps=50, eval_every_steps=1_000, checkpoint_every_steps=1_000)
  return c
