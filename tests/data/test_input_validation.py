"""Input validation at the pipeline boundary: every bad input is an `InvalidRecord` naming the
dataset, record and field, or a counted drop under `invalid_users="drop"`; too-short users are
counted."""
from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from mpformer_jax.data import examples
from mpformer_jax.data import pipeline
from mpformer_jax.data import schema
from mpformer_jax.data import screening
from mpformer_jax.data import synthetic
from tests.data.memory_source import MemorySource

SPEC = schema.DatasetSpec(
    name="tiny_bad", num_items=40, item_features=(("parity", 3),),
    event_features=(("behaviour", 5), ("gap", 4)), user_features=(("age", 4),),
    objectives=("click", "like"), behaviour_feature="behaviour")
NUM_EVENTS = 6


def _seq(ids) -> dict[str, np.ndarray]:
  """A valid sequence of item ids with in-vocabulary features and 0/1 labels."""
  ar = np.arange(len(ids))
  return {schema.SEQ_ITEM_IDS: np.asarray(ids, np.int32),
          schema.SEQ_EVENT_FEATURES: np.stack([ar % 4 + 1, ar % 3 + 1], -1).astype(np.int32),
          schema.SEQ_LABELS: np.stack([ar % 2, ar % 3 == 0], -1).astype(np.int8),
          schema.SEQ_USER_FEATURES: np.array([len(ids) % 3 + 1], np.int32)}


def _source(lengths, cls=MemorySource, **corrupt):
  """Users of the given lengths, user u's ids u * 6 + 1.. (every target id unique); `corrupt`
  maps "u<index>" to a function editing that user's sequence."""
  seqs = [_seq(np.arange(n) + u * NUM_EVENTS + 1) for u, n in enumerate(lengths)]
  for key, edit in corrupt.items():
    seqs[int(key[1:])] = edit(seqs[int(key[1:])])
  return cls(seqs, SPEC)


LOGQ = np.full(SPEC.item_vocab_size, -3.0, np.float32)


def _set(key, value_fn):
  """A corruption replacing field `key` of a sequence by `value_fn(old)`."""
  return lambda seq: {**seq, key: value_fn(np.array(seq[key]))}


def _put(key, index, value, dtype=None):
  """A corruption setting `seq[key][index] = value` (after an optional dtype change)."""
  def edit(old):
    old = old.astype(dtype) if dtype else old
    old[index] = value
    return old
  return _set(key, edit)


IDS, EVENTS, LABELS, USER = (schema.SEQ_ITEM_IDS, schema.SEQ_EVENT_FEATURES,
                             schema.SEQ_LABELS, schema.SEQ_USER_FEATURES)
PREFIX = r"dataset 'tiny_bad', user 2"
BAD_SEQUENCES = {
    "negative id": (_put(IDS, 3, -1), r", event 3, field 'item_ids': item id -1 out of range"),
    "id above num_items": (_put(IDS, 1, 41), r", event 1, field 'item_ids': item id 41 out of "
                                             r"range \[1, 40\]"),
    "empty sequence": (_set(IDS, lambda ids: ids[:0]), r", field 'item_ids': empty sequence"),
    "all padding": (_set(IDS, np.zeros_like), r", field 'item_ids': all-padding sequence"),
    "float ids": (_set(IDS, lambda ids: ids.astype(np.float64)),
                  r", field 'item_ids': dtype float64, expected integers"),
    "float event feature": (_put(EVENTS, (0, 0), 1.5, np.float32),
                            r", field 'event_features': dtype float32, expected integers"),
    "float user feature": (_set(USER, lambda f: f.astype(np.float64)),
                           r", field 'user_features': dtype float64"),
    "event feature out of vocab": (_put(EVENTS, (1, 0), 7), r", event 1, field 'event_features'"
                                   r": feature 'behaviour' value 7 out of range \[0, 5\)"),
    "negative user feature": (_put(USER, 0, -2), r", field 'user_features': feature 'age' "
                                                 r"value -2"),
    "NaN target label": (_put(LABELS, (5, 1), np.nan, np.float32),
                         r", event 5, field 'labels': label 'like' is nan"),
    "inf target label": (_put(LABELS, (5, 0), np.inf, np.float64),
                         r", event 5, field 'labels': label 'click' is inf"),
    "non-binary label": (_put(LABELS, (5, 0), 2), r", event 5, field 'labels': label 'click' "
                                                  r"value 2 not in \{0, 1\}"),
    "labels for unknown objectives": (
        _set(LABELS, lambda lab: np.concatenate([lab, lab[:, :1]], 1)),
        r", field 'labels': 3 columns, expected 2: \('click', 'like'\) \(labels for objectives "
        r"the dataset does not have\)"),
    "too few event feature columns": (_set(EVENTS, lambda ev: ev[:, :1]),
                                      r", field 'event_features': 1 columns, expected 2: "
                                      r"\('behaviour', 'gap'\)"),
    "too many user feature columns": (_set(USER, lambda f: np.repeat(f, 2)),
                                      r", field 'user_features': 2 columns, expected 1"),
    "event rows differ from events": (_set(EVENTS, lambda ev: ev[:-1]),
                                      r", field 'event_features': shape \(5, 2\), expected "
                                      r"\(6, 2\)"),
}


@pytest.mark.parametrize("name", sorted(BAD_SEQUENCES))
def test_bad_sequences_raise_naming_dataset_user_and_field(name):
  corrupt, message = BAD_SEQUENCES[name]
  src = _source([NUM_EVENTS] * 5, u2=corrupt)
  with pytest.raises(schema.InvalidRecord, match=re.escape(PREFIX) + message) as err:
    examples.make_examples(src, np.arange(5), np.full(5, NUM_EVENTS - 1), 8, LOGQ)
  assert isinstance(err.value, ValueError) and err.value.user == 2
  with pytest.raises(schema.InvalidRecord, match=re.escape(PREFIX) + message):
    schema.validate_sequence(SPEC, src.user(2), 2)


def test_a_target_position_beyond_the_sequence_names_batch_row_and_position():
  src = _source([NUM_EVENTS] * 3)
  with pytest.raises(schema.InvalidRecord, match=r"dataset 'tiny_bad', user 1 \(batch row 0\)"
                     r", target position 6, field 'item_ids': no target event at position 6"):
    examples.make_examples(src, [1], [6], 8, LOGQ)


def test_a_non_finite_logq_names_the_example_and_its_target_position():
  src = _source([NUM_EVENTS] * 5)
  logq = LOGQ.copy()
  logq[src.user(2)[IDS][5]] = np.inf     # the test target of user 2 only
  with pytest.raises(schema.InvalidRecord, match=r"dataset 'tiny_bad', user 2 \(batch row 2\),"
                     r" target position 5, field 'target_logq': NaN or infinite value"):
    examples.make_examples(src, np.arange(5), np.full(5, NUM_EVENTS - 1), 8, logq)
  with pytest.raises(ValueError, match="dataset 'tiny_bad', logq_table: NaN or infinite value "
                     "inf at item 18"):
    pipeline.eval_examples(src, split="test", max_len=8, logq_table=logq)


def _batch():
  src = _source([NUM_EVENTS] * 5)
  batch = examples.make_examples(src, np.arange(5), np.full(5, NUM_EVENTS - 1), 8, LOGQ)
  batch[schema.USER_INDEX] = np.arange(10, 15, dtype=np.int32)   # row r is user 10 + r
  return batch


def _float(key):
  return lambda b: b[key].astype(np.float32)


BAD_BATCHES = {
    "all-padding history": (schema.HISTORY_IDS, lambda b: np.where(np.arange(5)[:, None] == 3,
                                                                   0, b[schema.HISTORY_IDS]),
                            r"user 13 \(batch row 3\), field 'history_ids': all-padding history"),
    "negative history id": (schema.HISTORY_IDS, lambda b: b[schema.HISTORY_IDS] - 5,
                            r"user 10 \(batch row 0\), field 'history_ids': item id -[0-9]+ out "
                            r"of range \[0, 40\]"),
    "target id above num_items": (schema.TARGET_ID, lambda b: np.where(np.arange(5) == 1, 41,
                                                                       b[schema.TARGET_ID]),
                                  r"user 11 \(batch row 1\), field 'target_id': item id 41 out "
                                  r"of range"),
    "padding target": (schema.TARGET_ID, lambda b: np.where(np.arange(5) == 4, 0,
                                                            b[schema.TARGET_ID]),
                       r"user 14 \(batch row 4\), field 'target_id': padding id 0"),
    "float history ids": (schema.HISTORY_IDS, _float(schema.HISTORY_IDS),
                          r"batch, field 'history_ids': item ids must be integers, got float32"),
    "float target features": (schema.TARGET_ITEM_FEATURES, _float(schema.TARGET_ITEM_FEATURES),
                              r"batch, field 'target_item_features': categorical features must "
                              r"be integers"),
    "NaN label": (schema.TARGET_LABELS, lambda b: np.where(np.arange(5)[:, None] == 2, np.nan,
                                                           b[schema.TARGET_LABELS]),
                  r"user 12 \(batch row 2\), field 'target_labels': label 'click' is nan"),
    "labels for unknown objectives": (schema.TARGET_LABELS,
                                      lambda b: np.zeros((5, 3), np.float32),
                                      r"batch, field 'target_labels': 3 columns, expected 2"),
    "inf logq": (schema.TARGET_LOGQ, lambda b: np.where(np.arange(5) == 1, -np.inf,
                                                        b[schema.TARGET_LOGQ]),
                 r"user 11 \(batch row 1\), field 'target_logq': NaN or infinite"),
    "event feature columns": (schema.HISTORY_EVENT_FEATURES,
                              lambda b: b[schema.HISTORY_EVENT_FEATURES][..., :1],
                              r"batch, field 'history_event_features': 1 columns, expected 2"),
    "user feature out of vocab": (schema.USER_FEATURES, lambda b: b[schema.USER_FEATURES] + 3,
                                  r"user 10 \(batch row 0\), field 'user_features': feature "
                                  r"'age' value [4-6] out of range \[0, 4\)"),
}


@pytest.mark.parametrize("name", sorted(BAD_BATCHES))
def test_bad_batches_raise_naming_dataset_row_user_index_and_field(name):
  key, edit, message = BAD_BATCHES[name]
  batch = _batch()
  schema.validate_batch(SPEC, batch)
  batch[key] = edit(batch)
  with pytest.raises(schema.InvalidRecord, match="dataset 'tiny_bad', " + message):
    schema.validate_batch(SPEC, batch)


def test_a_batch_missing_a_key_names_it():
  batch = _batch()
  del batch[schema.TARGET_LOGQ]
  with pytest.raises(ValueError, match=r"dataset 'tiny_bad', batch, field 'target_logq': "
                     r"batch is missing keys \['target_logq'\]"):
    schema.validate_batch(SPEC, batch)


class CorruptedPlatform:
  """A small SyntheticPlatform whose user `bad` has an out-of-range item id at event 2."""

  def __init__(self, bad: int):
    self._platform = synthetic.SyntheticPlatform(
        num_users=40, num_items=200, num_topics=5, num_authors=20, min_len=5, max_len=12, seed=3)
    self.spec, self._bad = self._platform.spec, bad

  def __len__(self):
    return len(self._platform)

  def lengths(self):
    return self._platform.lengths()

  def user(self, index):
    seq = self._platform.user(index)
    if index != self._bad:
      return seq
    ids = np.array(seq[schema.SEQ_ITEM_IDS])
    ids[2] = self.spec.num_items + 400
    return {**seq, schema.SEQ_ITEM_IDS: ids}

  def item_features(self, item_ids):
    return self._platform.item_features(item_ids)


def test_synthetic_train_and_eval_paths_name_the_corrupted_user():
  src = CorruptedPlatform(bad=17)
  logq = pipeline.target_log_q(CorruptedPlatform(bad=-1))
  match = r"dataset 'synthetic', user 17, event 2, field 'item_ids': item id 600 out of range"
  with pytest.raises(schema.InvalidRecord, match=match):
    pipeline.eval_examples(src, split="test", max_len=8, logq_table=logq)
  with pytest.raises(schema.InvalidRecord, match=match):
    pipeline.popularity_counts(src)
  it = pipeline.train_iterator(src, max_len=16, batch_size=32, seed=0, logq_table=logq,
                               num_threads=1)
  with pytest.raises(schema.InvalidRecord, match=match):
    for _ in range(examples.ExampleIndex.from_source(src).num_examples // 32 + 1):
      next(it)


DROPPED = {1: _put(IDS, 2, 99), 4: _put(LABELS, (2, 0), np.nan, np.float32),
           6: _set(IDS, lambda ids: ids.astype(np.float32))}


def _drop_source():
  """Users 0..7 of 6 events but user 7 (3 events); 1, 4 and 6 malformed (user 4 only in a
  history label, which no batch check sees)."""
  lengths = [NUM_EVENTS] * 7 + [3]
  return _source(lengths, **{f"u{u}": edit for u, edit in DROPPED.items()})


def test_drop_counts_logs_and_excludes_malformed_users(caplog):
  src = _drop_source()
  assert screening.screen_users(src, "error") is src
  with pytest.raises(ValueError, match="invalid_users must be one of"):
    screening.screen_users(src, "skip")
  with caplog.at_level(logging.INFO):
    screened = screening.screen_users(src, "drop")
  np.testing.assert_array_equal(screened.dropped, [1, 4, 6])
  assert screened.drop_counts == {"item_ids out of range": 1, "labels NaN or inf": 1,
                                  "item_ids wrong dtype": 1}
  log = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
  assert "dataset 'tiny_bad': dropped 3 of 7 users with examples as invalid" in log
  assert "user 1, event 2, field 'item_ids': item id 99" in log
  kept = {0, 2, 3, 5}
  it = pipeline.train_iterator(screened, max_len=8, batch_size=4, seed=0, logq_table=LOGQ)
  seen = {int(u) for _ in range(3 * 12 // 4) for u in next(it)[schema.USER_INDEX]}
  assert seen == kept            # 4 users x 3 training examples, 3 batches per epoch
  for split in examples.SPLITS:
    held_out = pipeline.eval_examples(screened, split=split, max_len=8, logq_table=LOGQ)
    assert set(held_out[schema.USER_INDEX].tolist()) == kept
  counts = pipeline.popularity_counts(screened)
  expected = np.zeros(SPEC.item_vocab_size, np.int64)
  for u in kept:
    expected[u * NUM_EVENTS + np.arange(2, 5)] = 1      # training targets: positions 1..3
  np.testing.assert_array_equal(counts, expected)


def test_screening_an_all_valid_source_drops_nothing():
  src = _source([NUM_EVENTS] * 3)
  screened = screening.screen_users(src, "drop")
  assert screened.dropped.size == 0 and screened.drop_counts == {}
  assert len(examples.ExampleIndex.from_source(screened)) == 3 * 3
  assert screened.spec is SPEC and len(screened) == 3


def test_too_short_users_are_counted_and_logged(caplog):
  lengths = [0, 1, 2, 3, 4, 5, 3, 9, 1]        # 6 users below 4 events
  src = _source([min(n, NUM_EVENTS) for n in lengths])
  with caplog.at_level(logging.INFO):
    summary = screening.log_split_summary(src)
  assert (summary.users, summary.too_short, summary.dropped) == (9, 6, None)
  assert (summary.train, summary.valid, summary.test) == (3, 3, 3)
  assert summary.leave_one_out
  assert ("dataset 'tiny_bad': 9 users; 6 have fewer than 4 events and give no example "
          "(too short); 3 train, 3 valid, 3 test users") in caplog.text


def test_split_summary_counts_dropped_users_apart_from_too_short_ones():
  summary = screening.split_summary(screening.screen_users(_drop_source(), "drop"))
  assert (summary.users, summary.too_short, summary.dropped) == (8, 1, 3)
  assert (summary.train, summary.valid, summary.test) == (4, 4, 4)
  assert "1 have fewer than 4 events" in summary.line()
  assert "3 dropped as invalid" in summary.line()


class TimeSplitSource(MemorySource):
  """A source with its own split (like a time cut-off): some users lack some targets."""

  def split_points(self):
    return examples.SplitPoints(train_end=np.array([4, 1, 0, 2, 0]),
                                valid=np.array([4, 1, -1, -1, -1]),
                                test=np.array([5, -1, 3, -1, -1]))


def test_too_short_under_a_sources_own_split_means_no_target_at_all():
  src = _source([NUM_EVENTS] * 5, cls=TimeSplitSource)
  summary = screening.split_summary(src)
  # train: users 0 and 3 (train_end >= 2); valid: 0, 1; test: 0, 2; user 4 has nothing.
  assert (summary.too_short, summary.train, summary.valid, summary.test) == (1, 2, 2, 2)
  assert not summary.leave_one_out
  assert "1 have no train, valid or test target under the dataset's split" in summary.line()
