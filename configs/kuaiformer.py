"""KuaiFormer: the single-objective retriever (MPFormer's mechanisms switched off).

  python -m launch.train --config=configs/kuaiformer.py[:tiny] --workdir=/tmp/kuaiformer
  python -m launch.train --config=configs/kuaiformer.py --config.model.objectives="('like',)"
"""
from configs import base


def get_config(arg: str | None = None):
  return single_objective(base.get_config(arg), "click")


def single_objective(c, objective: str):
  """Config `c` as KuaiFormer on `objective` alone: MPFormer's mechanisms off."""
  c.model.objectives = (objective,)
  # Our KuaiFormer keeps the user-profile token wherever the data has user features (the
  # quality recipe's figures were measured with it); the rest of MPFormer is off.
  c.model.update(user_token=True, attention_bias=False, recency_bias=False, user_gate=False,
                 target_weights=False)
  c.loss.objective_weights = (1.0,)
  return c
