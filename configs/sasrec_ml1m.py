"""SASRec baseline on MovieLens-1M, built from the same model code.

No compression, no user token, no query tokens: the newest item's output is the user
vector (model.readout="last"); a next-item target at every position (loss.aux_next_item)
against in-batch negatives (the batch's targets, logQ-corrected), as in the gSASRec / HSTU
sampled-softmax baselines; d=64, 2 blocks. Differences from the original SASRec: the token
MLP also sees the item's genre/year features, and the objective uses in-batch negatives.
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
  # A full 200-token pass per sequence costs 1.3 s a step on this 2-core CPU: 2,000 steps
  # (42 passes over the 6,040 users, every position a target) keep it under 45 minutes.
  c.train.num_steps = 2_000
  return c
