"""Train state, optimizer and the jitted train step."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from mpformer_jax import losses
from mpformer_jax.data import schema
from mpformer_jax.model.modulation import objective_mix
from mpformer_jax.model.retriever import Retriever

# Keys the device step needs (USER_INDEX stays on the host).
DEVICE_KEYS = tuple(k for k in schema.BATCH_KEYS if k != schema.USER_INDEX)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def make_optimizer(train_cfg) -> optax.GradientTransformation:
  """AdamW with linear warmup then cosine decay to 1% of the peak learning rate."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=train_cfg.learning_rate,
      warmup_steps=min(train_cfg.warmup_steps, max(train_cfg.num_steps - 1, 1)),
      decay_steps=max(train_cfg.num_steps, 2), end_value=0.01 * train_cfg.learning_rate)
  return optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip),
                     optax.adamw(schedule, weight_decay=train_cfg.weight_decay))


def device_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
  return {k: batch[k] for k in DEVICE_KEYS}


def init_state(model: Retriever, tx: optax.GradientTransformation, batch: Mapping[str, Any],
               seed: int) -> tuple[TrainState, Any]:
  """Initialise params and optimizer; returns the state and the params' logical axes."""
  rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
  variables = jax.jit(model.init)(init_rng, device_batch(batch))
  logical = nn.get_partition_spec(variables["params"])
  params = nn.meta.unbox(variables["params"])
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=rng), logical


def make_loss_fn(model: Retriever, config) -> Callable:
  """params, batch -> (loss, metrics), the objective columns bound from the data spec."""
  columns = [model.spec.objective_index(o) for o in model.cfg.objectives]
  weights = tuple(config.loss.objective_weights)
  if len(weights) != len(columns):
    raise ValueError(f"loss.objective_weights has {len(weights)} entries for "
                     f"{len(columns)} objectives {model.cfg.objectives}")

  def loss_fn(params, batch):
    out, cand = model.apply({"params": params}, batch)
    loss, metrics = losses.retrieval_loss(
        out["interests"], cand, batch, objective_columns=columns, objective_weights=weights,
        kind=config.loss.kind, alpha=config.loss.alpha,
        logq_correction=config.loss.logq_correction, temperature=config.loss.temperature)
    if "weight_logits" in out:
      mix, has_any = objective_mix(batch[schema.HISTORY_EVENT_FEATURES], model.behaviour_col,
                                   columns, model.cfg.weight_recent)
      weight_loss = losses.objective_mix_loss(out["weight_logits"], mix, has_any)
      loss = loss + config.loss.weight_loss * weight_loss
      metrics["loss/weights"] = weight_loss
    return loss, metrics
  return loss_fn


def make_train_step(model: Retriever, tx: optax.GradientTransformation, config) -> Callable:
  """The jitted train step; the incoming state's buffers are donated."""
  loss_fn = make_loss_fn(model, config)

  def step(state: TrainState, batch):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return jax.jit(step, donate_argnums=0)
