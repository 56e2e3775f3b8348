"""Count baselines beside benchmarks/quality.py's trained runs: popularity and transitions.

No training: both rank the same test targets from counts over the training targets
(mpformer_jax/retrieval/popularity.py, transitions.py), in the same variants as the runs,
so every table shows the floors a trained model must clear: popularity ignores the history,
transitions reads its newest item (a first-order Markov chain of counts). Recomputed on
every `benchmarks/quality.py` call (seconds), stored under "baselines" in quality_<d>.json.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from mpformer_jax.data import pipeline, schema, screening
from mpformer_jax.data.registry import make_source
from mpformer_jax.retrieval.metrics import ranking_metrics
from mpformer_jax.train.evaluation import Baselines, baseline_ranks

NAMES = {"popularity": "most popular training target",
         "transitions": "most frequent training successor of the newest item"}


def compute(data_config, objectives: Optional[list[str]], prefixes: dict[str, str], key,
            ks=(10, 50, 200)) -> dict[str, dict]:
  """{baseline: entry} with test metrics under `key(prefix, objective, metric)` for each
  variant prefix in `prefixes` ("test": all items; "test_seen_removed": whole history out)
  and each objective (None: the dataset's own)."""
  source = screening.screen_users(make_source(data_config), data_config.invalid_users)
  objectives = list(objectives or source.spec.objectives)
  baselines = Baselines(pipeline.popularity_counts(source, max_users=None),
                        pipeline.transition_counts(source, max_users=None))
  # max_len 1: a baseline reads only the newest item; SEEN_IDS still holds the whole history.
  examples = pipeline.eval_examples(source, split="test", max_len=1,
                                    logq_table=np.zeros(source.spec.item_vocab_size,
                                                        np.float32))
  out = {name: dict(objectives=objectives, num_users=int(examples[schema.TARGET_ID].size),
                    num_items=int(source.spec.num_items)) for name in NAMES}
  for prefix in prefixes.values():
    exclude = examples[schema.SEEN_IDS] if prefix.endswith("seen_removed") else None
    for name, ranks in baseline_ranks(baselines, examples, exclude).items():
      for o in objectives:
        mask = examples[schema.TARGET_LABELS][:, source.spec.objective_index(o)] > 0
        for m, v in ranking_metrics(ranks, ks, mask=mask).items():
          out[name][key(prefix, o, m)] = v
  return out


def table_rows(baselines: dict, variants: list[str], prefixes: dict[str, str], key) -> list[str]:
  """Markdown rows in quality.py's table layout (no cost columns: nothing is trained)."""
  rows = []
  for name, e in baselines.items():
    for o in e["objectives"]:
      for variant in variants:
        vals = [e.get(key(prefixes[variant], o, m))
                for m in ("ndcg@10", "hr@10", "ndcg@50", "hr@50")]
        if all(v is None for v in vals):
          continue
        rows.append(f"| baseline: {name} ({NAMES[name]}) | {o} | {variant} | "
                    + " | ".join("-" if v is None else f"{v:.4f}" for v in vals)
                    + " |" * 6)
  return rows
