"""A seeded, lazy short-video platform simulator implementing `SequenceSource`.

Why: tests, benchmarks and the default config need a dataset with learnable, multi-interest,
multi-objective structure at any scale (1M users x 10M items) without downloads or memory.

Nothing is tabulated per user or per item. Item ids are an affine bijection of (topic, rank)
pairs, so an item's topic, within-topic popularity rank and side features are closed-form
arithmetic plus a counter-based hash of (seed, item id). A user's profile and length are a
hash of (seed, user index) (so `lengths()` is vectorised over all users) and the events come
from `np.random.default_rng([seed, index])`, vectorised over events.

Generative story of one user:
  * profile (age, gender, activity); activity sets the sequence length (log-uniform band);
  * `interests_per_user` interest slots, each a topic drawn from a Zipf topic popularity
    (shifted by the user's demographic group half of the time), with Dirichlet(1) weights;
    before each event, with probability `drift_prob` one slot is replaced by a new topic;
  * each event: a slot by weight (or, with probability EXPLORE_PROB, a globally popular
    topic), then an item in that topic with continuous-Zipf rank popularity;
  * labels click -> {long_view, like, follow}: logistic in an objective base rate, the
    profile, a per-user propensity, per-item objective quality and interest affinity;
  * watch time from the item duration and the labels; the gap from session breaks.
"""
from __future__ import annotations

import collections
import math
import threading
from typing import Mapping

import numpy as np

from mpformer_jax.data import schema

OBJECTIVES = ("click", "long_view", "like", "follow")
EVENT_FEATURES = (("behaviour", 17), ("watch_time", 11), ("time_gap", 9))
USER_FEATURES = (("age", 8), ("gender", 3), ("activity", 5))
DURATION_BUCKETS = 10              # values 1..10, vocab 11
GAP_EDGES_S = (10., 30., 60., 300., 1800., 7200., 86400.)   # -> buckets 1..8, vocab 9

EXPLORE_PROB = 0.1        # events off the user's interests (a globally popular topic)
DEMOGRAPHIC_PROB = 0.5    # interest topics drawn from the demographic group's shifted Zipf
TOPIC_ZIPF = 0.8          # Zipf exponent of topic popularity
CATEGORY_NOISE = 0.1      # items whose category is random instead of their topic's
REPEAT_RESAMPLE_ROUNDS = 2   # redraws of an item the user already consumed
SESSION_BREAK = 0.05      # probability that an event starts a new session
ACTIVITY_PROBS = (0.4, 0.3, 0.2, 0.1)
# Objective base logits and their sensitivity to (activity, item quality, affinity).
_BASE_LOGIT = np.array([0.4, -0.2, -3.1, -4.6])
_ACTIVITY_W = np.array([0.25, 0.2, 0.45, 0.35])
_QUALITY_W = np.array([0.8, 1.0, 1.2, 1.2])
_AFFINITY_W = np.array([0.8, 0.6, 0.5, 0.5])

_BEHAVIOUR_BITS = np.array([1, 2, 4, 8], np.int8)
_GAP_EDGES = np.asarray(GAP_EDGES_S)
_ACTIVITY_EDGES16 = np.rint(np.cumsum(ACTIVITY_PROBS)[:-1] * 65536).astype(np.int64)
_LENGTH_LEVELS = 4096     # log-uniform length levels within an activity band

# Hash streams (arbitrary distinct constants).
_S_ITEM, _S_ITEM_META, _S_USER, _S_BIJECTION, _S_GROUP, _S_PROFILE_BIAS = 11, 12, 21, 31, 32, 33

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1
_LOW16 = np.uint64(0xFFFF)
_QUALITY_SHIFTS = np.uint64(16) + np.arange(4, dtype=np.uint64) * np.uint64(12)
_QUALITY_OFFSETS = np.arange(4, dtype=np.uint64) * np.uint64(4096)


def _mix(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser on a fresh uint64 array, in place (wrap-around arithmetic)."""
  x ^= x >> np.uint64(30)
  x *= _M1
  x ^= x >> np.uint64(27)
  x *= _M2
  x ^= x >> np.uint64(31)
  return x


def _mix_int(x: int) -> int:
  """`_mix` on one Python integer."""
  for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
    x = ((x ^ (x >> shift)) * mult) & _MASK64
  return x ^ (x >> 31)


def _key(seed: int, stream: int) -> int:
  """A 64-bit key per (seed, stream)."""
  return _mix_int((seed * 0x9E3779B97F4A7C15 + stream * 0xD1B54A32D192ED03
                   + 0x632BE59BD9B4E019) & _MASK64)


def _hash_int(seed: int, stream: int, i: int) -> int:
  """Pure-Python `hash_u64` of one id (same value), for cheap scalar lookups."""
  return _mix_int((i * 0x9E3779B97F4A7C15 + _key(seed, stream)) & _MASK64)


def hash_u64(seed: int, stream: int, ids: np.ndarray) -> np.ndarray:
  """Counter-based hash of (seed, stream, id) -> uint64, same shape as `ids`."""
  ids = np.asarray(ids)
  x = np.atleast_1d(ids).astype(np.uint64) * _GOLDEN
  x += np.uint64(_key(seed, stream))
  return _mix(x).reshape(ids.shape)


def hash_uniform(seed: int, stream: int, ids: np.ndarray) -> np.ndarray:
  """Uniform float64 in [0, 1) from the hash of (seed, stream, id)."""
  return (hash_u64(seed, stream, ids) >> np.uint64(11)).astype(np.float64) * 2.0**-53


# Lookup tables indexed by hash bits (shared, read-only): item durations (5 s .. 5 min,
# log-uniform) and their buckets from 16 bits; per-objective logistic item quality, weighted
# by _QUALITY_W, from 12 bits per objective ([O * 4096], objective-major).
_U16 = (np.arange(1 << 16) + 0.5) / 65536
_DURATION16 = 5.0 * 60.0**_U16
_U12 = (np.arange(4096) + 0.5) / 4096
_QUALITY12 = (0.5 * _QUALITY_W[:, None] * np.log(_U12 / (1.0 - _U12))).reshape(-1)


def kuaiformer_bucket(seconds: np.ndarray, num_buckets: int = DURATION_BUCKETS) -> np.ndarray:
  """KuaiFormer's duration rule at `num_buckets` levels, shifted to 1..num_buckets (0 = pad).

  `min(int(min(d, 300) / 300 * num_buckets), num_buckets - 1) + 1` (DESIGN 2.1).
  """
  d = np.minimum(np.asarray(seconds, np.float64), 300.0)
  return np.minimum((d / 300.0 * num_buckets).astype(np.int32), num_buckets - 1) + 1


_DURATION_BUCKET16 = kuaiformer_bucket(_DURATION16)


def zipf_cdf(r: np.ndarray, n: np.ndarray, s: float) -> np.ndarray:
  """P(rank < r) for the continuous Zipf over ranks [0, n): density (x+1)^-s on [0, n)."""
  r, n = np.asarray(r, np.float64), np.asarray(n, np.float64)
  if abs(s - 1.0) < 1e-6:
    return np.log1p(r) / np.log1p(n)
  return ((r + 1.0)**(1.0 - s) - 1.0) / ((n + 1.0)**(1.0 - s) - 1.0)


def synthetic_spec(num_items: int = 10_000, num_categories: int = 20,
                   num_authors: int = 2_000) -> schema.DatasetSpec:
  """The `DatasetSpec` of a `SyntheticPlatform` (for building a model without one)."""
  return schema.DatasetSpec(
      name="synthetic", num_items=num_items,
      item_features=(("category", num_categories + 1), ("author", num_authors + 1),
                     ("duration", DURATION_BUCKETS + 1)),
      event_features=EVENT_FEATURES, user_features=USER_FEATURES, objectives=OBJECTIVES,
      behaviour_feature="behaviour")


class SyntheticPlatform:
  """Lazy simulator of a short-video platform; a `schema.SequenceSource`.

  Beyond the protocol it exposes the ground truth (`item_topic_rank`, `within_topic_prob`,
  `topic_prob`, `item_quality`, `user_profiles`) for tests and oracle baselines.
  `cache_events` bounds the LRU cache of generated users (total events; 0 disables it).
  """

  def __init__(self, num_users: int = 20_000, num_items: int = 10_000, num_topics: int = 100,
               num_categories: int = 20, num_authors: int = 2_000, zipf_exponent: float = 1.1,
               min_len: int = 20, max_len: int = 300, interests_per_user: int = 3,
               drift_prob: float = 0.02, seed: int = 0, cache_events: int = 2_000_000):
    checks = {
        "num_users": num_users >= 1, "num_items": num_items >= 1,
        "num_topics": 1 <= num_topics <= num_items, "num_categories": num_categories >= 1,
        "num_authors": num_authors >= 1, "zipf_exponent": zipf_exponent > 0,
        "min_len": min_len >= 1, "max_len": max_len >= min_len,
        "interests_per_user": interests_per_user >= 1, "drift_prob": 0 <= drift_prob <= 1,
        "seed": 0 <= seed < 2**63, "cache_events": cache_events >= 0,
    }
    for name, ok in checks.items():
      if not ok:
        raise ValueError(f"SyntheticPlatform: invalid {name}={locals()[name]!r}")
    self.num_users, self.num_items, self.num_topics = num_users, num_items, num_topics
    self.num_categories, self.num_authors = num_categories, num_authors
    self.zipf_exponent, self.min_len, self.max_len = zipf_exponent, min_len, max_len
    self.interests_per_user, self.drift_prob, self.seed = interests_per_user, drift_prob, seed
    self.spec = synthetic_spec(num_items, num_categories, num_authors)
    # Affine bijection j -> (a * j + b) mod N between slots j = rank * T + topic and items.
    h = int(hash_u64(seed, _S_BIJECTION, np.arange(2))[0])
    a = 1 + h % max(num_items - 1, 1)
    while math.gcd(a, num_items) != 1:
      a += 1
    self._a, self._b = a % num_items, (h >> 32) % num_items
    self._a_inv = pow(a, -1, num_items) if num_items > 1 else 0
    # Popularity samplers: a T-entry topic CDF; within-topic ranks by an inverse CDF for the
    # only two topic sizes, q and q + 1 (the first N % T topics).
    self._topic_cdf = zipf_cdf(np.arange(1, num_topics), num_topics, TOPIC_ZIPF)
    self._q, self._num_big = divmod(num_items, num_topics)
    sizes = np.array([self._q, self._q + 1], np.float64)
    one_minus_s = 1.0 - zipf_exponent
    if abs(one_minus_s) < 1e-6:
      self._rank_c, self._rank_pow = np.log1p(sizes), None
    else:
      self._rank_c, self._rank_pow = (sizes + 1.0)**one_minus_s - 1.0, 1.0 / one_minus_s
    groups = np.arange(14)    # (age, gender) demographic groups
    self._group_shift = (hash_u64(seed, _S_GROUP, groups) % np.uint64(num_topics)).astype(
        np.int64)
    # Objective logit offset of every profile [age, gender, activity, O]: base rate, activity
    # trend and a small seeded offset per profile-feature value.
    va, vg, vact = (v for _, v in USER_FEATURES)
    bias = [0.4 * (hash_uniform(seed, _S_PROFILE_BIAS + f, np.arange(v * 4)).reshape(v, 4) - 0.5)
            for f, v in enumerate((va, vg, vact))]
    self._profile_logit = (_BASE_LOGIT + bias[0][:, None, None] + bias[1][None, :, None]
                           + bias[2][None, None, :]
                           + _ACTIVITY_W * (np.arange(vact) - 2.5)[None, None, :, None])
    bands = len(ACTIVITY_PROBS)
    frac = (np.arange(bands)[:, None] + (np.arange(_LENGTH_LEVELS) + 0.5) / _LENGTH_LEVELS) / bands
    self._length_table = np.clip(np.rint(min_len * (max_len / min_len)**frac), min_len,
                                 max_len).astype(np.int64)     # [activity, level]
    self._lengths: np.ndarray | None = None
    # LRU cache of generated users, bounded by the total number of cached events (about
    # 20 bytes each): the 2M default holds the whole 20k-user default config (~40 MB).
    self._cache: collections.OrderedDict[int, dict[str, np.ndarray]] = collections.OrderedDict()
    self._cache_events, self._cached_events = cache_events, 0
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return self.num_users

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_cache"], state["_cached_events"], state["_lock"] = collections.OrderedDict(), 0, None
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  # ---------------------------------------------------------------- items
  def topic_sizes(self, topics: np.ndarray) -> np.ndarray:
    """Number of items in each topic (slots j < N with j % T == topic)."""
    return self._q + (np.asarray(topics, np.int64) < self._num_big)

  def _sample_ranks(self, u: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """Within-topic popularity ranks at quantiles u (inverse CDF of `zipf_cdf`)."""
    big = topics < self._num_big
    c = np.where(big, self._rank_c[1], self._rank_c[0])
    x = np.exp(u * c) if self._rank_pow is None else (1.0 + u * c)**self._rank_pow
    return np.minimum(x.astype(np.int64) - 1, self._q - 1 + big)

  def within_topic_prob(self, item_ids: np.ndarray) -> np.ndarray:
    """P(item | its topic) under the simulator's within-topic Zipf popularity."""
    topic, rank = self.item_topic_rank(item_ids)
    n = self.topic_sizes(topic)
    s = self.zipf_exponent
    return zipf_cdf(rank + 1, n, s) - zipf_cdf(rank, n, s)

  def topic_prob(self) -> np.ndarray:
    """[T] global topic popularity (before the demographic shift)."""
    return np.diff(self._topic_cdf, prepend=0.0, append=1.0)

  def item_topic_rank(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(topic, 0-based popularity rank within topic) of real item ids (>= 1)."""
    i = np.asarray(item_ids, np.int64) - 1
    j = ((i - self._b) % self.num_items) * self._a_inv % self.num_items
    return j % self.num_topics, j // self.num_topics

  def topic_rank_to_item(self, topics: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Item ids (1-based) of (topic, rank) pairs; the inverse of `item_topic_rank`."""
    j = np.asarray(ranks, np.int64) * self.num_topics + np.asarray(topics, np.int64)
    return (j * self._a + self._b) % self.num_items + 1

  def _item_bits(self, ids: np.ndarray) -> np.ndarray:
    """64 hash bits per item: [0, 16) duration level, then 4 x 12 bits of quality."""
    return hash_u64(self.seed, _S_ITEM, ids)

  @staticmethod
  def _quality_from_bits(h: np.ndarray) -> np.ndarray:
    return _QUALITY12[((h[..., None] >> _QUALITY_SHIFTS) & np.uint64(0xFFF)) + _QUALITY_OFFSETS]

  def item_quality(self, item_ids: np.ndarray) -> np.ndarray:
    """[..., O] per-objective item quality: its (weighted) logit offset per objective."""
    return self._quality_from_bits(self._item_bits(item_ids))

  def item_duration(self, item_ids: np.ndarray) -> np.ndarray:
    """Item durations in seconds (5 s .. 5 min, log-uniform), float64, of real item ids."""
    return _DURATION16[(self._item_bits(np.asarray(item_ids, np.int64)) & _LOW16)
                       .astype(np.int64)]

  def item_features(self, item_ids: np.ndarray) -> np.ndarray:
    """[..., 3] int32 (category, author, duration bucket); id 0 -> zeros."""
    ids = np.asarray(item_ids, np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > self.num_items):
      bad = ids[(ids < 0) | (ids > self.num_items)].flat[0]
      raise ValueError(f"item_ids: item id {int(bad)} out of range [0, {self.num_items}]")
    real = ids > 0
    safe = np.where(real, ids, 1)
    topic, _ = self.item_topic_rank(safe)
    c, t, a = self.num_categories, self.num_topics, self.num_authors
    h = self._item_bits(safe)
    meta = hash_u64(self.seed, _S_ITEM_META, safe)  # [0, 16) category noise, [32, 64) author
    noise = (meta & _LOW16).astype(np.int64)     # 0 .. 65535
    noisy = noise < int(CATEGORY_NOISE * 65536)
    category = np.where(noisy, 1 + noise * c // int(CATEGORY_NOISE * 65536), topic * c // t + 1)
    start = topic * a // t
    width = np.maximum((topic + 1) * a // t - start, 1)
    author = (start + (meta >> np.uint64(32)).astype(np.int64) % width) % a + 1
    duration = _DURATION_BUCKET16[(h & _LOW16).astype(np.int64)]
    out = np.stack([category, author, duration], axis=-1).astype(np.int32)
    out *= real[..., None]
    return out

  # ---------------------------------------------------------------- users
  def _profiles(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([n, 3] int32 profile (age, gender, activity), [n] int64 lengths) by hashing.

    Integer-only arithmetic on one 64-bit hash, so scalar and vector calls agree exactly.
    """
    h = hash_u64(self.seed, _S_USER, np.asarray(index, np.int64))
    age = 1 + ((h & _LOW16).astype(np.int64) * 7 >> 16)
    gender = 1 + ((h >> np.uint64(16)) & np.uint64(1)).astype(np.int64)
    activity = 1 + np.searchsorted(
        _ACTIVITY_EDGES16, ((h >> np.uint64(17)) & _LOW16).astype(np.int64), side="right")
    level = ((h >> np.uint64(40)) & np.uint64(_LENGTH_LEVELS - 1)).astype(np.int64)
    length = self._length_table[activity - 1, level]
    return np.stack([age, gender, activity], axis=-1).astype(np.int32), length

  def _profile(self, index: int) -> tuple[int, int, int, int]:
    """`_profiles` of one user in Python ints, (age, gender, activity, length); far cheaper."""
    h = _hash_int(self.seed, _S_USER, index)
    age = 1 + ((h & 0xFFFF) * 7 >> 16)
    gender = 1 + ((h >> 16) & 1)
    activity = 1 + int(np.searchsorted(_ACTIVITY_EDGES16, (h >> 17) & 0xFFFF, side="right"))
    length = int(self._length_table[activity - 1, (h >> 40) & (_LENGTH_LEVELS - 1)])
    return age, gender, activity, length

  def lengths(self) -> np.ndarray:
    """[num_users] int64 lengths, from the profile hash alone (no user is generated)."""
    if self._lengths is None:
      chunk = 1 << 20
      lengths = np.concatenate([
          self._profiles(np.arange(lo, min(lo + chunk, self.num_users)))[1]
          for lo in range(0, self.num_users, chunk)])
      lengths.setflags(write=False)
      self._lengths = lengths
    return self._lengths

  def user_profiles(self, users: np.ndarray) -> np.ndarray:
    """[n, 3] int32 profile features (age, gender, activity) of user indices."""
    return self._profiles(np.asarray(users, np.int64))[0]

  def user(self, index: int) -> Mapping[str, np.ndarray]:
    """One user's full sequence (SEQ_* keys); read-only arrays, cached (LRU)."""
    index = int(index)
    if not 0 <= index < self.num_users:
      raise ValueError(f"user index {index} out of range [0, {self.num_users})")
    with self._lock:
      seq = self._cache.get(index)
      if seq is not None:
        self._cache.move_to_end(index)
        return seq
    seq = self._generate(index)
    n = len(seq[schema.SEQ_ITEM_IDS])
    if n <= self._cache_events:
      with self._lock:
        if index not in self._cache:
          self._cache[index] = seq
          self._cached_events += n
        while self._cached_events > self._cache_events:
          _, old = self._cache.popitem(last=False)
          self._cached_events -= len(old[schema.SEQ_ITEM_IDS])
    return seq

  def _generate(self, index: int) -> dict[str, np.ndarray]:
    """The generative story of the module docstring, vectorised over the n events."""
    age, gender, activity, n = self._profile(index)
    shift = int(self._group_shift[(age - 1) * 2 + (gender - 1)])
    k, t = self.interests_per_user, self.num_topics
    rng = np.random.default_rng([self.seed, index])
    init = rng.random(3 * k + 4)     # slot weights, propensities, initial slot topics
    ev = rng.random((16 + REPEAT_RESAMPLE_ROUNDS, n))
    ar = np.arange(n)
    # Topic draws: k initial slots, n drift replacements, n exploration topics (unshifted).
    draws = np.searchsorted(self._topic_cdf, np.concatenate([init[k + 4:2 * k + 4], ev[0], ev[1]]),
                            side="right")
    shifted = np.concatenate([init[2 * k + 4:], ev[2]]) < DEMOGRAPHIC_PROB
    interest_topics = np.where(shifted, (draws[:k + n] + shift) % t, draws[:k + n])
    slot_topic0, new_topic, explore_topic = interest_topics[:k], interest_topics[k:], draws[k + n:]
    weights = -np.log1p(-init[:k])     # Dirichlet(1) slot weights (unnormalised)
    # Drift: before event i, with prob drift_prob, slot changed_slot[i] takes new_topic[i].
    change = ev[3] < self.drift_prob
    changed_slot = (ev[4] * k).astype(np.int64)
    mark = np.where(change & (changed_slot == np.arange(k)[:, None]), ar, -1)   # [k, n]
    last = np.maximum.accumulate(mark, axis=1)
    slot_topics = np.where(last >= 0, new_topic[last], slot_topic0[:, None])
    cum_w = np.cumsum(weights)
    slot = np.minimum(np.searchsorted(cum_w, ev[5] * cum_w[-1], side="right"), k - 1)
    explore = ev[6] < EXPLORE_PROB
    topic = np.where(explore, explore_topic, slot_topics[slot, ar])
    rank = self._sample_ranks(ev[7], topic)
    items = self.topic_rank_to_item(topic, rank)
    # Little re-consumption: redraw repeats (within their topic) for a few rounds.
    for r in range(REPEAT_RESAMPLE_ROUNDS):
      order = np.argsort(items, kind="stable")
      rep = order[1:][items[order[1:]] == items[order[:-1]]]    # all but first occurrences
      if not rep.size:
        break
      items[rep] = self.topic_rank_to_item(topic[rep], self._sample_ranks(ev[16 + r, rep],
                                                                          topic[rep]))
    # Labels: click, then long_view / like / follow given a click.
    u = init[k:k + 4]
    user_logit = self._profile_logit[age, gender, activity] + 0.5 * np.log(u / (1.0 - u))
    slot_affinity = weights * (k / weights.sum()) - 0.5    # > 0 for above-average slots
    affinity = np.where(explore, -1.0, slot_affinity[slot])
    bits = self._item_bits(items)
    logits = user_logit + self._quality_from_bits(bits) + _AFFINITY_W * affinity[:, None]
    hit = ev[8:12].T < 1.0 / (1.0 + np.exp(-logits))           # [n, O]
    hit[:, 1:] &= hit[:, :1]
    labels = hit.view(np.int8)
    behaviour = labels @ _BEHAVIOUR_BITS + 1
    # Watch time from the labels; gaps from session breaks (the first event starts one).
    frac = np.where(hit[:, 1], 0.6 + 0.4 * ev[12],
                    np.where(hit[:, 0], 0.15 + 0.45 * ev[12], 0.15 * ev[12]))
    watch = _DURATION16[bits & _LOW16] * frac
    brk = ev[13] < SESSION_BREAK
    brk[0] = True
    gap = np.where(brk, 600.0 * 300.0**ev[14], watch + 1.0 + 20.0 * ev[15])
    gap_bucket = np.searchsorted(_GAP_EDGES, gap, side="right") + 1
    events = np.empty((n, 3), np.int32)
    events[:, 0], events[:, 1], events[:, 2] = behaviour, kuaiformer_bucket(watch), gap_bucket
    seq = {schema.SEQ_ITEM_IDS: items.astype(np.int32),
           schema.SEQ_EVENT_FEATURES: events,
           schema.SEQ_LABELS: labels,
           schema.SEQ_USER_FEATURES: np.array([age, gender, activity], np.int32)}
    for arr in seq.values():
      arr.setflags(write=False)
    return seq
