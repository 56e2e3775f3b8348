"""Grain input pipelines: shuffled training batches, evaluation examples, corpus features.

Training is a random-access `grain.MapDataset` over flat training-example indices
(`examples.ExampleIndex`): shuffled with the seed (a different permutation each epoch),
repeated forever, batched as indices and mapped to a whole batch at once (one vectorised
item-feature lookup per batch). Being index-based, the iterator state is just the next batch
index, so checkpoints are tiny and resuming is exact.
"""
from __future__ import annotations

import grain
import numpy as np
import scipy.sparse

from mpformer_jax.data import examples
from mpformer_jax.data import schema
from mpformer_jax.retrieval import transitions

DEFAULT_LOGQ_USERS = 20_000


def _subset_users(num_users: int, max_users: int | None) -> np.ndarray:
  """Up to `max_users` evenly spaced user indices (deterministic)."""
  if max_users is None or max_users >= num_users:
    return np.arange(num_users, dtype=np.int64)
  if max_users < 1:
    raise ValueError(f"max_users must be >= 1, got {max_users}")
  return np.arange(max_users, dtype=np.int64) * num_users // max_users


def popularity_counts(source: schema.SequenceSource, *,
                      max_users: int | None = DEFAULT_LOGQ_USERS) -> np.ndarray:
  """[num_items + 1] int64 counts of each item among training targets (`SplitPoints`).

  Uses up to `max_users` evenly spaced users; also the popularity baseline's scores.
  """
  counts = np.zeros(source.spec.item_vocab_size, np.int64)
  for chunk in _training_prefixes(source, max_users):
    counts += np.bincount(np.concatenate([ids[1:] for ids in chunk]),
                          minlength=source.spec.item_vocab_size)
  return counts


def transition_counts(source: schema.SequenceSource, *,
                      max_users: int | None = DEFAULT_LOGQ_USERS) -> scipy.sparse.csr_matrix:
  """[num_items + 1]^2 counts of (previous item, training target) pairs, the same users as
  `popularity_counts`: the transition baseline's scores (retrieval/transitions.py)."""
  prev, nxt = [], []
  for chunk in _training_prefixes(source, max_users):
    prev += [ids[:-1] for ids in chunk]
    nxt += [ids[1:] for ids in chunk]
  none = [np.zeros(0, np.int64)]
  return transitions.transition_counts(np.concatenate(prev or none),
                                       np.concatenate(nxt or none), source.spec.num_items)


def _training_prefixes(source: schema.SequenceSource, max_users: int | None):
  """Lists of up to 4,096 users' item ids up to their last training target (validated)."""
  spec = source.spec
  train_end = examples.SplitPoints.of(source).train_end
  users = _subset_users(len(train_end), max_users)
  users = users[train_end[users] >= 2]
  chunk: list[np.ndarray] = []
  for i, user in enumerate(users.tolist()):
    seq = source.user(user)
    ids = np.asarray(seq[schema.SEQ_ITEM_IDS])
    if i == 0 or not _plain_ids(spec, ids):
      schema.validate_sequence(spec, seq, user)
    chunk.append(ids[:train_end[user]])
    if len(chunk) == 4096:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _plain_ids(spec: schema.DatasetSpec, ids: np.ndarray) -> bool:
  """A cheap pre-check: a non-empty 1-D integer array of ids in [1, num_items]."""
  return (ids.ndim == 1 and ids.size > 0 and ids.dtype.kind in "iu"
          and 1 <= ids.min() and ids.max() <= spec.num_items)


def target_log_q(source: schema.SequenceSource, *,
                 max_users: int | None = DEFAULT_LOGQ_USERS) -> np.ndarray:
  """[num_items + 1] float32 log of the add-one smoothed training-target frequency.

  The logQ correction of the in-batch softmax (DESIGN 2.7): Q(x) = (count(x) + 1) /
  (total + num_items + 1); smoothing keeps items unseen in the sample finite.
  """
  counts = popularity_counts(source, max_users=max_users).astype(np.float64)
  if counts.sum() == 0:
    raise ValueError("target_log_q: no training targets (leave-one-out needs users with "
                     f"{examples.MIN_EVENTS_FOR_TRAINING} or more events)")
  return np.log((counts + 1.0) / (counts.sum() + counts.size)).astype(np.float32)


class _BatchBuilder:
  """Maps a batch of flat example indices to a schema batch (picklable for Grain)."""

  def __init__(self, source: schema.SequenceSource, index: examples.ExampleIndex,
               max_len: int, logq_table: np.ndarray, validate: bool):
    self._source, self._index, self._max_len = source, index, max_len
    self._logq, self._validate = logq_table, validate

  def __call__(self, flat_indices: np.ndarray) -> dict[str, np.ndarray]:
    users, positions = self._index.lookup(flat_indices)
    return examples.make_examples(self._source, users, positions, self._max_len, self._logq,
                                  validate=self._validate)


def _check_train_args(max_len: int, batch_size: int, seed: int, num_examples: int,
                      shard_index: int, shard_count: int) -> None:
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1, got {max_len}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if not 0 <= seed < 2**32:
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} out of range [0, {shard_count})")
  if batch_size * shard_count > num_examples:
    raise ValueError(f"batch_size {batch_size} x {shard_count} shards exceeds the "
                     f"{num_examples} training examples of the dataset")


def train_dataset(source: schema.SequenceSource, *, max_len: int, batch_size: int, seed: int,
                  logq_table: np.ndarray, shard_index: int = 0, shard_count: int = 1,
                  validate: bool = True, sampling: str = "event") -> grain.MapDataset:
  """Infinite, shuffled `grain.MapDataset` of training batches (a dict of numpy arrays).

  Examples are `examples.ExampleIndex`'s for `sampling` ("event": every training position,
  "user": each user's newest one). Epoch e is a seeded permutation (different per epoch) of
  all training examples; with
  `shard_count` > 1 each host takes every shard_count-th example of that order and
  `batch_size` is per host. Batches may straddle epochs (nothing is dropped but the
  remainder of the final, never-reached epoch).
  """
  index = examples.ExampleIndex.from_source(source, sampling)
  _check_train_args(max_len, batch_size, seed, len(index), shard_index, shard_count)
  table = examples.check_logq_table(source.spec, logq_table)
  # Grain reshuffles epoch e with seed + e, so seeds 0 and 1 would share orders one epoch
  # apart; hashing the seed first makes different seeds unrelated.
  shuffle_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
  ds = grain.MapDataset.range(len(index)).shuffle(seed=shuffle_seed).repeat()
  if shard_count > 1:
    ds = ds[shard_index::shard_count]
  ds = ds.batch(batch_size, drop_remainder=True)     # -> int64 index arrays
  return ds.map(_BatchBuilder(source, index, max_len, table, validate))


def train_iterator(source: schema.SequenceSource, *, max_len: int, batch_size: int, seed: int,
                   logq_table: np.ndarray, num_threads: int = 1, prefetch_batches: int = 4,
                   shard_index: int = 0, shard_count: int = 1,
                   validate: bool = True, sampling: str = "event") -> grain.DatasetIterator:
  """Iterator over training batches, checkpointable with `get_state()` / `set_state()`.

  `num_threads` threads build whole batches ahead of the trainer, up to `prefetch_batches`
  in flight. One thread suits a small machine: batch building is mostly GIL-bound numpy,
  and JAX releases the GIL while the step runs. The state is a small JSON-serialisable
  dict (Grain's `{"next_index": int}`); restoring it on an iterator built with the same
  arguments yields exactly the batches an uninterrupted iterator would.
  """
  if num_threads < 0 or prefetch_batches < 0:
    raise ValueError(f"num_threads ({num_threads}) and prefetch_batches "
                     f"({prefetch_batches}) must be >= 0")
  ds = train_dataset(source, max_len=max_len, batch_size=batch_size, seed=seed,
                     logq_table=logq_table, shard_index=shard_index,
                     shard_count=shard_count, validate=validate, sampling=sampling)
  options = grain.ReadOptions(num_threads=num_threads,
                              prefetch_buffer_size=max(prefetch_batches, num_threads))
  return iter(ds.to_iter_dataset(options))


def eval_users(source: schema.SequenceSource, split: str, num_users: int = 0) -> np.ndarray:
  """The first `num_users` users (0 = all) with a `split` target (leave-one-out: n >= 4),
  int64 indices."""
  users = examples.SplitPoints.of(source).users(split)
  return users if num_users <= 0 else users[:num_users]


def eval_examples(source: schema.SequenceSource, *, split: str, max_len: int,
                  logq_table: np.ndarray, users: np.ndarray | None = None,
                  chunk_size: int = 1024) -> dict[str, np.ndarray]:
  """One example per user for `split` ("valid" or "test"), stacked (schema batch keys), and
  `schema.SEEN_IDS`: every item each user had before the target, however long the history.

  `users` defaults to every user with a `split` target (`examples.SplitPoints`; leave-one-out:
  the validation target is event n - 2, the test target event n - 1, whose history includes
  the validation event).
  """
  if users is None:
    users = eval_users(source, split)
  users = np.asarray(users, np.int64).reshape(-1)
  if users.size == 0:
    raise ValueError("eval_examples: no users to evaluate")
  positions = examples.split_positions(examples.SplitPoints.of(source), users, split)
  table = examples.check_logq_table(source.spec, logq_table)
  parts = [examples.make_examples(source, users[lo:lo + chunk_size],
                                  positions[lo:lo + chunk_size], max_len, table)
           for lo in range(0, users.size, chunk_size)]
  out = {key: np.concatenate([p[key] for p in parts]) for key in schema.BATCH_KEYS}
  out[schema.SEEN_IDS] = examples.seen_ids(source, users, positions)
  return out


def item_corpus_features(source: schema.SequenceSource,
                         chunk_size: int = 1 << 20) -> np.ndarray:
  """[num_items + 1, F_item] int32 side features of every item id (row 0 = padding zeros)."""
  spec = source.spec
  out = np.zeros((spec.item_vocab_size, len(spec.item_features)), np.int32)
  for lo in range(1, spec.item_vocab_size, chunk_size):
    ids = np.arange(lo, min(lo + chunk_size, spec.item_vocab_size))
    out[lo:lo + ids.size] = source.item_features(ids)
  return out
