"""Stop cleanly on SIGTERM / SIGINT: finish the step, save, exit 0.

Single process: a handler records the first signal and the loop stops after the current
step; a second SIGINT gets Python's default behaviour (KeyboardInterrupt), for a person who
really wants out. Several processes: the hosts must stop at the same step or their
collectives would hang, so the decision is JAX's preemption sync point (the coordination
service catches SIGTERM on every host and agrees on a step; via Orbax's
`reached_preemption`); no Python handler is installed there.
"""
from __future__ import annotations

import signal

import jax
from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionGuard:
  """Context manager; `requested(step, checkpointer)` says whether to stop after `step`."""

  def __init__(self):
    self.signal_name: str | None = None
    self._previous = {}

  def __enter__(self) -> PreemptionGuard:
    if jax.process_count() == 1:
      for sig in SIGNALS:
        try:
          self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:   # not the main thread: leave signals to the caller
          logging.warning("not in the main thread: SIGTERM/SIGINT will not stop cleanly")
          break
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def _handle(self, signum, frame) -> None:  # pylint: disable=unused-argument
    if self.signal_name is None:
      self.signal_name = signal.Signals(signum).name
      logging.warning("%s received: finishing the current step, then saving and stopping "
                      "(send SIGINT again to abort without saving)", self.signal_name)
    if signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.default_int_handler)

  def requested(self, step: int, checkpointer) -> bool:
    if jax.process_count() > 1:
      if checkpointer.reached_preemption(step):
        self.signal_name = self.signal_name or "preemption notice"
        return True
      return False
    return self.signal_name is not None
