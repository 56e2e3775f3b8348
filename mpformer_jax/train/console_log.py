"""Readable console logs: the project's lines on the console, library chatter in a file.

Orbax, TensorStore, Grain and TFDS log a line per file and per phase at INFO. The console
(absl's stderr handler) keeps warnings and errors from everyone but INFO lines only from this
project (`mpformer_jax`, `launch`, `benchmarks`), unless `--verbosity` is given on the command
line. Every INFO line, chatter included, also goes to `<workdir>/<name>.log`.
"""
from __future__ import annotations

import logging as py_logging
import os

from absl import logging

PROJECT_PARTS = (f"{os.sep}mpformer_jax{os.sep}", f"{os.sep}launch{os.sep}",
                 f"{os.sep}benchmarks{os.sep}")


class ProjectFilter(py_logging.Filter):
  """Passes warnings and up, and INFO lines logged from this project's files."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or any(
        part in record.pathname for part in PROJECT_PARTS)


def quiet_console(verbose: bool) -> None:
  """Unless `verbose`, the console shows INFO lines from this project only."""
  if not verbose:
    logging.get_absl_handler().addFilter(ProjectFilter())


def log_to_file(workdir: str, name: str) -> str:
  """Every INFO line, libraries included, also to `<workdir>/<name>.log`; returns the path."""
  path = os.path.join(workdir, f"{name}.log")
  handler = py_logging.FileHandler(path)
  handler.setFormatter(logging.PythonFormatter())
  handler.setLevel(py_logging.INFO)
  py_logging.getLogger().addHandler(handler)
  logging.info("full log (storage libraries included): %s", path)
  return path
