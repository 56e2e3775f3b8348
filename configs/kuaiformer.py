"""KuaiFormer: the single-objective retriever (MPFormer's mechanisms switched off).

  python -m launch.train --config=configs/kuaiformer.py[:tiny] --workdir=/tmp/kuaiformer
  python -m launch.train --config=configs/kuaiformer.py --config.model.objectives="('like',)"
"""
from configs import base


def get_config(arg: str | None = None):
  c = base.get_config(arg)
  c.model.objectives = ("click",)
  c.model.attention_bias = False
  c.model.recency_bias = False
  c.model.user_gate = False
  c.model.target_weights = False
  c.loss.objective_weights = (1.0,)
  return c
