"""model.output_skip="newest": every output vector adds the vector of the newest item it reads."""
import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest
from configs import base

from mpformer_jax.data import schema
from mpformer_jax.model.retriever import OUTPUT_SKIPS, ModelConfig, Retriever
from tests.model.test_retriever import SPEC, assert_newest_item_unseen, model_cfg, toy_batch


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("encoder,normalize", [("mlp", True), ("id", True), ("mlp", False)])
def test_skip_adds_the_newest_items_vector(encoder, normalize):
  """Against the same model without the skip (same parameters but the scale): interest =
  norm(plain + s * v(newest item)); each raw token's output adds its own item's vector, and
  nothing at padding; the newest item stays unseen by earlier tokens."""
  dims = dict(d_model=16, item_embed_dim=16, output_dim=16) if encoder == "id" else {}
  plain_cfg = model_cfg(objectives=("click",), item_encoder=encoder, normalize=normalize,
                        **dims)
  model = Retriever(SPEC, dataclasses.replace(plain_cfg, output_skip="newest"))
  batch = toy_batch()
  batch[schema.HISTORY_IDS][0, :9] = 0  # padding reaches the raw (uncompressed) tokens
  for key in (schema.HISTORY_ITEM_FEATURES, schema.HISTORY_EVENT_FEATURES):
    batch[key] = batch[key] * (batch[schema.HISTORY_IDS] > 0)[..., None]
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch))
  params["params"]["newest_skip_scale"] = np.float32(0.7)
  plain_params = {"params": {k: v for k, v in params["params"].items()
                             if k != "newest_skip_scale"}}
  out, _ = model.apply(params, batch)
  ref, _ = Retriever(SPEC, plain_cfg).apply(plain_params, batch)
  ids = batch[schema.HISTORY_IDS]
  vec = np.asarray(model.apply(params, ids, batch[schema.HISTORY_ITEM_FEATURES],
                               method=Retriever.embed_items))
  norm = _unit if normalize else (lambda x: x)
  np.testing.assert_allclose(out["interests"],
                             norm(ref["interests"] + 0.7 * vec[:, None, None, -1]),
                             rtol=1e-5, atol=1e-6)
  r = out["item_outputs"].shape[1]
  raw = vec[:, -r:] * (ids[:, -r:] > 0)[..., None]
  assert (ids[:, -r:] == 0).any()  # the padding case is exercised
  np.testing.assert_allclose(out["item_outputs"], norm(ref["item_outputs"] + 0.7 * raw),
                             rtol=1e-5, atol=1e-6)
  assert_newest_item_unseen(model, params, batch, out)


def test_scale_is_a_parameter_only_with_the_skip():
  batch = toy_batch()
  for skip in OUTPUT_SKIPS:
    params = Retriever(SPEC, model_cfg(output_skip=skip)).init(jax.random.PRNGKey(0), batch)
    assert ("newest_skip_scale" in params["params"]) == (skip == "newest")


def test_unknown_skip_is_an_error():
  cfg = base.get_config("tiny")
  cfg.model.output_skip = "oldest"
  with pytest.raises(ValueError, match=r"model.output_skip must be one of \('none', 'newest'\)"):
    ModelConfig.from_config(cfg.model, cfg.data.max_len)
