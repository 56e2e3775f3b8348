"""Export parity: the artifact's tower, encoding and search reproduce the trained model."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from mpformer_jax.data import schema
from mpformer_jax.model.retriever import Retriever
from mpformer_jax.retrieval.exact import exact_top_k
from mpformer_jax.retrieval.multi_objective import merged_lists
from mpformer_jax.serving import artifact
from mpformer_jax.serving.loader import ServedModel
from mpformer_jax.serving.service import ModelHolder
from mpformer_jax.train.loop import train_and_evaluate
from mpformer_jax.train.offline_eval import original_ids, restore_run
from tests.serving.shop_run import raw_histories, shop_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  folder = tmp_path_factory.mktemp("shop")
  config, files = shop_config(folder)
  train_and_evaluate(config, str(folder / "run"))
  model, examples, evaluator, params, step, source = restore_run(config, str(folder / "run"),
                                                                 "test")
  served = ServedModel(artifact.latest(config.export.dir), max_batch=4)
  return dict(config=config, files=files, model=model, examples=examples, params=params,
              evaluator=evaluator, step=step, source=source, served=served, folder=folder)


def test_exported_tower_equals_the_model(run):
  served, examples, params, model = run["served"], run["examples"], run["params"], run["model"]
  assert served.step == run["step"] == 40
  batch = [_encoded(served, examples, i) for i in range(7)]
  interests, weights = served.user_outputs(batch)
  ref = np.asarray(run["evaluator"].users(params, {k: v[:7] for k, v in examples.items()}))
  np.testing.assert_allclose(interests, ref, atol=1e-5, rtol=1e-5)
  ref_w = model.apply({"params": params}, {k: jnp.asarray(v[:7]) for k, v in examples.items()},
                      method=Retriever.objective_weights)
  np.testing.assert_allclose(weights, np.asarray(ref_w), atol=1e-5)
  assert not np.allclose(weights, 0.5)       # the personalised target-weight head is in it


def test_raw_histories_encode_as_the_training_data(run):
  """Requests built from the CSV rows (original ids, behaviours, times) give the test
  examples' inputs exactly, and so the same user vectors."""
  served, examples, source = run["served"], run["examples"], run["source"]
  histories = raw_histories(run["files"]["log"])
  users = original_ids(source, "users", np.asarray(examples[schema.USER_INDEX]))
  truncated = 0
  for row, user in enumerate(users[:60]):
    e = served.encode({"user": user, "history": histories[user][:-1]})   # all but the target
    for key in ("history_ids", "history_item_features", "history_event_features"):
      np.testing.assert_array_equal(getattr(e, key), examples[key][row], err_msg=f"{user} {key}")
    truncated += e.truncated > 0
  assert truncated > 0          # some histories are longer than max_len 16


def test_served_lists_are_the_exact_top_n(run):
  served, examples = run["served"], run["examples"]
  users = original_ids(run["source"], "users", np.asarray(examples[schema.USER_INDEX]))
  histories = raw_histories(run["files"]["log"])
  answers = served.recommend([served.encode({"history": histories[u][:-1], "n": 7})
                              for u in users[:5]])
  interests = np.asarray(run["evaluator"].users(run["params"],
                                                {k: v[:5] for k, v in examples.items()}))
  items = run["evaluator"].corpus(run["params"])
  for o, name in enumerate(("view", "buy")):
    _, ids = exact_top_k(jnp.asarray(interests[:, o]), items, 7)
    want = original_ids(run["source"], "items", np.asarray(ids))
    for u, answer in enumerate(answers):
      assert answer["objectives"][name]["items"] == list(want[u])
      assert np.all(np.diff(answer["objectives"][name]["scores"]) <= 1e-6)
  # The merged list is the one the trainer's evaluation scores (personalised quotas).
  weights = np.asarray([[a["merged"]["weights"][o] for o in ("view", "buy")] for a in answers])
  ref = merged_lists(interests, items, weights, 20, minimum=2, c=run["config"].eval.
                     interest_overfetch)
  for u, answer in enumerate(answers):
    want = list(original_ids(run["source"], "items", ref[u][ref[u] > 0]))
    assert answer["merged"]["items"] == want and 10 < len(want) <= 20
    assert abs(sum(answer["merged"]["weights"].values()) - 1) < 1e-5


def test_the_loader_imports_no_training_code(run):
  code = f"""
import sys
from mpformer_jax.serving.loader import ServedModel
m = ServedModel({artifact.latest(run['config'].export.dir)!r}, max_batch=1)
assert m.recommend([m.encode({{"history": [{{"item": "sku-001"}}]}})])[0]["source"] == "model"
bad = sorted(k for k in sys.modules if k.split(".")[0] in
             ("flax", "optax", "orbax", "grain", "tensorflow_datasets", "tensorflow")
             or k.startswith(("mpformer_jax.train", "mpformer_jax.model", "mpformer_jax.data")))
print("FORBIDDEN", bad)
"""
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
  assert out.returncode == 0, out.stderr[-3000:]
  assert "FORBIDDEN []" in out.stdout


def test_a_damaged_version_is_refused_and_the_old_one_kept(run, tmp_path):
  root = tmp_path / "root"
  good = artifact.latest(run["config"].export.dir)
  shutil.copytree(good, root / "v000001")
  holder = ModelHolder(str(root), max_batch=1)
  assert holder.refresh() and holder.model.version == "v000001"
  shutil.copytree(good, root / "v000002")
  with open(root / "v000002" / "params.npz", "r+b") as f:   # one flipped byte
    f.seek(100)
    byte = f.read(1)
    f.seek(100)
    f.write(bytes([byte[0] ^ 1]))
  with pytest.raises(artifact.ArtifactError, match="checksum of params.npz"):
    artifact.verify(str(root / "v000002"))
  assert not holder.refresh()
  assert holder.model.version == "v000001" and "v000002 refused" in holder.last_error
  shutil.copytree(good, root / "v000003")     # a good newer version is still taken
  assert holder.refresh() and holder.model.version == "v000003"


def _encoded(served, examples, i):
  from mpformer_jax.serving.encoding import Encoded  # pylint: disable=g-import-not-at-top
  return Encoded(*(np.asarray(examples[k][i]) for k in (
      "history_ids", "history_item_features", "history_event_features", "user_features")),
                 n=5, events=1, unknown_items=0, truncated=0, known_user=False)
