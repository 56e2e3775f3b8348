"""MPFormer on the Retailrocket multi-behaviour log: one retriever for view / cart / fav / buy.

  python -m launch.prepare --config=configs/retail.py
  python -m launch.train --config=configs/retail.py --workdir=/tmp/retail
  python -m launch.train --config=configs/retail.py:buy --workdir=/tmp/retail_buy  # KuaiFormer

The log (`retail-beh/interactions.csv` under data.dir, default $MPFORMER_DATA or
../shared/data) goes in through the generic interaction-log path: rows are already in each
user's order (no timestamps), behaviour codes 2 / 1 / 3 / 0 are view / cart / favourite / buy.
Only `0` = buy is documented by the source; the other names are inferred from frequencies
and same-item transitions (retail-beh/README.md). Every event feeds exactly one objective,
and its behaviour is the event feature that model.attention_bias conditions on.
Histories are short (median 3 events, max 200): max_len 50 with no compression. Evaluation
ranks against all items: 91% of purchases were seen before, so `seen removed` would drop them.
The `buy` variant is KuaiFormer (MPFormer's mechanisms off) trained and evaluated on buy only,
on the same build (events of every behaviour are its history).
"""
import os

from configs import base, kuaiformer

OBJECTIVES = (("view", ("2",)), ("cart", ("1",)), ("fav", ("3",)), ("buy", ("0",)))


def get_config(arg: str | None = None):
  variant = arg or "default"
  if variant not in ("default", "buy"):
    raise ValueError(f"configs/retail.py: unknown variant {variant!r}; use 'default' or 'buy'")
  c = kuaiformer.get_config() if variant == "buy" else base.get_config()
  c.data.name = "interactions"
  c.data.dir = os.environ.get("MPFORMER_DATA", "../shared/data")
  c.data.interactions.update(
      path=os.path.join(c.data.dir, "retail-beh", "interactions.csv"),
      behaviour_col="behaviour", objectives=OBJECTIVES)
  c.data.max_len = 50
  c.data.stats_max_users = 1_000_000
  c.model.compression.schedule = ()
  c.model.update(user_token=False, user_gate=False)    # no user table
  if variant == "buy":
    c.model.objectives = ("buy",)
  else:
    c.model.objectives = tuple(name for name, _ in OBJECTIVES)
    c.loss.objective_weights = (1.0, 1.0, 1.0, 1.0)
  c.train.update(num_steps=3_000, eval_every_steps=1_000, checkpoint_every_steps=500)
  c.eval.update(num_users=0, remove_seen=False)
  return c
