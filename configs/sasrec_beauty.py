"""SASRec baseline on Amazon Beauty, built from the same model code (see configs/sasrec_ml1m.py).

  python -m launch.train --config=configs/sasrec_beauty.py --workdir=/tmp/sasrec_beauty
configs/beauty.py with the newest item's output as the user vector (model.readout="last"),
one query, and a next-item target at every position against in-batch negatives.
"""
from configs import beauty


def get_config(arg: str | None = None):
  c = beauty.get_config(arg)
  c.model.update(readout="last", user_token=False, num_queries=1, normalize=True)
  c.model.compression.schedule = ()
  c.loss.update(objective_weights=(0.0,), aux_next_item=1.0, temperature=0.05)
  return c
