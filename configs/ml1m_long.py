"""ML-1M with its full histories: is reading 1,024 events worth it on real data?

  python -m launch.train --config=configs/ml1m_long.py --workdir=/tmp/ml1m_solar    # SOLAR
  python -m launch.train --config=configs/ml1m_long.py:compress --workdir=/tmp/ml1m_comp
  python -m launch.train --config=configs/ml1m_long.py:recent --workdir=/tmp/ml1m_recent

The one recipe on ML-1M (configs/ml1m.py) with the history the recipe caps at 200 opened to
the newest 1,024 events (ML-1M users have up to 2,276; 26% have more than 200, 6.5% more
than 500), the newest 48 raw in every variant: `default` reads the 976 older ones through
SOLAR's SVD-Attention memory (rank 16), `compress` through KuaiFormer's schedule
(benchmarks/throughput.py's rule, as configs/recurring.py), `recent` not at all (max_len
48). The next-item loss scores the 48 raw tokens densely in all three, and the run is 1,000
steps (the recipe's 15,320 would take hours at 1,024 events on a CPU): a comparison of the
encoders, not a headline result.
"""
from configs import ml1m, recurring


def get_config(arg: str | None = None):
  shape = recurring.get_config(arg)  # the variant's history shape (and its name checked)
  c = ml1m.get_config()
  c.data.max_len = shape.data.max_len
  c.model.compression.schedule = shape.model.compression.schedule
  c.model.long_history, c.model.solar = shape.model.long_history, shape.model.solar
  c.loss.next_item_targets = 0
  # Measured before the recipe added the newest item's vector to every output and masked
  # the seen items from the softmax: both off, so benchmarks/results/long_history_ml1m.json
  # reproduces (a comparison of the encoders).
  c.model.output_skip = "none"
  c.loss.mask_seen = False
  c.train.num_steps = 1_000
  return c
