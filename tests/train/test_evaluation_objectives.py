"""Which objectives evaluation reports: eval.objectives (a model's vectors scored against
dataset objectives it was not trained on, e.g. one KuaiFormer on all events, reported per
behaviour), and the merged list's exposure when an objective has no held-out event."""
import jax
import jax.numpy as jnp
import numpy as np

from configs import base, kuaiformer
from mpformer_jax.data import pipeline, schema
from mpformer_jax.data.registry import make_source
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.retrieval.exact import target_ranks
from mpformer_jax.retrieval.metrics import ranking_metrics
from mpformer_jax.train.evaluation import Baselines, Evaluator


def _initialised(c):
  """The source, 100 validation examples, initialised params and the evaluator of config c."""
  source = make_source(c.data)
  model = Retriever(source.spec, ModelConfig.from_config(c.model, c.data.max_len))
  logq = pipeline.target_log_q(source, max_users=200)
  examples = pipeline.eval_examples(source, split="valid", max_len=c.data.max_len,
                                    logq_table=logq, users=pipeline.eval_users(source, "valid",
                                                                                100))
  params = model.init(jax.random.PRNGKey(0),
                      {k: jnp.asarray(v[:2]) for k, v in examples.items()})["params"]
  return source, examples, params, Evaluator(model, pipeline.item_corpus_features(source),
                                             c.eval)


def test_other_objectives_are_ranked_with_the_first_objectives_vectors():
  c = kuaiformer.get_config("tiny")              # one objective: click
  c.eval.objectives = ("like", "click")
  source, examples, params, evaluator = _initialised(c)
  out = evaluator(params, examples, Baselines(np.ones(source.spec.item_vocab_size)))
  assert evaluator.scored_objectives() == [(0, "like"), (0, "click")]
  users, items = evaluator.users(params, examples), evaluator.corpus(params)
  ranks = np.asarray(target_ranks(users[:, 0], items, jnp.asarray(examples[schema.TARGET_ID])))
  like = examples[schema.TARGET_LABELS][:, source.spec.objective_index("like")] > 0
  assert 0 < like.sum() < like.size
  want = ranking_metrics(ranks, tuple(c.eval.ks), mask=like)
  assert out["eval/like/hr@50"] == want["hr@50"] and out["eval/like/count"] == like.sum()
  assert out["eval/hr@50"] == out["eval/like/hr@50"]      # the first reported objective
  assert out["eval/click/hr@50"] != out["eval/like/hr@50"]


def test_merged_exposure_leaves_out_objectives_without_held_out_events():
  c = base.get_config("tiny")                    # MPFormer: click, long_view, like, follow
  source, examples, params, evaluator = _initialised(c)
  users, items = evaluator.users(params, examples), evaluator.corpus(params)
  full = evaluator.merged(params, users, items, examples, "eval")
  follow = source.spec.objective_index("follow")
  assert examples[schema.TARGET_LABELS][:, follow].any()
  examples[schema.TARGET_LABELS][:, follow] = 0   # as retail's test split: no such events
  out = evaluator.merged(params, users, items, examples, "eval")
  n = c.eval.merged_n
  for kind in ("merged", "merged_uniform"):
    assert f"eval/{kind}/follow/hr@{n}" not in out
    kept = [out[f"eval/{kind}/{o}/hr@{n}"] for o in ("click", "long_view", "like")]
    assert kept == [full[f"eval/{kind}/{o}/hr@{n}"] for o in ("click", "long_view", "like")]
    assert out[f"eval/{kind}/mean_exposure"] == np.mean(kept)
    with_follow = kept + [full[f"eval/{kind}/follow/hr@{n}"]]
    assert full[f"eval/{kind}/mean_exposure"] == np.mean(with_follow)
