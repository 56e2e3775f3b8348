"""The synthetic short-video platform: determinism, laziness, ranges and learnable structure."""
from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from mpformer_jax.data import pipeline
from mpformer_jax.data import schema
from mpformer_jax.data import synthetic

SMALL = dict(num_users=2_000, num_items=3_000, num_topics=30, num_categories=6,
             num_authors=300, min_len=10, max_len=120)


@pytest.fixture(scope="module")
def platform():
  return synthetic.SyntheticPlatform(**SMALL, seed=0)


@pytest.fixture(scope="module")
def sequences(platform):
  return [platform.user(u) for u in range(platform.num_users)]


def _same_user(a, b):
  return all(np.array_equal(a[k], b[k]) for k in a)


def test_same_seed_same_data_different_seed_different(platform):
  again = synthetic.SyntheticPlatform(**SMALL, seed=0, cache_events=0)
  other = synthetic.SyntheticPlatform(**SMALL, seed=1)
  np.testing.assert_array_equal(platform.lengths(), again.lengths())
  for u in (0, 17, 1_999):
    assert _same_user(platform.user(u), again.user(u))
  ids = np.arange(1, 3_001)
  np.testing.assert_array_equal(platform.item_features(ids), again.item_features(ids))
  assert not np.array_equal(platform.lengths(), other.lengths())
  assert not _same_user(platform.user(5), other.user(5))
  assert not np.array_equal(platform.item_features(ids), other.item_features(ids))


def test_cached_users_are_read_only_and_pickling_keeps_the_data(platform):
  seq = platform.user(3)
  assert platform.user(3) is seq
  with pytest.raises(ValueError):
    seq[schema.SEQ_ITEM_IDS][0] = 1
  clone = pickle.loads(pickle.dumps(platform))
  assert _same_user(clone.user(3), seq)


def test_million_users_ten_million_items_is_lazy():
  start = time.perf_counter()
  big = synthetic.SyntheticPlatform(num_users=1_000_000, num_items=10_000_000,
                                    num_topics=1_000, num_authors=200_000)
  seq = big.user(999_999)
  assert time.perf_counter() - start < 1.0
  schema.validate_sequence(big.spec, seq, 999_999)
  lengths = big.lengths()
  assert lengths.shape == (1_000_000,) and lengths.dtype == np.int64
  assert lengths[999_999] == len(seq[schema.SEQ_ITEM_IDS])
  assert lengths.min() >= big.min_len and lengths.max() <= big.max_len
  feats = big.item_features(np.array([1, 10_000_000]))
  assert (feats >= 1).all() and (feats < [v for _, v in big.spec.item_features]).all()


def test_lengths_and_profiles_match_generated_users(platform, sequences):
  lengths = platform.lengths()
  profiles = platform.user_profiles(np.arange(platform.num_users))
  for u, seq in enumerate(sequences):
    assert len(seq[schema.SEQ_ITEM_IDS]) == lengths[u]
    np.testing.assert_array_equal(seq[schema.SEQ_USER_FEATURES], profiles[u])
  assert lengths.min() >= SMALL["min_len"] and lengths.max() <= SMALL["max_len"]
  # Heavier users (activity) have longer sequences.
  mean_len = [lengths[profiles[:, 2] == a].mean() for a in (1, 2, 3, 4)]
  assert np.all(np.diff(mean_len) > 0)


def test_features_lie_in_their_vocabularies(platform, sequences):
  spec = platform.spec
  for u, seq in enumerate(sequences[:300]):
    schema.validate_sequence(spec, seq, u)
    labels = seq[schema.SEQ_LABELS].astype(np.int32)
    behaviour = seq[schema.SEQ_EVENT_FEATURES][:, 0]
    np.testing.assert_array_equal(behaviour, labels @ np.array([1, 2, 4, 8]) + 1)
    assert (seq[schema.SEQ_EVENT_FEATURES] >= 1).all()
    assert (labels[:, 1:] <= labels[:, :1]).all()      # long_view/like/follow need a click
  feats = pipeline.item_corpus_features(platform)
  vocab = np.array([v for _, v in spec.item_features])
  assert (feats[0] == 0).all()
  assert (feats[1:] >= 1).all() and (feats[1:] < vocab).all()
  with pytest.raises(ValueError, match="item id 3001"):
    platform.item_features(np.array([3_001]))


def test_topic_rank_bijection_covers_every_item_once():
  p = synthetic.SyntheticPlatform(num_items=1_003, num_topics=7, seed=4)
  ids = np.arange(1, 1_004)
  topics, ranks = p.item_topic_rank(ids)
  assert (ranks < p.topic_sizes(topics)).all()
  np.testing.assert_array_equal(p.topic_rank_to_item(topics, ranks), ids)
  assert np.bincount(topics).sum() == 1_003 and set(np.bincount(topics)) <= {143, 144}
  np.testing.assert_allclose(np.bincount(topics, weights=p.within_topic_prob(ids)), 1.0)


def test_item_popularity_is_zipf_like(platform, sequences):
  counts = np.bincount(np.concatenate([s[schema.SEQ_ITEM_IDS] for s in sequences]),
                       minlength=platform.num_items + 1)[1:]
  share = np.sort(counts)[::-1].cumsum() / counts.sum()
  assert share[len(share) // 100] > 0.06        # top 1% of items: > 6x their uniform share
  assert share[len(share) // 10] > 0.3
  _, ranks = platform.item_topic_rank(np.arange(1, platform.num_items + 1))
  assert counts[ranks == 0].mean() > 10 * counts[ranks >= 50].mean()


def _topic_overlap(p, users):
  """Mean Jaccard overlap of the topic sets of each user's first and last 40 events."""
  overlaps = []
  for u in users:
    topics, _ = p.item_topic_rank(p.user(u)[schema.SEQ_ITEM_IDS])
    first, last = set(topics[:40]), set(topics[-40:])
    overlaps.append(len(first & last) / len(first | last))
  return np.mean(overlaps)


def test_interests_drift_along_the_sequence():
  kw = dict(SMALL, num_users=400, min_len=200, max_len=200, seed=2)
  users = range(400)
  still = _topic_overlap(synthetic.SyntheticPlatform(**kw, drift_prob=0.0), users)
  drifting = _topic_overlap(synthetic.SyntheticPlatform(**kw, drift_prob=0.02), users)
  assert drifting < still - 0.1


def test_label_rates_depend_on_the_profile(platform, sequences):
  activity = platform.user_profiles(np.arange(platform.num_users))[:, 2]
  rates = {}
  for a in (1, 4):
    labels = [s[schema.SEQ_LABELS] for s, act in zip(sequences, activity) if act == a]
    rates[a] = np.concatenate(labels).mean(axis=0)
  assert (rates[4] > rates[1]).all()
  assert rates[4][2] > 1.5 * rates[1][2]       # likes
  overall = np.concatenate([s[schema.SEQ_LABELS] for s in sequences]).mean(axis=0)
  assert overall[0] > overall[1] > overall[2] > overall[3] > 0.005


def test_invalid_arguments_name_the_field():
  with pytest.raises(ValueError, match="num_topics=50"):
    synthetic.SyntheticPlatform(num_items=10, num_topics=50)
  with pytest.raises(ValueError, match="max_len=5"):
    synthetic.SyntheticPlatform(min_len=10, max_len=5)
  with pytest.raises(ValueError, match="user index 7"):
    synthetic.SyntheticPlatform(num_users=7).user(7)


def test_history_heuristic_beats_popularity_3x():
  """Learnability: recent-topic heuristic vs global popularity, test HR@50 (DESIGN 3)."""
  p = synthetic.SyntheticPlatform(num_users=5_000, num_items=5_000, seed=0)
  counts = pipeline.popularity_counts(p, max_users=None)
  test = pipeline.eval_examples(p, split="test", max_len=20,
                                logq_table=np.zeros(p.num_items + 1, np.float32))
  target = test[schema.TARGET_ID]
  top_popular = np.argsort(-counts[1:])[:50] + 1
  pop_hr = np.isin(target, top_popular).mean()
  # Score = frequency of the item's topic in the last 20 events x within-topic popularity.
  items = np.arange(1, p.num_items + 1)
  item_topic, _ = p.item_topic_rank(items)
  within = p.within_topic_prob(items)
  hist = test[schema.HISTORY_IDS]
  hist_topic, _ = p.item_topic_rank(np.maximum(hist, 1))
  freq = np.zeros((len(hist), p.num_topics))
  np.add.at(freq, (np.arange(len(hist))[:, None], hist_topic), hist > 0)
  hits = 0
  for lo in range(0, len(hist), 1_000):
    scores = freq[lo:lo + 1_000][:, item_topic] * within
    own = scores[np.arange(len(scores)), target[lo:lo + 1_000] - 1]
    hits += ((own > 0) & ((scores > own[:, None]).sum(axis=1) < 50)).sum()
  heuristic_hr = hits / len(hist)
  assert pop_hr > 0.03                        # popularity is a real baseline
  assert heuristic_hr > 3 * pop_hr, (heuristic_hr, pop_hr)
