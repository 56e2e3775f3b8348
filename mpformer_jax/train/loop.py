"""`train_and_evaluate(config, workdir)`: the one train loop.

Builds the data source, model and optimizer, resumes from the newest intact checkpoint in
`workdir` if there is one (model, optimizer, step, RNG and data iterator alike; the config
checked against the run's saved one, `resume`), trains with a log line every
`train.log_every_steps`, evaluates every `train.eval_every_steps` and at the end, appends
every record to `<workdir>/metrics.jsonl`, and with `train.export_every_steps` publishes a
serving artifact every so many steps and at the end (`export`, README "Serve"). SIGTERM /
SIGINT stop it after the current step with a checkpoint (`preemption`); a non-finite loss or
gradient stops it before any save (`train.nonfinite="stop"`) or skips the batch (`"skip"`).
"""
from __future__ import annotations

import os
import time

import jax
from absl import logging

from mpformer_jax import losses
from mpformer_jax.data import pipeline, schema, screening
from mpformer_jax.data.registry import make_source
from mpformer_jax.data.stats import DatasetStats
from mpformer_jax.model.retriever import ModelConfig, Retriever
from mpformer_jax.parallel import distributed
from mpformer_jax.parallel.sharding import Layout
from mpformer_jax.train import recipe, resume
from mpformer_jax.train.checkpoint import Checkpointer
from mpformer_jax.train.evaluation import Baselines, Evaluator
from mpformer_jax.train.export import Exporter
from mpformer_jax.train.flops import device_peak_flops, train_flops_per_step
from mpformer_jax.train.metric_writer import MetricWriter
from mpformer_jax.train.preemption import PreemptionGuard
from mpformer_jax.train.state import (describe_fault, device_batch, init_state, make_optimizer,
                                      make_train_step, shardings_of)

NONFINITE_POLICIES = ("stop", "skip")


def prepare_workdir(workdir: str) -> str:
  """Create the workdir and prove it is writable, with an error naming it if not."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{jax.process_index()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"workdir {workdir!r} cannot be written: {e}") from e
  return workdir


def check_config(config) -> None:
  """Reject values that would fail late or silently."""
  t = config.train
  for key in ("num_steps", "batch_size", "log_every_steps", "eval_every_steps",
              "checkpoint_every_steps"):
    if t[key] < 1:
      raise ValueError(f"train.{key} must be >= 1, got {t[key]}")
  if config.data.max_len < 1:
    raise ValueError(f"data.max_len must be >= 1, got {config.data.max_len}")
  if config.loss.negatives == "catalogue":
    losses.catalogue_smoothing(config.loss.kind, config.loss.alpha)  # raises on a bad kind
  if t.nonfinite not in NONFINITE_POLICIES:
    raise ValueError(f"train.nonfinite must be one of {NONFINITE_POLICIES}, got {t.nonfinite!r}")
  if config.eval.split not in ("valid", "test"):
    raise ValueError(f"eval.split must be 'valid' or 'test', got {config.eval.split!r}")


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def train_and_evaluate(config, workdir: str,
                       allow_config_changes: tuple[str, ...] = ()) -> dict[str, float]:
  """Train (or resume) and evaluate; returns the final metrics record.

  Runs on the `config.mesh` device mesh: the state is sharded by `config.parallel.rules`,
  each process reads its shard of the data (per-host batch = global / process count) and
  the step sees global arrays; metrics are written by process 0, checkpoints by Orbax.
  `allow_config_changes` names overridable fields (`run_config.OVERRIDABLE`) that may differ
  from the run's saved config on resume. A run stopped by a signal returns
  `{"preempted": True, "step": ..., "signal": ...}` after saving.
  """
  distributed.maybe_initialize(config.get("parallel", {}))  # before any backend use
  layout = Layout.from_config(config)  # bad mesh / batch size: errors before compiling
  layout.check_batch_size(config.train.batch_size)
  workdir = prepare_workdir(workdir)
  source = screening.screen_users(make_source(config.data), config.data.invalid_users)
  screening.log_split_summary(source)
  config = recipe.resolve(config, lambda: DatasetStats.of(source))  # AUTO fields, if any
  check_config(config)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"),
                      max_to_keep=config.train.max_checkpoints)
  save_run_config = resume.check_config(config, workdir, source, ckpt, allow_config_changes)
  spec, max_len, t = source.spec, config.data.max_len, config.train
  model = Retriever(spec, ModelConfig.from_config(config.model, max_len))
  logq = pipeline.target_log_q(source, max_users=config.data.stats_max_users)
  popularity = pipeline.popularity_counts(source, max_users=config.data.stats_max_users)
  baselines = Baselines(popularity, pipeline.transition_counts(
      source, max_users=config.data.stats_max_users))
  held_out = {split: pipeline.eval_examples(
      source, split=split, max_len=max_len, logq_table=logq,
      users=pipeline.eval_users(source, split, config.eval.num_users))
      for split in ("valid", "test")}
  for examples in held_out.values():
    schema.validate_batch(spec, examples)
  evaluator = Evaluator(model, pipeline.item_corpus_features(source), config.eval, layout)
  exporter = _exporter(config, workdir, source, model, evaluator, popularity, held_out)

  tx = make_optimizer(t)
  init_batch = {k: v[:2] for k, v in held_out["valid"].items()}
  state, _ = init_state(model, tx, init_batch, config.seed, layout)
  shard_index, shard_count = distributed.shard_info()
  train_iter = pipeline.train_iterator(source, max_len=max_len,
                                       batch_size=distributed.per_host_batch_size(t.batch_size),
                                       seed=config.seed, logq_table=logq,
                                       num_threads=config.data.num_threads,
                                       shard_index=shard_index, shard_count=shard_count,
                                       sampling=config.data.sampling)
  start, state = resume.restore(ckpt, state, train_iter)
  save_run_config()
  if start == 0:
    logging.info("Starting a new run in %s", workdir)

  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  flops = train_flops_per_step(model.cfg, spec, t.batch_size, config.loss)
  peak, peak_src = device_peak_flops()
  if jax.devices()[0].platform != "cpu":  # forced CPU host devices share the same cores
    peak *= layout.mesh.size
  logging.info("mesh %s on %d process(es); rules %s", dict(layout.mesh.shape),
               jax.process_count(), layout.rules)
  logging.info("%s: %d users, %d items; model %.2fM params; %.3g train FLOPs/step; "
               "peak %.3g FLOP/s (%s)", spec.name, len(source), spec.num_items,
               num_params / 1e6, flops, peak, peak_src)
  train_step = make_train_step(model, tx, config, layout, shardings_of(state),
                               corpus_features=evaluator.corpus_features)
  writer = MetricWriter(workdir, restored_step=start)
  step, window_start, window_steps, last, saved = start, time.perf_counter(), 0, {}, start
  last_eval = {}
  pending = None
  with PreemptionGuard() as guard:
    while step < t.num_steps:
      batch = next(train_iter)
      schema.validate_batch(spec, batch)
      if pending is not None:  # at most one step in flight: a stop request is served
        jax.block_until_ready(pending)  # within a step, not after a queue of dispatched ones
      state, metrics = train_step(state, layout.shard_batch(device_batch(batch)))
      pending = metrics["loss"]
      step += 1
      window_steps += 1
      if step % t.log_every_steps == 0 or step == t.num_steps:
        skipped = _check_finite(state, t.nonfinite, saved)
        metrics = jax.device_get(metrics)
        elapsed = time.perf_counter() - window_start
        last = _log_step(step, metrics, model.cfg.objectives, t, window_steps / elapsed,
                         flops, peak, skipped)
        writer.write(step, last)
        window_start, window_steps = time.perf_counter(), 0
      paused = time.perf_counter()  # checkpoint and eval time is not training time
      stop = guard.requested(step, ckpt)
      if step % t.checkpoint_every_steps == 0 or step == t.num_steps or stop:
        _check_finite(state, t.nonfinite, saved)
        ckpt.save(step, state, train_iter.get_state())
        saved = step
      if stop:
        logging.warning("stopped by %s at step %d/%d; checkpoint %d saved in %s. Rerun the "
                        "same command to resume.", guard.signal_name, step, t.num_steps, step,
                        ckpt.directory)
        writer.close()
        ckpt.close()
        return {"preempted": True, "step": step, "signal": guard.signal_name}
      if step % t.eval_every_steps == 0 and step < t.num_steps:
        result = evaluator(state.params, held_out[config.eval.split], baselines)
        logging.info("eval at step %d: %s", step, _summary(result))
        writer.write(step, result)
        last_eval = result
      if exporter and step % t.export_every_steps == 0 and step < t.num_steps:
        exporter.publish(state.params, step, {**last, **last_eval})
      window_start += time.perf_counter() - paused

  final = dict(last)
  final.update(evaluator(state.params, held_out[config.eval.split], baselines, "eval"))
  final.update(evaluator(state.params, held_out["test"], baselines, "test"))
  final["final"] = True
  final["params"] = int(num_params)
  logging.info("final at step %d: %s", step, _summary(final))
  writer.write(step, final)
  if exporter:
    exporter.publish(state.params, step, final)
  writer.close()
  ckpt.close()
  return final


def _exporter(config, workdir, source, model, evaluator, popularity, held_out):
  """The run's artifact publisher (train.export_every_steps > 0), or None."""
  if config.train.export_every_steps <= 0:
    return None
  if jax.process_count() > 1:
    raise ValueError("train.export_every_steps runs in single-process jobs; export a "
                     "multi-host run's checkpoint with python -m launch.export")
  root = config.export.dir or os.path.join(workdir, "export")
  return Exporter(config, source, model, evaluator, popularity, held_out["valid"], root)


def _check_finite(state, policy: str, last_saved: int) -> int:
  """Number of non-finite steps so far; under policy "stop", an error if there was one."""
  bad = int(jax.device_get(state.bad_steps))
  if bad and policy == "stop":
    raise FloatingPointError(
        describe_fault(jax.device_get(state.fault), bad) + ". That batch did not update the "
        f"parameters, and no checkpoint after step {last_saved} was written. Lower "
        "train.learning_rate or check the data; train.nonfinite='skip' skips such batches "
        "instead (counted as train/skipped_batches).")
  return bad


def _log_step(step, metrics, objectives, t, steps_per_sec, flops, peak, skipped) -> dict:
  """The log line and metrics record of a log step."""
  for o, name in enumerate(objectives):
    if metrics[f"count/{o}"] == 0:
      logging.warning("step %d: no target in the batch has objective %r; its loss term "
                      "was skipped (0) for this batch", step, name)
  record = {"train/loss": float(metrics["loss"]),
            **{f"train/loss/{name}": float(metrics[f"loss/{o}"])
               for o, name in enumerate(objectives)},
            "train/accuracy": float(metrics["accuracy/0"]),
            "train/grad_norm": float(metrics["grad_norm"]),
            "train/examples_per_sec": steps_per_sec * t.batch_size,
            "train/steps_per_sec": steps_per_sec,
            "train/mfu": steps_per_sec * flops / peak,
            "train/skipped_batches": skipped}
  if "next_item/dropped_fraction" in metrics:  # rows past loss.next_item_targets
    record["train/next_item_dropped"] = float(metrics["next_item/dropped_fraction"])
  logging.info("step %d/%d | loss %.4f | acc %.3f | %.0f ex/s | %.2f GFLOP/s | "
               "MFU %.1f%% | ETA %s%s", step, t.num_steps, record["train/loss"],
               record["train/accuracy"], record["train/examples_per_sec"],
               steps_per_sec * flops / 1e9, 100 * record["train/mfu"],
               _format_eta((t.num_steps - step) / steps_per_sec),
               f" | skipped {skipped} non-finite batches" if skipped else "")
  return record


def _summary(metrics: dict) -> str:
  keys = ("eval/hr@10", "eval/hr@50", "eval/hr@200", "eval/ndcg@10", "eval/popularity/hr@50",
          "eval/transitions/hr@50", "test/hr@50")
  return " ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
