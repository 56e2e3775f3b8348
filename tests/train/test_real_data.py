"""A small real-data run in the default suite: build ML-100K with TFDS into a temp dir, train
MPFormer (watch / like / love) for 300 steps, evaluate, and beat popularity."""
import os

import pytest

from configs import ml100k
from mpformer_jax.train.loop import train_and_evaluate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.environ.get("MPFORMER_DATA", os.path.join(REPO, "..", "shared", "data"))


def test_ml100k_beats_popularity(tmp_path):
  config = ml100k.get_config("test")
  config.data.dir = DATA
  config.data.tfds_dir = str(tmp_path / "tfds")
  final = train_and_evaluate(config, str(tmp_path / "run"))
  assert final["eval/count"] > 900  # leave-one-out over (almost) all 943 users
  for objective in ("watch", "like", "love"):
    assert f"test/{objective}/hr@50" in final
  assert final["eval/watch/hr@50"] > 1.2 * final["eval/popularity/watch/hr@50"]
  assert final["test/watch/hr@50"] > final["test/popularity/watch/hr@50"]
  assert final["eval/merged/mean_exposure"] > 0


@pytest.mark.slow
def test_retail_mpformer_beats_popularity_on_every_objective(tmp_path):
  """configs/retail.py end to end through the generic log path (about 15 min on 2 cores)."""
  from configs import retail  # pylint: disable=g-import-not-at-top
  config = retail.get_config()
  config.data.tfds_dir = str(tmp_path / "tfds")
  final = train_and_evaluate(config, str(tmp_path / "run"))
  for objective in ("view", "cart", "fav", "buy"):
    assert final[f"eval/{objective}/hr@50"] > final[f"eval/popularity/{objective}/hr@50"]
