"""The recurring-interests workload (data/recurring.py): is reading 1,024 events worth it?

  python -m launch.train --config=configs/recurring.py --workdir=/tmp/rec_solar     # SOLAR
  python -m launch.train --config=configs/recurring.py:compress --workdir=/tmp/rec_comp
  python -m launch.train --config=configs/recurring.py:recent --workdir=/tmp/rec_recent

Users have 1,024-2,048 events; 8 favourite items recur in bursts of 8 every 256 events, none
in the 256 events before the last three (newest training target, validation, test), each of
which returns to a favourite half the time. Training takes each user's newest window
(data.sampling="user"), so every example ends in such an event, as held-out ones do.
KuaiFormer (one objective, click) over the newest 1,024 events, the newest 48 of them raw in
every variant: `default` reads the 976 older ones through SOLAR's SVD-Attention memory
(rank 16), `compress` through KuaiFormer's schedule (5 windows of 16, 2 of 64, 3 of 256;
benchmarks/throughput.py's rule), `recent` not at all (max_len 48: the floor).
"""
from configs import kuaiformer

MAX_LEN, RAW = 1024, 48


def get_config(arg: str | None = None):
  variant = arg or "default"
  if variant not in ("default", "compress", "recent"):
    raise ValueError(f"configs/recurring.py: unknown variant {variant!r}; use 'default', "
                     "'compress' or 'recent'")
  c = kuaiformer.get_config()
  c.data.synthetic.update(min_len=1_024, max_len=2_048)
  c.data.recurring.update(items=8, period=256, burst=8, quiet=256, return_prob=0.5)
  c.data.max_len = RAW if variant == "recent" else MAX_LEN
  c.data.sampling = "user"
  c.model.compression.schedule = (((256, 3), (64, 2), (16, 5)) if variant == "compress"
                                  else ())
  if variant == "default":
    c.model.long_history = "solar"
    c.model.solar.update(rank=16, recent=RAW)
  c.train.update(num_steps=800, batch_size=64, eval_every_steps=400,
                 checkpoint_every_steps=400)
  c.eval.num_users = 2_000
  return c
