"""Small hand-made interaction logs for the generic-data tests (deterministic)."""
from __future__ import annotations

import pathlib

import numpy as np


def write_shop_log(folder: pathlib.Path, num_users: int = 200, num_items: int = 60,
                   seed: int = 0) -> dict[str, pathlib.Path]:
  """A shop: string user/item ids, `view`/`buy` events, an item table with a category.

  Items fall in 4 categories; each user views mostly one category and buys some of what
  they viewed, so a trained retriever beats popularity. Rows are interleaved across users
  (a log), timestamps increase per user with some ties.
  """
  rng = np.random.default_rng(seed)
  rows = []
  for u in range(num_users):
    favourite = u % 4
    t = 1_700_000_000 + int(rng.integers(0, 10_000))
    for _ in range(int(rng.integers(6, 20))):
      cat = favourite if rng.random() < 0.8 else int(rng.integers(0, 4))
      item = cat + 4 * int(rng.integers(0, num_items // 4))
      t += int(rng.integers(0, 3)) * 60
      rows.append((t, f"user-{u:03d}", f"sku-{item:03d}", "buy" if rng.random() < 0.3 else "view"))
  order = rng.permutation(len(rows))
  log = folder / "log.csv"
  with open(log, "w") as f:
    f.write("user_id,item_id,timestamp,event\n")
    for k in order:
      t, user, item, event = rows[k]
      f.write(f"{user},{item},{t},{event}\n")
  items = folder / "items.csv"
  with open(items, "w") as f:
    f.write("item_id,category,brand\n")
    for item in range(num_items - 4):        # the last 4 items have no row
      f.write(f"sku-{item:03d},cat{item % 4},brand{item % 7}\n")
  return {"log": log, "items": items}
