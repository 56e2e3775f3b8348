"""Our retriever on MovieLens-1M (SASRec version, 3,416 items), full-ranking leave-one-out.

  python -m launch.train --config=configs/ml1m.py --workdir=/tmp/ml1m
The one recipe (configs/recipe.py) on this dataset: nothing here but the data. The recipe
derives from ML-1M's statistics (6,040 users, 292 events per item, 99th length percentile
906): max_len 200 with the oldest 128 events in 6 groups, no dropout, 128 in-batch
negatives, 15,320 steps (2 passes over the 986K training positions); the log says why.
Raw files: data.dir (default $MPFORMER_DATA or ../shared/data), built once with TFDS.
"""
from configs import recipe


def get_config(arg: str | None = None):
  c = recipe.get_config(arg)
  c.data.name = "ml1m"
  return c
