"""Offline evaluation (launch/evaluate.py): matches the trainer, both variants, ScaNN, errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import base
from mpformer_jax.data import schema
from mpformer_jax.train import offline_eval
from mpformer_jax.train.loop import train_and_evaluate
from mpformer_jax.train.offline_eval import evaluate, export_embeddings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 30
OBJECTIVES = ("click", "long_view", "like", "follow")
METRICS = ("hr@10", "hr@50", "hr@200", "ndcg@10", "ndcg@50", "ndcg@200")


def _config():
  config = base.get_config("tiny")
  config.train.num_steps = STEPS
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("trained"))
  final = train_and_evaluate(_config(), workdir)
  return workdir, final


def _check_keys(result, split="test"):
  for variant in (split, f"{split}_seen_removed"):
    for obj in OBJECTIVES:
      for m in METRICS:
        assert 0.0 <= result[f"{variant}/{obj}/{m}"] <= 1.0, (variant, obj, m)


def test_exact_matches_trainer_and_seen_removed_dominates(trained):
  workdir, final = trained
  result = evaluate(_config(), workdir, "exact", "test")
  assert result["step"] == STEPS and result["num_users"] == 300
  _check_keys(result)
  assert not any("complete_users" in k for k in result)  # no incomplete users here
  with open(os.path.join(workdir, "eval_exact.json")) as f:
    assert json.load(f).keys() == result.keys()
  # Same params, users and ranking code as the trainer's final test eval.
  assert result["test/click/hr@50"] == pytest.approx(final["test/click/hr@50"], abs=1e-6)
  for obj in OBJECTIVES:
    for m in METRICS:
      key = f"test/{obj}/{m}"
      assert result[key] == pytest.approx(final[key], abs=1e-6), key
      # target_ranks counts other items scoring >= the target; removing items (never the
      # target) can only lower that count, so per user and hence on average seen-removed
      # HR/NDCG >= all-items HR/NDCG.
      assert result[f"test_seen_removed/{obj}/{m}"] >= result[key] - 1e-12, key
  assert result["qps/exact"] > 0


def test_complete_users_variant(trained, tmp_path, monkeypatch):
  """A source that lost events of some users (ML-1M's incomplete_users) also gets every
  metric without them: the same ranks averaged over the other users."""
  workdir, final = trained
  restore = offline_eval.restore_run

  def with_incomplete(*args):
    model, examples, evaluator, params, step, source = restore(*args)
    users = np.asarray(examples[schema.USER_INDEX])
    source.incomplete_users = users[::3].astype(np.int64)  # every third evaluated user
    return model, examples, evaluator, params, step, source
  monkeypatch.setattr(offline_eval, "restore_run", with_incomplete)
  full = evaluate(_config(), workdir, "exact", "test")
  for variant in ("test", "test_seen_removed"):
    for obj in OBJECTIVES:
      n_all = full[f"{variant}/{obj}/count"]
      n_complete = full[f"{variant}_complete_users/{obj}/count"]
      assert 0 < n_complete < n_all
      for m in METRICS:
        assert 0.0 <= full[f"{variant}_complete_users/{obj}/{m}"] <= 1.0
  # The other metrics are those of the source without incomplete users.
  assert full["test/click/hr@50"] == pytest.approx(final["test/click/hr@50"], abs=1e-6)


def test_scann_metrics_and_recall(trained):
  workdir, _ = trained
  result = evaluate(_config(), workdir, "scann", "test")
  _check_keys(result)
  assert result["qps/scann"] > 0 and result["qps/exact"] > 0
  assert result["scann_params"]["reorder_k"] >= 200
  for variant in ("test", "test_seen_removed"):
    for obj in OBJECTIVES:
      for k in (10, 50, 200):
        assert 0.0 <= result[f"{variant}/{obj}/scann_recall@{k}"] <= 1.0
  # 500 items < reorder_k: every item is re-scored exactly, so ScaNN is near-exact here.
  assert result["test/click/scann_recall@200"] >= 0.95
  assert os.path.exists(os.path.join(workdir, "eval_scann.json"))


def test_export_embeddings_reproduce_the_evaluation(trained, tmp_path):
  """The exported vectors are the evaluated ones: HR@200 recomputed from the .npz matches."""
  workdir, _ = trained
  path = str(tmp_path / "emb.npz")
  export_embeddings(_config(), workdir, path)
  with np.load(path) as f:
    items, queries = f["items"], f["queries"]
  assert items.shape == (501, 32) and queries.shape == (300 * 4, 2, 32)
  assert np.isfinite(items).all() and np.isfinite(queries).all()
  with np.load(path) as f:      # original ids (the synthetic platform's are its own)
    assert list(f["item_ids"][:3]) == ["", "1", "2"] and f["query_user_ids"].shape == (1200,)
    assert list(f["objectives"][:5]) == ["click", "long_view", "like", "follow", "click"]
  _, examples, _, _, _ = offline_eval._build(_config(), "test")  # pylint: disable=protected-access
  click = queries.reshape(300, 4, 2, 32)[:, 0]
  scores = (click @ items[1:].T).max(1)  # [U, N]: max over interests, padding row dropped
  targets = examples[schema.TARGET_ID]
  target_score = scores[np.arange(300), targets - 1]
  ranks = (scores >= target_score[:, None]).sum(1) - 1  # other items scoring >= the target
  labelled = examples[schema.TARGET_LABELS][:, 0] > 0
  expected = evaluate(_config(), workdir, "exact", "test")["test/click/hr@200"]
  assert np.mean(ranks[labelled] < 200) == pytest.approx(expected, abs=1e-6)


def test_cli_valid_split(trained):
  workdir, final = trained
  proc = subprocess.run(
      [sys.executable, "-m", "launch.evaluate", "--config=configs/base.py:tiny",
       f"--config.train.num_steps={STEPS}", f"--workdir={workdir}", "--retrieval=exact",
       "--split=valid"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "seen removed" in proc.stdout and "queries/s" in proc.stdout
  with open(os.path.join(workdir, "eval_exact.json")) as f:
    result = json.load(f)
  _check_keys(result, "valid")
  # The tiny config's eval split is "valid": the trainer logged it under "eval/".
  assert result["valid/click/hr@50"] == pytest.approx(final["eval/click/hr@50"], abs=1e-6)


def test_errors(tmp_path):
  with pytest.raises(ValueError, match="unknown retrieval"):
    evaluate(_config(), str(tmp_path), "annoy")
  with pytest.raises(ValueError, match="unknown split"):
    evaluate(_config(), str(tmp_path), "exact", "train")
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    evaluate(_config(), str(tmp_path), "exact")
  assert not os.path.exists(tmp_path / "checkpoints")  # nothing created
