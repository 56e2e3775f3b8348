"""Training runs as subprocesses, read back from their workdirs (shared by benchmark scripts).

`train` runs `python -m launch.train ...` in a fresh process, streams its progress lines and
returns what the process cost (wall and CPU seconds, the training loop's CPU seconds, peak
RSS, load averages); `final_record` and `train_seconds` read a finished run's metrics.jsonl.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Optional

if not __package__:  # Imported by a script run as `python benchmarks/<name>.py`.
  import sys
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import common
from mpformer_jax.train.metric_writer import read_metrics
# pylint: enable=g-import-not-at-top,wrong-import-position

REPO = Path(__file__).resolve().parents[1]
PROC_KEYS = ("wall_seconds", "cpu_seconds", "train_cpu_seconds", "peak_memory_bytes",
             "load_before", "load_after")


def _records(workdir: Path) -> list[dict]:
  return read_metrics(str(workdir))


def final_record(workdir: Path) -> Optional[dict]:
  """The last final record of `<workdir>/metrics.jsonl`, or None."""
  return next((r for r in reversed(_records(workdir)) if r.get("final")), None)


def train_seconds(workdir: Path) -> Optional[float]:
  """Training-loop seconds: sum of the log windows (steps / steps_per_sec) in metrics.jsonl."""
  rate = {r["step"]: r["train/steps_per_sec"] for r in _records(workdir)  # Last one wins
          if r.get("train/steps_per_sec") and not r.get("final")}     # (resumed runs).
  steps = sorted(rate)
  return sum((b - a) / rate[b] for a, b in zip([0] + steps, steps)) if steps else None


def _cpu_seconds(pid: int) -> Optional[float]:
  """utime + stime of a live process (all its threads), from /proc."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
  except OSError:
    return None
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train(name: str, argv: list[str], workdir: Path) -> dict:
  """Runs one training subprocess, streaming its progress; returns process measurements.

  The child's CPU time is sampled when the loop logs its start and its last step, which
  gives `train_cpu_seconds`: the loop's CPU time, less sensitive than wall time to other
  jobs sharing the cores.
  """
  log_path = workdir / "train.log"
  load_before, t0, marks = os.getloadavg()[0], time.perf_counter(), {}
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  with open(log_path, "a") as log:
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
      log.write(line)
      if "loop.py" not in line:
        continue
      if "Starting a new run" in line or "Resuming from" in line:
        marks.setdefault("start", _cpu_seconds(proc.pid))
      step = re.search(r" step (\d+)/(\d+) ", line)
      if step and step.group(1) == step.group(2):
        marks["end"] = _cpu_seconds(proc.pid)
      if step or "final at" in line or "Error" in line:
        print(f"  [{name}] {line.split('] ', 1)[-1].strip()[:150]}", flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode != 0:
    tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
    raise RuntimeError(f"run {name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
  start, end = marks.get("start"), marks.get("end")
  return dict(wall_seconds=time.perf_counter() - t0,
              cpu_seconds=usage.ru_utime + usage.ru_stime,
              train_cpu_seconds=None if start is None or end is None else end - start,
              peak_memory_bytes=int(usage.ru_maxrss) * 1024,  # KiB on Linux.
              load_before=load_before, load_after=os.getloadavg()[0])


def machine_description() -> dict:
  """CPU model, usable cores and library versions."""
  with open("/proc/cpuinfo") as f:
    cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
               platform.machine())
  return dict(common.device_description(), cpu=cpu, cores=len(os.sched_getaffinity(0)),
              python=platform.python_version())
