"""Soak test of resume: kill a tiny training run at random moments, compare final parameters.

  python benchmarks/soak.py [--steps 400] [--every 25] [--kills 10] [--seed 0] [--quick]
                            [--out DIR] [--workdir DIR] [--update_readme]

Resume is meant to be exact, so a run killed any number of times must end where an
uninterrupted one ends. Reference: `python -m launch.train --config=configs/base.py:tiny`,
`--steps` steps, a log line every step, a checkpoint every `--every`. Soak: the same command
in another workdir, SIGKILLed `--kills` times and SIGTERMed once, rerun after each. A seeded
RNG aims each kill at start-up (a fraction of the reference's start-up time), a checkpoint
save (a fraction of a save after a checkpoint step's line) or between saves (a random step's
line); where it landed is read from the log and checkpoint directory afterwards. Checks:
steps lost per kill (last step logged - step resumed from) <= the interval; SIGTERM exits 0
with its "Stopped by" line and loses nothing; final parameters and whole saved state equal
the reference's; metrics.jsonl holds each train step once, with the reference's losses.
Exits 1 if a check fails. `--quick`: 3 kills, 60 steps, a checkpoint every 10.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np

if not __package__:  # Run as `python benchmarks/soak.py`: make `benchmarks` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- soak:start -->", "<!-- soak:end -->"
STEP_RE = re.compile(r"\] step (\d+)/\d+ \|")
RESUME_RE = re.compile(r"Resuming from checkpoint at step (\d+)")
STOPPED_RE = re.compile(r"Stopped by (\w+) at step (\d+)")
AIMS = ("steps", "save", "startup")


class Run:
  """One training process; a thread reads its merged output so the controller sees each line
  (and when it came) while the process runs."""

  def __init__(self, cmd: list[str], log_path: Path):
    self.t0, self.log_path = time.perf_counter(), log_path
    self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True, env=child_env())
    self.start_step, self.last_step, self.step_at = None, None, {}
    self.stopped, self.damaged, self.final = None, False, False
    self._reader = threading.Thread(target=self._read, args=(log_path,), daemon=True)
    self._reader.start()

  def _read(self, log_path: Path) -> None:
    with open(log_path, "w") as log:
      for line in self.proc.stdout:
        log.write(line)
        if m := STEP_RE.search(line):
          self.step_at.setdefault(int(m[1]), time.perf_counter() - self.t0)
          self.last_step = max(self.last_step or 0, int(m[1]))
        elif m := RESUME_RE.search(line):
          self.start_step = int(m[1])
        elif "Starting a new run" in line:
          self.start_step = 0
        elif m := STOPPED_RE.search(line):
          self.stopped = (m[1], int(m[2]))
        self.damaged |= "is damaged" in line
        self.final |= "final at step" in line

  def until(self, cond, timeout: float) -> None:
    """Waits for `cond()`; an error if the process exits or `timeout` passes first."""
    while not cond():
      if self.proc.poll() is not None:
        self._reader.join()
        if cond():
          return
        raise RuntimeError(f"training exited ({self.proc.returncode}) before the kill "
                           f"moment: {self.log_path}")
      if time.perf_counter() - self.t0 > timeout:
        raise TimeoutError(f"no kill moment within {timeout:.0f} s: {self.log_path}")
      time.sleep(0.002)

  def finish(self, sig: Optional[int] = None, timeout: float = 900) -> float:
    """Sends `sig` (SIGKILL: the whole process group), waits; seconds since the start."""
    at = time.perf_counter() - self.t0
    if sig == signal.SIGKILL:
      os.killpg(self.proc.pid, sig)
    elif sig is not None:
      os.kill(self.proc.pid, sig)
    self.proc.wait(timeout=timeout)
    self._reader.join()
    return at

  def __enter__(self) -> Run:
    return self

  def __exit__(self, *exc) -> None:  # An error or timeout here leaves no training behind.
    if self.proc.poll() is None:
      os.killpg(self.proc.pid, signal.SIGKILL)
      self.proc.wait()


def child_env() -> dict[str, str]:
  """Every start compiles as a user's would: no persistent compilation cache (the tests set
  one), else later starts would be far quicker than the reference that aims the kills."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(
      ("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
  return dict(env, PYTHONUNBUFFERED="1")


def train_cmd(workdir: Path, args) -> list[str]:
  return [sys.executable, "-m", "launch.train", "--config=configs/base.py:tiny",
          f"--workdir={workdir}", f"--config.train.num_steps={args.steps}",
          f"--config.train.checkpoint_every_steps={args.every}",
          "--config.train.log_every_steps=1", "--config.train.eval_every_steps=1000000000",
          f"--config.eval.num_users={args.eval_users}"]


def plan(rng: np.random.Generator, kills: int, steps: int) -> list[dict]:
  """The interruptions in order: signal, aim, delay fraction and a step target; aims cycle so
  each phase gets some, and the step targets are spread over the run in order."""
  items = [dict(signal="SIGKILL", aim=AIMS[i % 3]) for i in rng.permutation(kills)]
  items.insert(int(rng.integers(0, kills + 1)), dict(signal="SIGTERM", aim="steps"))
  moving = [it for it in items if it["aim"] != "startup"]
  edges = np.linspace(1, steps, len(moving) + 1)  # One target in each equal stretch.
  for it, lo, hi in zip(moving, edges[:-1], edges[1:]):
    it["target"] = int(rng.uniform(lo, hi))
  for it in items:
    it["fraction"] = float(rng.uniform(0.05, 0.9))
  return items


def interrupt(run: Run, item: dict, ref: dict, args) -> dict:
  """Waits for the planned moment, sends the signal; what happened, as a row."""
  at = None
  if item["aim"] == "startup":
    run.until(lambda: (time.perf_counter() - run.t0 >= item["fraction"] * ref["startup_s"]
                       or run.last_step is not None), args.timeout)  # a quick start: now
  else:
    run.until(lambda: run.start_step is not None, args.timeout)
    at = min(max(item["target"], run.start_step + 1), args.steps - 1)  # Targets may be behind.
    last_save = (args.steps - 1) // args.every * args.every  # Not the final one: it exits.
    if item["aim"] == "save" and last_save > run.start_step:
      at = min(-(-at // args.every) * args.every, last_save)
    run.until(lambda: at in run.step_at or (run.last_step or 0) > at, args.timeout)
    delay = item["fraction"] * ref["save_s"] if item["aim"] == "save" else 0.0
    run.until(lambda: time.perf_counter() - run.t0 >= run.step_at.get(at, 0) + delay,
              args.timeout)
  sig = getattr(signal, item["signal"])
  kill_s = run.finish(sig)
  last = run.last_step
  digest = args.soak_dir / "checkpoints" / str(last) / "digest.json"
  landed = ("startup" if last is None else "save" if last % args.every == 0
            and not digest.exists() else "training")
  stage = None if landed != "save" else "no digest" if digest.parent.exists() else (
      "orbax tmp" if list(digest.parent.parent.glob(f"{last}.orbax-checkpoint-tmp*"))
      else "not started")  # How far the killed save got.
  return dict(item, step_target=at, kill_s=kill_s, start_step=run.start_step, last_step=last,
              landed=landed, save_stage=stage, rc=run.proc.returncode, stopped=run.stopped,
              found_damaged=run.damaged)  # This start set a damaged checkpoint aside.


def losses(workdir: Path) -> tuple[Counter, dict, int]:
  """Train records of metrics.jsonl: count per step, loss per step, and final records."""
  recs = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines() if ln]
  train = [r for r in recs if "train/loss" in r and not r.get("final")]
  return (Counter(r["step"] for r in train), {r["step"]: r["train/loss"] for r in train},
          sum(bool(r.get("final")) for r in recs))


def metric_checks(args) -> dict:
  """A resumed run drops the records of steps it repeats: each step once, same losses."""
  (counts, soak_loss, finals), (_, ref_loss, _) = losses(args.soak_dir), losses(args.ref_dir)
  once = sorted(counts) == list(range(1, args.steps + 1)) and set(counts.values()) == {1}
  return dict(each_step_once=once and finals == 1, loss_max_abs_diff=max(
      abs(soak_loss[s] - ref_loss.get(s, np.inf)) for s in soak_loss))


def compare_states(ref_dir: Path, soak_dir: Path, step: int) -> dict:
  """Max |difference| of the final params leaf by leaf, and whether every saved leaf
  (optimizer, RNG, step) is identical."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  a, b = (ocp.StandardCheckpointer().restore(str(d / "checkpoints" / str(step) / "state"))
          for d in (ref_dir, soak_dir))
  diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) -
                                                        np.asarray(y, np.float64)))),
                       a["params"], b["params"])
  same = jax.tree.map(lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a, b)
  return dict(param_max_abs_diff=max(jax.tree.leaves(diffs)),
              num_params=int(sum(np.size(x) for x in jax.tree.leaves(a["params"]))),
              state_identical=all(jax.tree.leaves(same)))


def reference(args) -> dict:
  """The uninterrupted run, with the start-up and save times that aim the kills."""
  with Run(train_cmd(args.ref_dir, args), args.log_dir / "reference.log") as run:
    run.finish(timeout=args.timeout)
  wall = time.perf_counter() - run.t0
  if run.proc.returncode or run.last_step != args.steps:
    raise RuntimeError(f"reference run failed ({run.proc.returncode}): {run.log_path}")
  t = run.step_at
  saves = [t[s + 1] - t[s] for s in range(args.every, args.steps, args.every) if s + 1 in t]
  return dict(wall_s=wall, startup_s=t[1], save_s=float(np.median(saves)))


def soak(args, ref: dict) -> tuple[list[dict], dict]:
  """The interrupted run: one start per planned interruption, then one to the end."""
  rows, cmd, t0 = [], train_cmd(args.soak_dir, args), time.perf_counter()
  for i, item in enumerate(plan(np.random.default_rng(args.seed), args.kills, args.steps)):
    with Run(cmd, args.log_dir / f"soak_{i:02d}.log") as run:
      rows.append(interrupt(run, item, ref, args))
    print(f"  {i + 1:>2}. {item['signal']} aimed at {item['aim']}, landed in "
          f"{rows[-1]['landed']} at {rows[-1]['kill_s']:.1f} s, last step "
          f"{rows[-1]['last_step']}", flush=True)
  with Run(cmd, args.log_dir / "soak_final.log") as run:
    run.finish(timeout=args.timeout)
  last = dict(start_step=run.start_step, last_step=run.last_step, rc=run.proc.returncode,
              final=run.final, found_damaged=run.damaged, wall_s=time.perf_counter() - t0)
  next_start = last["start_step"]  # A start killed before saying where it resumed: the same.
  for row in reversed(rows):
    row["resumed_step"] = next_start
    row["start_step"] = next_start if row["start_step"] is None else row["start_step"]
    next_start = row["start_step"]
    seen = row["last_step"] if row["last_step"] is not None else row["start_step"]
    row["steps_lost"] = None if row["resumed_step"] is None else seen - row["resumed_step"]
  return rows, last


def checks(rows: list[dict], last: dict, state: dict, metrics: dict, args) -> dict:
  kills = [r for r in rows if r["signal"] == "SIGKILL"]
  (term,) = [r for r in rows if r["signal"] == "SIGTERM"]
  return dict(
      kills_done=len(kills) == args.kills,
      steps_lost_within_interval=all(r["steps_lost"] is not None and
                                     0 <= r["steps_lost"] <= args.every for r in kills),
      sigterm_clean=(term["rc"] == 0 and term["resumed_step"] == term["last_step"]
                     and tuple(term["stopped"] or ()) == ("SIGTERM", term["last_step"])),
      finished=(last["rc"] == 0 and last["final"]  # A kill after the last save: no steps left.
                and max(last["last_step"] or 0, last["start_step"] or 0) == args.steps),
      params_equal=state["param_max_abs_diff"] == 0.0,
      state_identical=state["state_identical"],
      each_step_once=metrics["each_step_once"],
      losses_equal=metrics["loss_max_abs_diff"] == 0.0)


def table_lines(rows: list[dict]) -> list[str]:
  out = ["| # | signal | aimed at | landed in | at s | last step logged | resumed from | "
         "steps lost |", "|---:|---|---|---|---:|---:|---:|---:|"]
  for i, r in enumerate(rows, 1):
    out.append(f"| {i} | {r['signal']} | {r['aim']} | {r['landed']} | {r['kill_s']:.1f} | "
               f"{'-' if r['last_step'] is None else r['last_step']} | {r['resumed_step']} | "
               f"{r['steps_lost']} |")
  return out


def _counts(counter: dict) -> str:
  return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def readme_section(res: dict, png_rel: str) -> str:
  m, s, a = res["machine"], res["summary"], res["args"]
  return "\n".join([
      README_START, "## Soak: kills and resumes", "",
      f"`python benchmarks/soak.py{' --quick' if a['quick'] else ''}` on {m['cpu']} "
      f"({m['cores']} cores), {res['date'][:10]}: `configs/base.py:tiny`, {a['steps']} steps, "
      f"a checkpoint every {a['every']}, seed {a['seed']}. The soak run was killed with SIGKILL "
      f"{s['sigkills']} times and stopped once with SIGTERM, rerun after each; \"landed in\" "
      "is read afterwards (no step logged: start-up; a checkpoint step logged but its digest "
      "not written: save). At s: seconds after that start's launch. Steps lost = last step "
      "logged - step the next start resumed from.",
      "", *table_lines(res["kills"]), "",
      f"SIGKILLs landed in: {_counts(s['landed'])}; killed saves had reached: "
      f"{_counts(s['save_stages'])}; damaged checkpoints set aside on resume: "
      f"{s['damaged_set_aside']}. "
      f"Steps lost: {s['steps_lost_total']} in all, at most {s['steps_lost_max']} per kill "
      f"(interval {a['every']}). Final parameters against the uninterrupted run: max |diff| "
      f"{s['param_max_abs_diff']} over {s['num_params']:,} values; whole saved state identical: "
      f"{s['state_identical']}; metrics.jsonl has each of the {a['steps']} train steps once, "
      f"max |loss - reference loss| {s['loss_max_abs_diff']}. Wall: reference "
      f"{s['reference_wall_s']:.0f} s, soak {s['soak_wall_s']:.0f} s over "
      f"{len(res['kills']) + 1} starts. All checks passed: {res['passed']}.", "",
      f"![soak: steps lost per kill]({png_rel})", README_END])


def plot(rows: list[dict], every: int, path: Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  colours = dict(startup="tab:gray", save="tab:red", training="tab:blue")
  fig, ax = plt.subplots(figsize=(8, 3.5))
  xs = np.arange(1, len(rows) + 1)
  lost = [r["steps_lost"] or 0 for r in rows]
  ax.bar(xs, lost, color=[colours[r["landed"]] for r in rows])
  for x, v in zip(xs, lost):
    ax.text(x, v, str(v), ha="center", va="bottom", fontsize=8)
  ax.axhline(every, color="k", ls="--", lw=1, label=f"checkpoint interval ({every})")
  for name, c in colours.items():
    ax.bar([0], [0], color=c, label=f"landed in {name}")
  ax.set_xticks(xs, [f"{i}\n{r['signal'][3:]}" for i, r in zip(xs, rows)])
  ax.set(xlim=(0.4, len(rows) + 0.6), ylim=(0, every * 1.6), ylabel="steps lost",
         title="Steps lost per interruption (resumed from the newest intact checkpoint)")
  ax.legend(loc="upper center", fontsize=8, ncol=4)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  p.add_argument("--steps", type=int, help="train steps (default 400; --quick 60)")
  p.add_argument("--every", type=int, help="checkpoint interval (default 25; --quick 10)")
  p.add_argument("--kills", type=int, help="SIGKILLs (default 10; --quick 3)")
  p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
  p.add_argument("--eval_users", type=int, default=50, help="users of the final evaluation")
  p.add_argument("--timeout", type=float, default=900, help="seconds per training start")
  p.add_argument("--workdir", type=Path, default=Path("/tmp/mpformer_soak"),
                 help="run directories and logs (emptied first, kept afterwards)")
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "README.md"))
  args = common.parse_args(p, argv)
  for key, full, quick in (("steps", 400, 60), ("every", 25, 10), ("kills", 10, 3)):
    setattr(args, key, getattr(args, key) or (quick if args.quick else full))
  args.ref_dir, args.soak_dir = args.workdir / "reference", args.workdir / "soak"
  args.log_dir = args.workdir / "logs"
  return args


def main(argv: Optional[list[str]] = None) -> dict:
  args = parse_args(argv)
  shutil.rmtree(args.workdir, ignore_errors=True)
  args.log_dir.mkdir(parents=True)
  print(f"reference: {args.steps} uninterrupted steps in {args.ref_dir}", flush=True)
  ref = reference(args)
  print(f"  {ref['wall_s']:.0f} s (start-up {ref['startup_s']:.1f} s, a save "
        f"{ref['save_s']:.2f} s); soak in {args.soak_dir}:", flush=True)
  rows, last = soak(args, ref)
  state, metrics = compare_states(args.ref_dir, args.soak_dir, args.steps), metric_checks(args)
  ok = checks(rows, last, state, metrics, args)
  lost = [r["steps_lost"] or 0 for r in rows if r["signal"] == "SIGKILL"]
  summary = dict(sigkills=len(lost), steps_lost_total=sum(lost), steps_lost_max=max(lost),
                 landed=dict(Counter(r["landed"] for r in rows if r["signal"] == "SIGKILL")),
                 save_stages=dict(Counter(r["save_stage"] for r in rows if r["save_stage"])),
                 damaged_set_aside=sum(r["found_damaged"] for r in rows + [last]),
                 reference_wall_s=ref["wall_s"], soak_wall_s=last["wall_s"], **state, **metrics)
  res = dict(args={k: getattr(args, k) for k in ("steps", "every", "kills", "seed", "quick",
                                                 "eval_users", "workdir")},
             machine=dict(cpu=common.cpu_model(), cores=len(os.sched_getaffinity(0))),
             date=datetime.datetime.now().isoformat(timespec="seconds"), reference=ref,
             kills=rows, final_start=last, summary=summary, checks=ok, passed=all(ok.values()))
  json_path, png_path = Path(args.out) / "soak.json", Path(args.out) / "soak.png"
  common.write_json(json_path, res)
  plot(rows, args.every, png_path)
  print("\n".join(table_lines(rows)))
  print(json.dumps(dict(summary=summary, checks=ok), default=str))
  print(f"wrote {json_path} and {png_path}")
  if args.update_readme:
    png_rel = os.path.relpath(png_path, os.path.dirname(os.path.abspath(args.readme)))
    common.update_readme_section(args.readme, README_START, README_END,
                                 readme_section(res, png_rel))
  return res


if __name__ == "__main__":
  sys.exit(0 if main()["passed"] else 1)
