"""SASRec baseline on MovieLens-1M, built from the same model code.

No compression, no user token, no query tokens: the newest item's output is the user
vector (model.readout="last"); a next-item target at every position (loss.aux_next_item),
d=64, 2 blocks, dropout 0.2 (SASRec's ML-1M setting). The loss is the softmax over every
item (the limit of the baselines' sampled softmax, as in SASRec+ / gSASRec's CE variant):
3,416 items make it cheaper here than sampling. Differences from the original SASRec: the
token MLP also sees the item's genre/year features, RoPE positions, SwiGLU blocks.
`as_sasrec` keeps the in-batch sampled softmax (configs/sasrec_beauty.py, 12,101 items).
"""
from configs import ml1m


def as_sasrec(c):
  """Turns a single-objective config of ours into its SASRec baseline (in place)."""
  c.model.update(readout="last", user_token=False, num_queries=1, normalize=True)
  c.model.compression.schedule = ()
  # In-batch negatives, logQ-corrected (the baselines' sampled softmax), not our catalogue one.
  c.loss.update(objective_weights=(0.0,), aux_next_item=1.0, temperature=0.05,
                negatives="in_batch", kind="smooth_logq")
  return c


def get_config(arg: str | None = None):
  c = as_sasrec(ml1m.get_config(arg))
  c.model.dropout = 0.2
  c.loss.update(negatives="catalogue", kind="softmax")
  # A 200-token pass with the full softmax costs 1.6 s a step on this 2-core CPU: 2,000
  # steps (42 passes over the 6,040 users, every position a target) take about 55 minutes.
  c.train.num_steps = 2_000
  return c
