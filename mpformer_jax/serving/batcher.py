"""Request micro-batching: concurrent requests share one user-tower call and one search.

Each request is encoded by the model version current when it arrived and waits on a future;
one consumer task takes the first waiting request, gathers more for up to `max_wait_s` (or
until `max_batch`), and runs them on a worker thread, grouped by model version, so a hot
reload never mixes versions in a batch nor drops a request encoded for the old one.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Any

from mpformer_jax.serving.encoding import Encoded


@dataclasses.dataclass
class _Job:
  model: Any            # the ServedModel that encoded the request
  encoded: Encoded
  future: asyncio.Future


class MicroBatcher:
  """Collects requests into batches of at most `max_batch`, waiting at most `max_wait_s`."""

  def __init__(self, max_batch: int = 64, max_wait_s: float = 0.002):
    self.max_batch, self.max_wait_s = max_batch, max_wait_s
    self._queue: asyncio.Queue[_Job] | None = None
    self._task: asyncio.Task | None = None
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="recommend")
    self.batches = 0
    self.requests = 0

  def start(self) -> None:
    self._queue = asyncio.Queue()
    self._task = asyncio.get_running_loop().create_task(self._run())

  async def stop(self) -> None:
    if self._task is not None:
      self._task.cancel()
      try:
        await self._task
      except asyncio.CancelledError:
        pass
    self._pool.shutdown(wait=True)

  async def submit(self, model, encoded: Encoded) -> dict[str, Any]:
    """The answer to one encoded request (raises what the model raised for its batch)."""
    future = asyncio.get_running_loop().create_future()
    await self._queue.put(_Job(model, encoded, future))
    return await future

  async def _run(self) -> None:
    loop = asyncio.get_running_loop()
    while True:
      jobs = [await self._queue.get()]
      deadline = loop.time() + self.max_wait_s
      while len(jobs) < self.max_batch:
        timeout = deadline - loop.time()
        if timeout <= 0:
          break
        try:
          jobs.append(await asyncio.wait_for(self._queue.get(), timeout))
        except asyncio.TimeoutError:
          break
      for model in {id(j.model): j.model for j in jobs}.values():
        group = [j for j in jobs if j.model is model]
        try:
          answers = await loop.run_in_executor(
              self._pool, model.recommend, [j.encoded for j in group])
        except Exception as e:  # pylint: disable=broad-except  # every waiter gets it
          for j in group:
            if not j.future.done():
              j.future.set_exception(e)
          continue
        self.batches += 1
        self.requests += len(group)
        for j, answer in zip(group, answers):
          if not j.future.done():
            j.future.set_result(answer)
