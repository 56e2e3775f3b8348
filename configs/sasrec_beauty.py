"""SASRec baseline on Amazon Beauty, built from the same model code (see configs/sasrec_ml1m.py).

  python -m launch.train --config=configs/sasrec_beauty.py --workdir=/tmp/sasrec_beauty
configs/beauty.py with the newest item's output as the user vector (model.readout="last"),
one query, and a next-item target at every position against in-batch negatives.
"""
from configs import beauty
from configs.sasrec_ml1m import as_sasrec


def get_config(arg: str | None = None):
  return as_sasrec(beauty.get_config(arg))
