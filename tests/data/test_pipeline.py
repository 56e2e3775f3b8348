"""Leave-one-out examples and the Grain pipeline, checked against a hand-built source."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mpformer_jax.data import examples
from mpformer_jax.data import pipeline
from mpformer_jax.data import schema
from mpformer_jax.data import synthetic
from tests.data.memory_source import MemorySource

SPEC = schema.DatasetSpec(
    name="tiny", num_items=20, item_features=(("parity", 3),),
    event_features=(("behaviour", 5), ("gap", 4)), user_features=(("age", 4),),
    objectives=("click", "like"), behaviour_feature="behaviour")


class TinySource(MemorySource):
  """Users with the given item ids: item i has feature i % 2 + 1; event e has (e%4+1, e%3+1)."""

  def __init__(self, item_lists, spec=SPEC):
    seqs = []
    for u, ids in enumerate(item_lists):
      ar = np.arange(len(ids))
      seqs.append({
          schema.SEQ_ITEM_IDS: np.asarray(ids, np.int32),
          schema.SEQ_EVENT_FEATURES: np.stack([ar % 4 + 1, ar % 3 + 1], -1).astype(np.int32),
          schema.SEQ_LABELS: np.stack([ar % 2, (ar + u) % 3 == 0], -1).astype(np.int8),
          schema.SEQ_USER_FEATURES: np.array([u % 3 + 1], np.int32)})
    super().__init__(seqs, spec)


SEQS = [[3, 5, 7, 9, 11, 13], [2, 4, 6], [1, 2, 3, 4, 5]]
LOGQ = np.linspace(-5.0, -1.0, SPEC.item_vocab_size).astype(np.float32)


def test_example_index_maps_flat_indices_to_leave_one_out_positions():
  index = examples.ExampleIndex.from_source(TinySource(SEQS))
  assert len(index) == 3 + 0 + 2        # n - 3 per user with n >= 4
  users, positions = index.lookup(np.arange(5))
  np.testing.assert_array_equal(users, [0, 0, 0, 2, 2])
  np.testing.assert_array_equal(positions, [1, 2, 3, 1, 2])
  with pytest.raises(ValueError, match="example index 5"):
    index.lookup(5)
  with pytest.raises(ValueError, match="no training examples"):
    examples.ExampleIndex(np.array([0, 1, 1]))      # train_end: no position 1..end-1


def test_user_sampling_gives_each_user_its_newest_training_target():
  index = examples.ExampleIndex.from_source(TinySource(SEQS), "user")
  assert len(index) == 2                # users 0 and 2; user 1 (n=3) has no training target
  users, positions = index.lookup(np.arange(2))
  np.testing.assert_array_equal(users, [0, 2])
  np.testing.assert_array_equal(positions, [3, 2])   # n - 3: the last before valid / test
  with pytest.raises(ValueError, match="data.sampling"):
    examples.ExampleIndex(np.array([5]), "users")
  it = pipeline.train_iterator(TinySource(SEQS), max_len=4, batch_size=2, seed=0,
                               logq_table=LOGQ, sampling="user")
  batch = next(it)
  assert sorted(batch[schema.TARGET_ID].tolist()) == [3, 9]  # user 2's event 2, user 0's 3


def test_make_example_left_pads_history_and_reads_the_target():
  src = TinySource(SEQS)
  ex = examples.make_example(src, 0, 3, max_len=5, logq_table=LOGQ)
  np.testing.assert_array_equal(ex[schema.HISTORY_IDS], [0, 0, 3, 5, 7])
  np.testing.assert_array_equal(ex[schema.HISTORY_ITEM_FEATURES][:, 0], [0, 0, 2, 2, 2])
  np.testing.assert_array_equal(ex[schema.HISTORY_EVENT_FEATURES],
                                [[0, 0], [0, 0], [1, 1], [2, 2], [3, 3]])
  assert ex[schema.TARGET_ID] == 9
  np.testing.assert_array_equal(ex[schema.TARGET_ITEM_FEATURES], [2])
  np.testing.assert_array_equal(ex[schema.TARGET_LABELS], [1.0, 1.0])   # event 3 of user 0
  assert ex[schema.TARGET_LOGQ] == LOGQ[9]
  np.testing.assert_array_equal(ex[schema.USER_FEATURES], [1])
  assert ex[schema.USER_INDEX] == 0
  assert ex[schema.TARGET_LABELS].dtype == np.float32
  assert ex[schema.TARGET_LOGQ].dtype == np.float32
  for key in schema.BATCH_KEYS:
    if key not in (schema.TARGET_LABELS, schema.TARGET_LOGQ):
      assert ex[key].dtype == np.int32, key


def test_make_example_truncates_to_the_newest_max_len_events():
  ex = examples.make_example(TinySource(SEQS), 0, 4, max_len=2, logq_table=LOGQ)
  np.testing.assert_array_equal(ex[schema.HISTORY_IDS], [7, 9])
  assert ex[schema.TARGET_ID] == 11


def test_eval_examples_use_the_last_two_events():
  src = TinySource(SEQS)
  test = pipeline.eval_examples(src, split="test", max_len=4, logq_table=LOGQ)
  valid = pipeline.eval_examples(src, split="valid", max_len=4, logq_table=LOGQ)
  np.testing.assert_array_equal(test[schema.USER_INDEX], [0, 2])     # user 1 has n = 3
  np.testing.assert_array_equal(test[schema.TARGET_ID], [13, 5])
  np.testing.assert_array_equal(test[schema.HISTORY_IDS], [[5, 7, 9, 11], [1, 2, 3, 4]])
  np.testing.assert_array_equal(valid[schema.TARGET_ID], [11, 4])
  np.testing.assert_array_equal(valid[schema.HISTORY_IDS], [[3, 5, 7, 9], [0, 1, 2, 3]])
  # "Seen removed" takes out the whole history, not only the newest max_len events.
  np.testing.assert_array_equal(test[schema.SEEN_IDS], [[3, 5, 7, 9, 11], [1, 2, 3, 4, 0]])
  schema.validate_batch(SPEC, test)
  one = pipeline.eval_examples(src, split="test", max_len=4, logq_table=LOGQ, users=[2])
  np.testing.assert_array_equal(one[schema.TARGET_ID], [5])
  with pytest.raises(ValueError, match="user 1 has no test target"):
    pipeline.eval_examples(src, split="test", max_len=4, logq_table=LOGQ, users=[1])
  with pytest.raises(ValueError, match="split"):
    pipeline.eval_examples(src, split="train", max_len=4, logq_table=LOGQ)


def test_logq_matches_smoothed_training_target_counts():
  src = TinySource(SEQS)
  counts = pipeline.popularity_counts(src)
  expected = np.zeros(21, np.int64)
  for ids in ([5, 7, 9], [2, 3]):      # positions 1..n-3 of users 0 and 2
    expected[ids] += 1
  np.testing.assert_array_equal(counts, expected)
  logq = pipeline.target_log_q(src)
  assert logq.dtype == np.float32 and logq.shape == (21,)
  assert np.isfinite(logq).all()
  np.testing.assert_allclose(logq, np.log((expected + 1) / (5 + 21)), rtol=1e-6)
  # A subset of users is evenly spaced and deterministic.
  np.testing.assert_array_equal(pipeline.popularity_counts(src, max_users=1),
                                np.bincount([5, 7, 9], minlength=21))


def test_seen_ids_are_distinct_and_spare_a_repeated_target():
  src = TinySource([[4, 2, 4, 6, 2, 9, 2]])
  seen = pipeline.eval_examples(src, split="test", max_len=2, logq_table=LOGQ)[schema.SEEN_IDS]
  np.testing.assert_array_equal(seen, [[4, 6, 9]])  # target 2 (seen twice) stays rankable


def test_transitions_count_the_pairs_ending_in_a_training_target():
  counts = pipeline.transition_counts(TinySource(SEQS)).toarray()
  expected = np.zeros((21, 21), np.int64)
  for prev, nxt in ((3, 5), (5, 7), (7, 9), (1, 2), (2, 3)):  # targets 1..n-3 as above
    expected[prev, nxt] += 1
  np.testing.assert_array_equal(counts, expected)


def test_item_corpus_features_has_a_zero_padding_row():
  feats = pipeline.item_corpus_features(TinySource(SEQS), chunk_size=7)
  assert feats.shape == (21, 1) and feats.dtype == np.int32
  np.testing.assert_array_equal(feats[:, 0], [0] + [i % 2 + 1 for i in range(1, 21)])


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    for key in schema.BATCH_KEYS:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_every_epoch_is_a_fresh_permutation_of_all_examples():
  src = TinySource(SEQS * 3)          # 15 training examples
  it = pipeline.train_iterator(src, max_len=4, batch_size=1, seed=3, logq_table=LOGQ)
  epochs = []
  for _ in range(3):
    batches = _take(it, 15)
    epochs.append([(int(b[schema.USER_INDEX][0]), int(b[schema.TARGET_ID][0]))
                   for b in batches])
  expected = sorted((u, SEQS[u % 3][p]) for u in range(9) for p in range(1, len(SEQS[u % 3]) - 2))
  for epoch in epochs:
    assert sorted(epoch) == expected
  assert epochs[0] != epochs[1] or epochs[1] != epochs[2]


@pytest.fixture(scope="module")
def small_platform():
  return synthetic.SyntheticPlatform(num_users=300, num_items=400, num_topics=10,
                                     num_authors=50, min_len=5, max_len=40, seed=1)


def test_train_batches_are_deterministic_and_valid(small_platform):
  logq = pipeline.target_log_q(small_platform)
  kw = dict(max_len=16, batch_size=8, logq_table=logq)
  a = _take(pipeline.train_iterator(small_platform, seed=7, num_threads=2, **kw), 4)
  b = _take(pipeline.train_iterator(small_platform, seed=7, num_threads=0, **kw), 4)
  c = _take(pipeline.train_iterator(small_platform, seed=8, **kw), 4)
  _assert_same(a, b)
  assert not np.array_equal(a[0][schema.TARGET_ID], c[0][schema.TARGET_ID])
  for batch in a:
    schema.validate_batch(small_platform.spec, batch)
    assert batch[schema.HISTORY_IDS].shape == (8, 16)
    np.testing.assert_array_equal(batch[schema.TARGET_LOGQ], logq[batch[schema.TARGET_ID]])


def test_set_state_resumes_exactly(small_platform):
  logq = pipeline.target_log_q(small_platform)
  kw = dict(max_len=16, batch_size=8, seed=5, logq_table=logq)
  it = pipeline.train_iterator(small_platform, **kw)
  _take(it, 3)
  state = json.loads(json.dumps(it.get_state()))      # JSON-serialisable
  expected = _take(it, 5)
  resumed = pipeline.train_iterator(small_platform, **kw)
  _take(resumed, 1)                                    # a different position first
  resumed.set_state(state)
  _assert_same(_take(resumed, 5), expected)


def test_shards_split_the_example_order(small_platform):
  logq = pipeline.target_log_q(small_platform)
  kw = dict(max_len=8, batch_size=4, seed=2, logq_table=logq)
  full = _take(pipeline.train_iterator(small_platform, **kw), 2)
  shards = [_take(pipeline.train_iterator(small_platform, shard_index=i, shard_count=2, **kw), 1)
            for i in range(2)]
  ids = np.concatenate([b[schema.TARGET_ID] for b in full])
  np.testing.assert_array_equal(shards[0][0][schema.TARGET_ID], ids[0::2][:4])
  np.testing.assert_array_equal(shards[1][0][schema.TARGET_ID], ids[1::2][:4])


def test_bad_inputs_raise_value_errors_naming_the_field():
  src = TinySource(SEQS)
  with pytest.raises(ValueError, match="max_len"):
    pipeline.train_iterator(src, max_len=0, batch_size=1, seed=0, logq_table=LOGQ)
  with pytest.raises(ValueError, match="batch_size 6"):
    pipeline.train_iterator(src, max_len=4, batch_size=6, seed=0, logq_table=LOGQ)
  with pytest.raises(ValueError, match="logq_table"):
    pipeline.train_iterator(src, max_len=4, batch_size=1, seed=0, logq_table=LOGQ[:5])
  with pytest.raises(ValueError, match="max_len"):
    examples.make_example(src, 0, 1, max_len=0, logq_table=LOGQ)
  with pytest.raises(ValueError, match="target position 5"):
    examples.make_example(src, 2, 5, max_len=4, logq_table=LOGQ)
  bad = TinySource([[1, 2, 99, 3, 4]])
  with pytest.raises(ValueError, match="item id 99"):
    examples.make_example(bad, 0, 3, max_len=4, logq_table=LOGQ)
  with pytest.raises(ValueError, match="item id 99"):
    pipeline.popularity_counts(bad)
  bad_feature = TinySource(SEQS)
  bad_feature.user(0)[schema.SEQ_EVENT_FEATURES][1, 0] = 7
  with pytest.raises(ValueError, match="'behaviour' value 7"):
    examples.make_example(bad_feature, 0, 3, max_len=4, logq_table=LOGQ)
  with pytest.raises(ValueError, match="empty"):
    examples.make_example(TinySource([[], [1, 2, 3, 4]]), 0, 0, max_len=4, logq_table=LOGQ)
