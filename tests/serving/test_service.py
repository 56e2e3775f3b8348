"""The HTTP service on a real loopback server: answers, bad input, micro-batching."""
from __future__ import annotations

import concurrent.futures
import socket

import httpx
import pytest

from mpformer_jax.serving.service import BackgroundServer, create_app
from mpformer_jax.train.loop import train_and_evaluate
from tests.serving.shop_run import shop_config


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
  folder = tmp_path_factory.mktemp("shop")
  config, _ = shop_config(folder, num_steps=20, export_every=20)
  train_and_evaluate(config, str(folder / "run"))
  with BackgroundServer(create_app(config.export.dir, max_batch=8, max_wait_ms=20),
                        free_port()) as base:
    yield base


def post(url, body, **kw):
  content = body if isinstance(body, (str, bytes)) else None
  return httpx.post(f"{url}/recommend", content=content,
                    json=None if content is not None else body, timeout=60, **kw)


def test_answers_per_objective_and_merged(url):
  r = post(url, {"history": [{"item": "sku-001", "behaviour": "view", "time": 0},
                             {"item": "sku-005", "behaviour": "buy", "time": 90}], "n": 4})
  assert r.status_code == 200, r.text
  body = r.json()
  assert set(body["objectives"]) == {"view", "buy"} and body["source"] == "model"
  assert all(len(v["items"]) == 4 and len(v["scores"]) == 4 for v in body["objectives"].values())
  assert body["merged"]["items"] and set(body["merged"]["weights"]) == {"view", "buy"}
  assert body["version"] == "v000001" and body["step"] == 20
  assert httpx.get(f"{url}/health").json()["status"] == "ok"
  version = httpx.get(f"{url}/version").json()
  assert version["objectives"] == ["view", "buy"] and version["index"]["kind"] == "exact"


@pytest.mark.parametrize("body,message", [
    ("{not json", "not JSON"),
    ("[1, 2]", "a request is a JSON object"),
    ({"history": "sku-001"}, "history must be a list"),
    ({"history": [{"item": ["sku-001"]}]}, "history[0].item must be an item id"),
    ({"history": [{"item": "sku-001", "behaviour": "like"}]}, "behaviour 'like' is unknown"),
    ({"history": [{"item": "sku-001", "time": "noon"}]}, "time must be a finite number"),
    ({"history": [{"item": "sku-001", "colour": 1}]}, "unknown fields ['colour']"),
    ({"history": [], "n": 10_000}, "n must be an integer in [1, 20]"),
    ({"history": [], "user": "u", "k": 3}, "unknown request fields ['k']"),
])
def test_malformed_requests_get_a_400_that_says_why(url, body, message):
  r = post(url, body)
  assert r.status_code == 400, r.text
  error = r.json()["error"]
  assert error["type"] == "bad_request" and message in error["message"]


def test_unknown_empty_and_over_long_histories(url):
  unknown = post(url, {"history": [{"item": "sku-001"}, {"item": "nope"}, {"item": 99999}]})
  assert unknown.status_code == 200
  assert unknown.json()["info"]["unknown_items"] == 2 and unknown.json()["source"] == "model"
  for history in ([], [{"item": "nope"}]):     # nothing known: the cold-start answer
    cold = post(url, {"history": history, "n": 3}).json()
    assert cold["cold_start"] and cold["source"] == "popularity"
    assert all(len(v["items"]) == 3 and v["scores"] is None for v in cold["objectives"].values())
  long = [{"item": f"sku-{i % 50:03d}", "time": i} for i in range(500)]
  body = post(url, {"history": long}).json()
  assert body["info"]["truncated_events"] == 500 - 16 and body["info"]["used_events"] == 16
  # Only the newest 16 count (the one before them gives the first one's time gap).
  newest = post(url, {"history": long[-17:]}).json()
  assert newest["objectives"] == body["objectives"] and newest["info"]["truncated_events"] == 1


def test_concurrent_requests_share_batches(url):
  before = httpx.get(f"{url}/health").json()
  bodies = [{"history": [{"item": f"sku-{i:03d}"}], "n": 5} for i in range(32)]
  with concurrent.futures.ThreadPoolExecutor(16) as pool:
    results = list(pool.map(lambda b: post(url, b), bodies))
  assert all(r.status_code == 200 for r in results)
  after = httpx.get(f"{url}/health").json()
  assert after["requests"] - before["requests"] == 32
  assert after["batches"] - before["batches"] < 32      # some requests were batched together
