"""Default config: MPFormer on the built-in synthetic short-video platform.

One retriever for the four objectives click / long_view / like / follow: shared query
tokens conditioned on each objective by a recency bias, one loss per objective and
personalised target weights (DESIGN 2.5-2.7). MPFormer's switches are on by default only
where their ablations showed a gain and no loss; the objective embedding, the behaviour-type
attention bias, the user token and its gates are off (benchmarks/README.md,
"Multi-objective"): set them True for the paper's model. configs/kuaiformer.py is the
single-objective retriever.

Usage:
  python -m launch.train --config=configs/base.py --workdir=/tmp/run
  python -m launch.train --config=configs/base.py:tiny --workdir=/tmp/tiny   # tests, ~1 min
  python -m launch.train --config=configs/base.py --config.train.num_steps=500 ...
Other configs import this one and change a few fields.
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = arg or "default"
  if size not in ("default", "tiny"):
    raise ValueError(f"configs/base.py: unknown variant {size!r}; use 'default' or 'tiny'")
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = dict(
      # "synthetic" (no download); "ml1m", "ml100k", "amazon_beauty" (raw files in data.dir);
      # "interactions": your own log or sequence file (data.interactions, configs/interactions.py)
      name="synthetic",
      dir="",             # raw-data directory for real datasets (or $MPFORMER_DATA)
      tfds_dir="",        # where TFDS builds them ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets)
      max_len=256,        # history length seen by the model, left-padded
      # training examples: "event" = every training position of every user (a pass weighs
      # users by length); "user" = each user's newest window, as SASRec (users weigh equally)
      sampling="event",
      num_threads=2,      # Grain read threads
      stats_max_users=20_000,  # users scanned for logQ / popularity counts
      # a malformed user (ids out of range, NaN labels, ...): "error" stops the run naming
      # dataset, user and field; "drop" leaves such users out, counted and logged (one
      # validation pass over all users at every start)
      invalid_users="error",
      synthetic=dict(num_users=20_000, num_items=10_000, num_topics=100, num_categories=20,
                     num_authors=2_000, zipf_exponent=1.1, min_len=20, max_len=300,
                     interests_per_user=3, drift_prob=0.02, seed=0),
      # items > 0: each synthetic user gets that many favourite items that recur in bursts
      # of `burst` events every `period` events, none in the `quiet` events before the
      # held-out pair, which returns to them with probability return_prob: a workload
      # whose signal lies far back (data/recurring.py; long-history encoders)
      recurring=dict(items=0, period=512, burst=8, quiet=256, return_prob=0.5),
      # True: each objective of the synthetic platform gets its own cause (long views by
      # the profile's preferred length, likes by loved topics, follows by repeated authors;
      # data/objective_story.py), where MPFormer's mechanisms have something to do
      objective_story=False,
      # data.name="interactions": every field is documented in configs/interactions.py.
      interactions=dict(
          path="", format="log", file_type="auto", delimiter="", header=True,
          user_col="user_id", item_col="item_id", time_col="", time_format="",
          behaviour_col="", objectives=(), label_cols=(), unknown_behaviour="error",
          item_table=dict(path="", file_type="auto", delimiter="", id_col="item_id",
                          columns=()),
          user_table=dict(path="", file_type="auto", delimiter="", id_col="user_id",
                          columns=()),
          min_user_events=0, min_item_events=0, dedup_consecutive=False,
          max_events_per_user=0, split="leave_one_out", time_cutoffs=(),
          memory_limit="2GB"),
  )
  c.model = dict(
      d_model=64, num_layers=2, num_heads=4, mlp_hidden=192,
      item_embed_dim=64, feature_dim=16, num_queries=4, output_dim=64,
      objectives=("click", "long_view", "like", "follow"),  # each gets k query tokens
      max_query_tokens=64,          # budget for len(objectives) * num_queries
      readout="queries",            # "queries" (k interests) or "last" (SASRec baseline)
      # "newest": every output vector (an interest, or a raw token's next-item output) adds
      # the item vector of the newest item it reads, so scores start as "items like the
      # newest one"; "none": the outputs alone.
      output_skip="none",
      # MPFormer's switches. On by default only where the ablations of issue 19 showed a
      # gain beyond two standard errors and no loss elsewhere (benchmarks/README.md,
      # "Multi-objective"; all on = the paper's MPFormer, all off = KuaiFormer).
      user_token=False,             # user-profile token at position 0: loss on the story
      objective_embedding=False,    # q_{o,j} = q_j + e_o when several objectives: loss
                                    # on retail (view, cart, buy), no gain elsewhere
      attention_bias=False,         # beta[o, head, behaviour(i)] on query->item logits:
                                    # loss on retail view, no gain elsewhere
      recency_bias=True,            # + gamma[o, head] * log2 age bucket(i): gain on
                                    # ML-100K love, no loss elsewhere
      user_gate=False,              # PEPNet gate 2 sigmoid(W2 relu(W1 sg(user))) on FFNs
                                    # (needs user_token): no gain
      target_weights=True,          # personalised objective-mix head (quota weights):
                                    # +0.17 merged exposure on the story
      weight_recent=50,             # recent events defining the objective-mix target
      normalize=False,              # L2-normalise u and v (use with loss.temperature)
      dropout=0.0,                  # token-embedding and residual dropout, training only
      # BSARec's alpha [ours: causal]: each block's attention branch on the history tokens
      # becomes freq_mix * (low + beta * (x - low)) + (1 - freq_mix) * attention, low the
      # mean of the newest freq_window tokens (model/frequency.py); 0 = plain attention.
      # Beauty, 0.7: validation +1.5% on 3 seeds x 1,000 steps, +3.0% at full length (one
      # seed); ML-1M: ahead at first, level by the third of 8 points, its end unmeasured.
      # Off (benchmarks/README.md, "Quality")
      freq_mix=0.0,
      freq_window=10,
      # "mlp": the token MLP and the item tower over the id row and side features (DESIGN
      # 2.2, 2.6); "id" (SASRec's): the id row is both the history token and the item vector
      # (needs item_embed_dim == d_model == output_dim), side features unused.
      item_encoder="mlp",
      # "rope": rotary positions in every attention; "learned": SASRec's absolute position
      # table added to the backbone's input.
      positions="rope",
      # The blocks' feed-forward network: "swiglu" (Llama's, gated, no biases) or "relu"
      # (SASRec's: Dense with bias, ReLU, Dense with bias), both of width mlp_hidden.
      ffn="swiglu",
      # The blocks' and the final normalisation: "rms" (Llama's RMSNorm, no bias) or "layer"
      # (SASRec's LayerNorm, with bias). Compression and SOLAR keep RMSNorm.
      norm="rms",
      # "bfloat16": activations and matmuls in bf16 (mixed precision); the softmax, logQ,
      # losses and metrics stay f32, as do params and Adam moments unless param_dtype says
      dtype="float32",
      param_dtype="float32",
      compression=dict(schedule=((64, 2), (16, 5)),  # oldest first; () disables
                       # "ffn" [ours]: mean then one FFN per group, the default: on this
                       # small backbone it matched "mean" [paper: 1-layer transformer per
                       # group] in quality at half the step time (benchmarks/README.md);
                       # "attention" [ours]: fused Pallas kernel.
                       pool="ffn",
                       impl="auto"),   # kernel dispatch for pool="attention"
      # "compress": the schedule above (() = plain attention over the whole history);
      # "solar" [SOLAR, ours where the paper is silent]: events older than the newest
      # solar.recent skip the token MLP and become a memory that every block reads with
      # SVD-Attention at rank solar.rank (model/solar.py); needs compression.schedule=().
      long_history="compress",
      solar=dict(rank=16, recent=48),
  )
  c.loss = dict(kind="smooth_logq", alpha=0.1, logq_correction=True, temperature=1.0,
                # lambda_o, one per objective: each objective's share of labelled targets on
                # the synthetic platform, so that every labelled (row, objective) pair weighs
                # the same. Equal weights let the noisy means over the few like/follow rows
                # of a batch dominate the shared backbone (benchmarks/multi_objective.py).
                objective_weights=(1.0, 0.58, 0.12, 0.035),
                weight_loss=1.0,                          # lambda_w of the weight head
                aux_next_item=0.0,  # weight of a next-item loss at every raw item token
                # > 0: score only this many valid positions a batch in that loss (padding
                # skipped; any beyond it are left out, logged as next_item/dropped_fraction)
                next_item_targets=0,
                # "in_batch" [paper]: the batch's targets, logQ-corrected; "catalogue" [ours,
                # small corpora]: exact softmax over every item (kind "softmax" or
                # "label_smoothing").
                negatives="in_batch",
                # drop each row's already-seen history items from its softmax (the
                # target stays), as the seen-removed evaluation drops them
                mask_seen=False)
  c.train = dict(num_steps=1_000, batch_size=128, learning_rate=2e-3, warmup_steps=100,
                 weight_decay=0.01, grad_clip=1.0, log_every_steps=50,
                 eval_every_steps=500, checkpoint_every_steps=250, max_checkpoints=2,
                 # a non-finite loss or gradient: "stop" the run (no checkpoint of it is
                 # written), or "skip" the batch (its update not applied; counted)
                 nonfinite="stop",
                 # > 0: publish a serving artifact to export.dir every N steps and at the
                 # end (train while serving: launch.serve picks up each new version)
                 export_every_steps=0)
  c.eval = dict(num_users=5_000, batch_size=256, ks=(10, 50, 200), item_block_size=65_536,
                remove_seen=False, split="valid",
                # () = the model's objectives; else dataset objectives to score, one the
                # model lacks with its first objective's vectors (one model on all events)
                objectives=(),
                merged_n=200,            # merged multi-objective list size N
                quota_min=10,            # minimum slots per objective
                interest_overfetch=2.0,  # c: each interest fetches ceil(N_o / k) * c
                # launch.evaluate --retrieval=scann; -1 = default_scann_params(num_items)
                scann=dict(num_leaves=-1, num_leaves_to_search=-1, dims_per_block=-1,
                           anisotropic_quantization_threshold=0.2, reorder_k=-1,
                           training_sample_size=-1))
  # Serving artifacts (launch.export, train.export_every_steps; README "Serve").
  c.export = dict(dir="",              # "" = <workdir>/export
                  keep=3,              # newest versions kept
                  index="auto",        # "exact", "scann", or "auto": ScaNN from exact_below
                  exact_below=100_000,  # items; smaller corpora are searched exactly
                  default_n=50,        # items per objective when a request gives no n
                  platforms=())        # jax.export platforms; () = this machine's backend
  # Scale-out (DESIGN 4). Mesh axes: data (batch) x model (item vocabulary); -1 = the rest.
  c.mesh = dict(data=-1, model=1)
  c.parallel = dict(
      # logical axis -> mesh axes; the first rule whose mesh axes are still free wins.
      rules=(("batch", "data"), ("vocab", "model"), ("embed", None), ("mlp", None),
             ("heads", None), ("kv", None), ("seq", None)),
      fsdp=False,          # shard dense weights' fsdp_axis over data (off: replicated)
      fsdp_axis="embed",   # "embed" or "mlp"
      distributed=False,   # jax.distributed.initialize() (also if $JAX_COORDINATOR_ADDRESS)
      coordinator_address="", num_processes=-1, process_id=-1)  # "" / -1: auto-detect

  if size == "tiny":
    c.data.max_len = 32
    c.data.stats_max_users = 1_000
    c.data.synthetic.update(num_users=1_000, num_items=500, num_topics=20, num_categories=5,
                            num_authors=100, min_len=10, max_len=60)
    c.model.update(d_model=32, num_layers=1, num_heads=2, mlp_hidden=64, item_embed_dim=32,
                   feature_dim=8, num_queries=2, output_dim=32)
    c.model.compression.schedule = ((8, 1), (4, 2))
    c.train.update(num_steps=300, batch_size=32, learning_rate=3e-3, warmup_steps=20,
                   log_every_steps=50, eval_every_steps=100, checkpoint_every_steps=100)
    c.eval.update(num_users=300, batch_size=128)
  return c
