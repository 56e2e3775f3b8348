"""The retrieval service: HTTP JSON on FastAPI, micro-batched, hot-reloading new artifacts.

  POST /recommend   {"user"?, "history": [...], "n"?} -> per-objective top-n items with
                    scores, the merged list (personalised quotas), cold_start, version, info
  GET  /health      200 {"status": "ok", ...} once a version is loaded, else 503
  GET  /version     the served version's manifest summary (step, metrics, index, ...)

Errors are JSON {"error": {"type", "message"}}: 400 for a malformed request (bad JSON, wrong
types, unknown behaviour, n out of range), 503 before any artifact is loaded, 500 if the
model fails (the service keeps running). A watcher thread polls the artifact root; a newer
version is verified (checksums) and warmed up (every batch size compiled) before it
replaces the served one, so no request waits on a compile or is dropped; a version that
fails verification is refused, logged, reported by /health, and the old one stays.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Any, Optional

import uvicorn
from absl import logging
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mpformer_jax.serving import artifact
from mpformer_jax.serving.batcher import MicroBatcher
from mpformer_jax.serving.encoding import RequestError
from mpformer_jax.serving.loader import ServedModel


class ModelHolder:
  """The served version, swapped atomically by `refresh` when a newer one verifies."""

  def __init__(self, root: str, max_batch: int = 64):
    self.root, self.max_batch = os.path.abspath(root), max_batch
    self.model: Optional[ServedModel] = None
    self.last_error: Optional[str] = None
    self.refused: set[str] = set()
    self.reloads = 0
    self._lock = threading.Lock()

  def refresh(self) -> bool:
    """Loads the newest version if it is newer than the served one; True if swapped."""
    with self._lock:
      found = artifact.versions(self.root)
      if not found:
        return False
      newest = found[-1]
      current = self.model.directory if self.model else None
      if newest == current or newest in self.refused:
        return False
      if current and os.path.basename(newest) < os.path.basename(current):
        return False
      try:
        model = ServedModel(newest, max_batch=self.max_batch)
      except Exception as e:  # pylint: disable=broad-except  # any unloadable version
        self.refused.add(newest)
        self.last_error = f"{os.path.basename(newest)} refused: {e}"
        logging.error("artifact %s refused, still serving %s: %s", newest,
                      current or "nothing", e)
        return False
      self.model, self.reloads = model, self.reloads + 1
      logging.info("serving %s (step %d)", newest, model.step)
      return True


class _Watcher(threading.Thread):
  """Polls the artifact root every `poll_s` seconds until stopped."""

  def __init__(self, holder: ModelHolder, poll_s: float):
    super().__init__(daemon=True, name="artifact-watcher")
    self.holder, self.poll_s = holder, poll_s
    self.stopped = threading.Event()

  def run(self) -> None:
    while not self.stopped.wait(self.poll_s):
      try:
        self.holder.refresh()
      except Exception as e:  # pylint: disable=broad-except  # the watcher must not die
        self.holder.last_error = f"reload failed: {e}"
        logging.exception("artifact reload failed")


def _error(status: int, kind: str, message: str) -> JSONResponse:
  return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def create_app(root: str, *, max_batch: int = 64, max_wait_ms: float = 2.0,
               poll_s: float = 2.0) -> FastAPI:
  """The service over the artifact root `root` (versions published by `artifact.publish`)."""
  holder = ModelHolder(root, max_batch)
  batcher = MicroBatcher(max_batch, max_wait_ms / 1000)
  watcher = _Watcher(holder, poll_s)

  @contextlib.asynccontextmanager
  async def lifespan(_):
    holder.refresh()
    batcher.start()
    watcher.start()
    yield
    watcher.stopped.set()
    await batcher.stop()

  app = FastAPI(title="mpformer_jax retrieval", lifespan=lifespan)
  app.state.holder, app.state.batcher = holder, batcher

  @app.post("/recommend")
  async def recommend(request: Request):
    model = holder.model
    if model is None:
      return _error(503, "unavailable", f"no artifact loaded yet from {holder.root}")
    try:
      body = json.loads(await request.body())
      encoded = model.encode(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      return _error(400, "bad_request", f"the body is not JSON: {e}")
    except RequestError as e:
      return _error(400, "bad_request", str(e))
    try:
      return await batcher.submit(model, encoded)
    except Exception as e:  # pylint: disable=broad-except  # a request never kills the service
      logging.exception("recommend failed")
      return _error(500, "internal", f"{type(e).__name__}: {e}")

  @app.get("/health")
  async def health():
    model = holder.model
    body = {"status": "ok" if model else "unavailable",
            "version": model.version if model else None,
            "step": model.step if model else None, "reloads": holder.reloads,
            "last_error": holder.last_error, "batches": batcher.batches,
            "requests": batcher.requests}
    return JSONResponse(body, status_code=200 if model else 503)

  @app.get("/version")
  async def version():
    model = holder.model
    if model is None:
      return _error(503, "unavailable", f"no artifact loaded yet from {holder.root}")
    m = model.manifest
    return {"version": model.version, "directory": model.directory,
            **{k: m[k] for k in ("step", "created", "dataset", "num_items", "objectives",
                                 "index", "metrics", "quotas", "default_n", "max_n")}}

  return app


class BackgroundServer:
  """Runs an app under uvicorn on a thread (tests, benchmarks): `with BackgroundServer(app,
  port) as url: ...`; the server is up when the block starts and shut down after it."""

  def __init__(self, app: FastAPI, port: int, host: str = "127.0.0.1"):
    self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    self.url = f"http://{host}:{port}"
    self._thread = threading.Thread(target=self.server.run, daemon=True)

  def __enter__(self) -> str:
    self._thread.start()
    deadline = time.monotonic() + 120
    while not self.server.started:
      if not self._thread.is_alive() or time.monotonic() > deadline:
        raise RuntimeError(f"the server on {self.url} did not start")
      time.sleep(0.05)
    return self.url

  def __exit__(self, *exc: Any) -> None:
    self.server.should_exit = True
    self._thread.join(timeout=30)
