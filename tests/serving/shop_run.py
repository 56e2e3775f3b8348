"""A tiny MPFormer trained on the hand-made shop log, for the serving tests."""
from __future__ import annotations

import csv
import pathlib
from collections import defaultdict

from configs import interactions as interactions_config
from tests.data.log_files import write_shop_log


def shop_config(folder: pathlib.Path, num_steps: int = 40, export_every: int = 40):
  """configs/interactions.py:tiny on the shop log (view / buy, item table), exporting."""
  files = write_shop_log(folder)
  c = interactions_config.get_config("tiny")
  c.data.tfds_dir = str(folder / "tfds")
  c.data.max_len = 16    # shorter than some histories: requests get truncated
  c.model.compression.schedule = ((4, 2),)
  c.data.interactions.update(path=str(files["log"]),
                             objectives=(("view", ("view",)), ("buy", ("buy",))))
  c.data.interactions.item_table.update(path=str(files["items"]), columns=("category", "brand"))
  c.model.objectives = ("view", "buy")
  c.loss.objective_weights = (1.0, 1.0)
  c.train.update(num_steps=num_steps, eval_every_steps=1_000, checkpoint_every_steps=num_steps,
                 export_every_steps=export_every, log_every_steps=10)
  c.eval.update(merged_n=20, quota_min=2)
  c.export.update(default_n=10, dir=str(folder / "artifacts"))
  return c, files


def raw_histories(log: pathlib.Path) -> dict[str, list[dict]]:
  """Each user's events as requests give them, in the build's order (time, then file)."""
  events = defaultdict(list)
  with open(log) as f:
    for row, r in enumerate(csv.DictReader(f)):
      events[r["user_id"]].append((int(r["timestamp"]), row, {
          "item": r["item_id"], "behaviour": r["event"], "time": int(r["timestamp"])}))
  return {u: [e for _, _, e in sorted(rows, key=lambda x: x[:2])] for u, rows in events.items()}
