"""eval.objectives: a model's vectors scored against dataset objectives it was not trained
on (one KuaiFormer on all events, reported per behaviour)."""
import jax
import jax.numpy as jnp
import numpy as np

from configs import kuaiformer
from mpformer_jax.data import pipeline, schema
from mpformer_jax.data.registry import make_source
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.retrieval.exact import target_ranks
from mpformer_jax.retrieval.metrics import ranking_metrics
from mpformer_jax.train.evaluation import Evaluator


def test_other_objectives_are_ranked_with_the_first_objectives_vectors():
  c = kuaiformer.get_config("tiny")              # one objective: click
  c.eval.objectives = ("like", "click")
  source = make_source(c.data)
  model = Retriever(source.spec, ModelConfig.from_config(c.model, c.data.max_len))
  logq = pipeline.target_log_q(source, max_users=200)
  examples = pipeline.eval_examples(source, split="valid", max_len=c.data.max_len,
                                    logq_table=logq, users=pipeline.eval_users(source, "valid",
                                                                                100))
  batch = {k: jnp.asarray(v[:2]) for k, v in examples.items()}
  params = model.init(jax.random.PRNGKey(0), batch)["params"]
  evaluator = Evaluator(model, pipeline.item_corpus_features(source), c.eval)
  out = evaluator(params, examples, np.ones(source.spec.item_vocab_size))
  assert evaluator.scored_objectives() == [(0, "like"), (0, "click")]
  users, items = evaluator.users(params, examples), evaluator.corpus(params)
  ranks = np.asarray(target_ranks(users[:, 0], items, jnp.asarray(examples[schema.TARGET_ID])))
  like = examples[schema.TARGET_LABELS][:, source.spec.objective_index("like")] > 0
  assert 0 < like.sum() < like.size
  want = ranking_metrics(ranks, tuple(c.eval.ks), mask=like)
  assert out["eval/like/hr@50"] == want["hr@50"] and out["eval/like/count"] == like.sum()
  assert out["eval/hr@50"] == out["eval/like/hr@50"]      # the first reported objective
  assert out["eval/click/hr@50"] != out["eval/like/hr@50"]
