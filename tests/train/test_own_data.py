"""A hand-made CSV with string ids, two behaviours and an item table, trained end to end."""
from __future__ import annotations

import json

import numpy as np

from configs import interactions as interactions_config
from mpformer_jax.train.loop import train_and_evaluate
from mpformer_jax.train.offline_eval import top_items
from tests.data.log_files import write_shop_log


def test_train_on_a_csv_and_map_top_items_back(tmp_path):
  files = write_shop_log(tmp_path)
  c = interactions_config.get_config("tiny")
  c.data.tfds_dir = str(tmp_path / "tfds")
  c.data.interactions.update(path=str(files["log"]),
                             objectives=(("view", ("view",)), ("buy", ("buy",))))
  c.data.interactions.item_table.update(path=str(files["items"]),
                                        columns=("category", "brand"))
  c.model.objectives = ("view", "buy")
  c.loss.objective_weights = (1.0, 1.0)
  c.train.update(num_steps=150, eval_every_steps=1_000, checkpoint_every_steps=150)
  final = train_and_evaluate(c, str(tmp_path / "run"))
  # Users mostly view one of 4 categories: the retriever must beat popularity.
  assert final["eval/hr@10"] > final["eval/popularity/hr@10"]
  path = top_items(c, str(tmp_path / "run"), 5)
  rows = [json.loads(line) for line in open(path)]
  assert {r["objective"] for r in rows} == {"view", "buy"}
  assert len(rows) == 2 * 200 and len({r["user"] for r in rows}) == 200
  assert all(r["user"].startswith("user-") for r in rows)
  assert all(len(r["items"]) == 5 and all(i.startswith("sku-") for i in r["items"])
             for r in rows)
  assert all(np.all(np.diff(r["scores"]) <= 1e-6) for r in rows)
  # The top items of a user who favours category u % 4 are mostly of that category.
  hits = [int(i[4:]) % 4 == int(r["user"][5:]) % 4 for r in rows if r["objective"] == "view"
          for i in r["items"]]
  assert np.mean(hits) > 0.5
