"""Train state, optimizer and the jitted train step."""
from __future__ import annotations

import math
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


# What the first non-finite step left in `TrainState.fault` (NaN-free diagnostics, -1 = none).
FAULT_FIELDS = ("step", "loss", "grad_norm", "target_logq_min", "target_logq_max",
                "history_len_mean")


@flax.struct.dataclass
class TrainState:
  """Params, optimizer and RNG, plus the non-finite step record checked on the host.

  `bad_steps` counts steps whose loss or gradient was not finite (their update was not
  applied); `fault` holds `FAULT_FIELDS` of the first one. Both stay on the device, so the
  hot path needs no host sync: the loop reads them at log and checkpoint steps.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  bad_steps: jax.Array
  fault: jax.Array


def learning_rate_schedule(train_cfg) -> optax.Schedule:
  """Linear warmup then cosine decay to 1% of the peak, ending at `num_steps`."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=train_cfg.learning_rate,
      warmup_steps=min(train_cfg.warmup_steps, max(train_cfg.num_steps - 1, 1)),
      decay_steps=max(train_cfg.num_steps, 2), end_value=0.01 * train_cfg.learning_rate)


def make_optimizer(train_cfg) -> optax.GradientTransformation:
  """AdamW on `learning_rate_schedule`, after global-norm gradient clipping."""
  return optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip),
                     optax.adamw(learning_rate_schedule(train_cfg),
                                 weight_decay=train_cfg.weight_decay))


def device_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
  return {k: batch[k] for k in DEVICE_KEYS}


def init_state(model: Retriever, tx: optax.GradientTransformation, batch: Mapping[str, Any],
               seed: int, layout=None) -> tuple[TrainState, Any]:
  """Initialise params and optimizer; returns the state and the params' logical axes.

  With a `parallel.sharding.Layout` the state is created already sharded (jit with
  out_shardings from `jax.eval_shape`; the random init is partitioned and the forward pass
  of `init` is dead code), so no device ever holds the whole item table. Init needs no mesh
  context: only the out_shardings matter.
  """
  rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
  init = _init_fn(model, tx, rng)
  batch = device_batch(batch)
  abstract, shardings = abstract_state(model, tx, batch, layout, init=init)
  logical = nn.get_partition_spec(abstract.params)
  state = jax.jit(lambda r, b: nn.meta.unbox(init(r, b)), out_shardings=shardings)(
      init_rng, batch)
  return state, logical


def _init_fn(model, tx, rng):
  """rng, batch -> TrainState with boxed params and moments (logical axis names)."""
  def init(init_rng, batch):
    boxed = cast_floats(model.init(init_rng, batch)["params"], model.cfg.param_dtype)
    return TrainState(step=jnp.zeros((), jnp.int32), params=boxed, opt_state=tx.init(boxed),
                      rng=rng, bad_steps=jnp.zeros((), jnp.int32),
                      fault=jnp.full((len(FAULT_FIELDS),), -1.0, jnp.float32))
  return init


def cast_floats(tree: Any, dtype: Any) -> Any:
  """`tree` with its floating-point leaves in `dtype` (model.param_dtype); the modules
  create f32 params, and this one cast gives the params and, from them, Adam's moments."""
  dtype = jnp.dtype(dtype)
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def abstract_state(model: Retriever, tx: optax.GradientTransformation,
                   batch: Mapping[str, Any], layout=None, init=None):
  """(boxed abstract state from `jax.eval_shape`, its shardings or None); nothing allocated."""
  init = init or _init_fn(model, tx, jax.random.PRNGKey(0))
  abstract = jax.eval_shape(init, jax.ShapeDtypeStruct((2,), jnp.uint32), device_batch(batch))
  return abstract, None if layout is None else layout.state_shardings(abstract)


def shardings_of(tree: Any) -> Any:
  """The shardings of a pytree of arrays (or ShapeDtypeStructs carrying them)."""
  return jax.tree.map(lambda x: x.sharding, tree)


def make_loss_fn(model: Retriever, config, corpus_features=None) -> Callable:
  """params, batch -> (loss, metrics), the objective columns bound from the data spec.

  loss.negatives="catalogue" embeds the whole corpus every step (from `corpus_features`,
  [N + 1, F_item], `pipeline.item_corpus_features`) for an exact softmax: for corpora of
  thousands to tens of thousands of items, where it is cheap next to the sequence pass.
  """
  negatives = config.loss.negatives
  if negatives not in losses.NEGATIVES:
    raise ValueError(f"loss.negatives must be one of {losses.NEGATIVES}, got {negatives!r}")
  if negatives == "catalogue":
    if corpus_features is None:
      raise ValueError('loss.negatives="catalogue" needs the corpus item features')
    all_ids = jnp.arange(corpus_features.shape[0], dtype=jnp.int32)
    all_feats = jnp.asarray(corpus_features, jnp.int32)
  columns = [model.spec.objective_index(o) for o in model.cfg.objectives]
  weights = tuple(config.loss.objective_weights)
  if len(weights) != len(columns):
    raise ValueError(f"loss.objective_weights has {len(weights)} entries for "
                     f"{len(columns)} objectives {model.cfg.objectives}")

  def loss_fn(params, batch, dropout_rng=None):
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    out, cand = model.apply({"params": params}, batch, rngs=rngs)
    items = seen_age = None
    if negatives == "catalogue":
      items = model.apply({"params": params}, all_ids, all_feats, method=Retriever.embed_items)
    if config.loss.mask_seen:
      hist = batch[schema.HISTORY_IDS]
      seen_age = (losses.candidate_seen_age(hist, batch[schema.TARGET_ID]) if items is None
                  else losses.first_seen_age(hist, items.shape[0]))
    loss, metrics = losses.retrieval_loss(
        out["interests"], cand, batch, objective_columns=columns, objective_weights=weights,
        kind=config.loss.kind, alpha=config.loss.alpha,
        logq_correction=config.loss.logq_correction, temperature=config.loss.temperature,
        items=items, seen_age=seen_age)
    if "weight_logits" in out:
      mix, has_any = objective_mix(batch[schema.HISTORY_EVENT_FEATURES], model.behaviour_col,
                                   columns, model.cfg.weight_recent)
      weight_loss = losses.objective_mix_loss(out["weight_logits"], mix, has_any)
      loss = loss + config.loss.weight_loss * weight_loss
      metrics["loss/weights"] = weight_loss
    if config.loss.aux_next_item > 0:
      aux, dropped = _next_item_loss(model, params, out["item_outputs"], cand, batch, config,
                                     items, seen_age)
      loss = loss + config.loss.aux_next_item * aux
      metrics["loss/next_item"] = aux
      metrics["next_item/dropped_fraction"] = dropped  # positions past the budget
    return loss, metrics
  return loss_fn


def _next_item_loss(model, params, item_out, cand, batch, config, items=None, seen_age=None):
  """Each raw history token predicts the following event (the last one: the target).

  Returns the loss and the fraction of valid positions past loss.next_item_targets.
  """
  r = item_out.shape[1]
  hist = batch[schema.HISTORY_IDS][:, -r:]
  next_ids = jnp.concatenate([hist[:, 1:], batch[schema.TARGET_ID][:, None]], axis=1)
  next_feats = jnp.concatenate([batch[schema.HISTORY_ITEM_FEATURES][:, -r + 1:],
                                batch[schema.TARGET_ITEM_FEATURES][:, None]], axis=1)
  next_emb = None if items is not None else model.apply(  # catalogue: scored within items
      {"params": params}, next_ids, next_feats, method=Retriever.embed_items)
  logq = batch[schema.TARGET_LOGQ] if config.loss.logq_correction else None
  valid = (hist > 0) & (next_ids > 0)
  budget = config.loss.next_item_targets
  dropped = jnp.maximum(jnp.sum(valid) - budget, 0) if budget > 0 else jnp.zeros((), jnp.int32)
  smoothing = 0.0 if items is None else losses.catalogue_smoothing(config.loss.kind,
                                                                  config.loss.alpha)
  loss = losses.next_item_loss(item_out, next_emb, next_ids, valid, cand,
                               batch[schema.TARGET_ID], logq, config.loss.temperature, items,
                               max_targets=budget, smoothing=smoothing, seen_age=seen_age)
  return loss, dropped / jnp.maximum(jnp.sum(valid), 1)


def _fault_record(step, loss, grad_norm, batch) -> jax.Array:
  """`FAULT_FIELDS` of a non-finite step: which quantity, and what its batch looked like."""
  logq = batch[schema.TARGET_LOGQ]
  hist_len = jnp.sum(batch[schema.HISTORY_IDS] > 0, axis=-1)
  return jnp.stack([step.astype(jnp.float32), loss, grad_norm, jnp.min(logq), jnp.max(logq),
                    jnp.mean(hist_len.astype(jnp.float32))]).astype(jnp.float32)


def describe_fault(fault, bad_steps: int) -> str:
  """A person's reading of `TrainState.fault` (host values)."""
  f = dict(zip(FAULT_FIELDS, (float(x) for x in fault)))
  what = "loss" if not math.isfinite(f["loss"]) else "gradient"
  return (f"non-finite {what} at step {int(f['step'])} (loss {f['loss']}, gradient norm "
          f"{f['grad_norm']}); {bad_steps} such step(s) so far. Its batch: target logQ in "
          f"[{f['target_logq_min']:.3g}, {f['target_logq_max']:.3g}], mean history length "
          f"{f['history_len_mean']:.1f}")


def make_train_step(model: Retriever, tx: optax.GradientTransformation, config, layout=None,
                    state_sharding: Any = None, corpus_features=None) -> Callable:
  """The jitted train step; the incoming state's buffers are donated.

  With a layout: jitted with the state's shardings in and out, the batch over `data`,
  replicated metrics, and traced under the mesh and rules (`layout.jit`).
  """
  loss_fn = make_loss_fn(model, config, corpus_features)

  def step(state: TrainState, batch):
    # A fresh dropout key per step, a pure function of the state: resumes reproduce it.
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, dropout_rng)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    # A non-finite loss or gradient leaves params and optimizer as they were.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    params = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                          optax.apply_updates(state.params, updates), state.params)
    opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), opt_state,
                             state.opt_state)
    first = ~finite & (state.bad_steps == 0)
    fault = jnp.where(first, _fault_record(state.step + 1, loss, grad_norm, batch), state.fault)
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         bad_steps=state.bad_steps + (~finite).astype(jnp.int32),
                         fault=fault), metrics

  if layout is None:
    return jax.jit(step, donate_argnums=0)
  if state_sharding is None:
    raise ValueError("make_train_step: a layout needs the state's shardings")
  return layout.jit(step, in_shardings=(state_sharding, layout.batch_sharding),
                    out_shardings=(state_sharding, layout.replicated), donate_argnums=0)
