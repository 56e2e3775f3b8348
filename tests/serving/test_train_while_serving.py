"""Train while serving: a run publishes versions, the service switches with no failed request."""
from __future__ import annotations

import threading
import time

import httpx

from mpformer_jax.serving.service import BackgroundServer, create_app
from mpformer_jax.train.loop import train_and_evaluate
from tests.serving.shop_run import shop_config
from tests.serving.test_service import free_port


def test_the_service_follows_a_training_run(tmp_path):
  config, _ = shop_config(tmp_path, num_steps=60, export_every=20)   # versions at 20, 40, 60
  app = create_app(config.export.dir, max_batch=2, max_wait_ms=5, poll_s=0.2)
  with BackgroundServer(app, free_port()) as url:
    assert httpx.get(f"{url}/health").status_code == 503    # nothing published yet
    seen, failures, stop = [], [], threading.Event()

    def client():
      while not stop.is_set():
        r = httpx.post(f"{url}/recommend", json={"history": [{"item": "sku-004"}]}, timeout=60)
        if r.status_code == 200:
          seen.append((r.json()["version"], r.json()["step"]))
        elif seen or r.status_code != 503:   # 503 only before the first version
          failures.append((r.status_code, r.text))
        time.sleep(0.02)

    thread = threading.Thread(target=client)
    thread.start()
    try:
      train_and_evaluate(config, str(tmp_path / "run"))
      deadline = time.monotonic() + 120
      while httpx.get(f"{url}/health").json()["step"] != 60:
        assert time.monotonic() < deadline, "the service never served the final version"
        time.sleep(0.2)
      time.sleep(0.5)
    finally:
      stop.set()
      thread.join()
  assert not failures, failures[:3]
  steps = [step for _, step in seen]
  assert steps == sorted(steps) and steps[-1] == 60      # versions only move forward
  assert len(set(steps)) >= 2, "the service never switched versions while serving"
  assert app.state.holder.reloads >= 2
