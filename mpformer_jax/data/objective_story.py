"""Objective stories: a synthetic platform where each objective has its own cause (issue 19).

Why: on the plain platform every objective is a noisy function of the same thing (a click on
a recent interest, then the item's quality), so one shared target already captures them and
MPFormer's mechanisms have nothing to do. Here each objective is driven by something else,
and some of those causes are visible only to one mechanism, so an ablation can show a
mechanism's effect where the story says it should be and no effect where it should not.

Generative story, on top of the platform's users, items and clicks (`data.objective_story`):
  * click: the platform's (an item of a recent, drifting interest; DESIGN's short-video
    setting). Unchanged.
  * long_view <- the user's preferred item length, set by the profile: age group a prefers
    duration buckets within 1 of `preferred_bucket(a)`; a clicked item in that band is
    long-viewed with probability LONG_VIEW_MATCH, else LONG_VIEW_OTHER. The history does not
    show it: the behaviour feature of every event drops the long_view bit and its watch time
    is the item's duration times a uniform fraction, whatever the labels. Only the user's
    profile (the user token) says which lengths a user long-views.
  * like <- a topic the user loves: of the topics the user clicked at least
    LOVED_MIN_CLICKS times (or else of all clicked topics), the one with the smallest hash
    of user and topic (a trait of the user, not of the moment); a clicked item in it is
    liked with probability LIKE_LOVED, elsewhere LIKE_OTHER. It holds a minority of a user's
    clicks (median 29%), so the liked events (the behaviour feature's like bit) carry the
    like signal and the clicks at large dilute it: objective-conditioned attention over
    behaviour types can pick them out.
  * follow <- repeated exposure to an author: a clicked item is followed with probability
    sigmoid(FOLLOW_BASE + FOLLOW_PER_VIEW * min(earlier clicked items by its author, 3)),
    counted over the whole history, so a recency preference does not help it.
Labels other than click still require a click. What the story predicts for each mechanism
(MPFormer minus the ablation without it, `benchmarks/multi_objective.py --dataset story`):
`user_token` gains on long_view and nowhere else (the profile is its only route);
`attention_bias` gains on like and nowhere else (the like bits); `recency_bias` gains on click
at most, not on follow (whole-history counts); `objective_embedding` gains on the three
non-click objectives at most; `target_weights` gains on the merged exposure (users' objective
mixes differ by profile and loved topic).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from mpformer_jax.data import schema
from mpformer_jax.data.platform_variant import PlatformVariant
from mpformer_jax.data.synthetic import DURATION_BUCKETS, hash_u64, kuaiformer_bucket

LONG_VIEW_MATCH, LONG_VIEW_OTHER = 0.6, 0.08
LIKE_LOVED, LIKE_OTHER, LOVED_TOPICS, LOVED_MIN_CLICKS = 0.4, 0.02, 1, 2
FOLLOW_BASE, FOLLOW_PER_VIEW, FOLLOW_MAX_VIEWS = -6.0, 1.0, 3
AGES = 7                      # age values 1..7 (synthetic.USER_FEATURES)
_S_LABELS, _S_LOVED, _S_WATCH = 51, 52, 53
_BITS = np.array([1, 0, 4, 8], np.int32)   # behaviour bits shown: click, like, follow


def preferred_bucket(age: np.ndarray) -> np.ndarray:
  """The duration bucket (1..DURATION_BUCKETS) an age group (1..AGES) long-views most."""
  return 1 + (np.asarray(age) - 1) * (DURATION_BUCKETS - 1) // (AGES - 1)


class ObjectiveStory(PlatformVariant):
  """A `SequenceSource`: the platform's users with one cause per objective (module doc)."""

  def loved_topics(self, index: int, clicked_topics: np.ndarray) -> np.ndarray:
    """The user's loved topics (module docstring) from the topics of its clicked events."""
    seen, counts = np.unique(clicked_topics, return_counts=True)
    if (counts >= LOVED_MIN_CLICKS).any():
      seen = seen[counts >= LOVED_MIN_CLICKS]
    h = hash_u64(self.base.seed, _S_LOVED, np.uint64(index) * np.uint64(self.base.num_topics)
                 + seen.astype(np.uint64))
    return seen[np.argsort(h, kind="stable")[:LOVED_TOPICS]]

  def user(self, index: int) -> Mapping[str, np.ndarray]:
    seq = dict(self.base.user(index))
    items = seq[schema.SEQ_ITEM_IDS]
    n, age = len(items), int(seq[schema.SEQ_USER_FEATURES][0])
    click = seq[schema.SEQ_LABELS][:, 0] > 0
    feats = self.base.item_features(items)
    author, duration = feats[:, 1], feats[:, 2]
    topic, _ = self.base.item_topic_rank(items)
    keys = (np.uint64(index) * np.uint64(4 * max(self.base.max_len, n))
            + np.arange(4 * n, dtype=np.uint64))
    u = (hash_u64(self.base.seed, _S_LABELS, keys) >> np.uint64(11)).astype(np.float64)
    u = (u * 2.0**-53).reshape(4, n)
    match = np.abs(duration - preferred_bucket(age)) <= 1
    long_view = u[0] < np.where(match, LONG_VIEW_MATCH, LONG_VIEW_OTHER)
    loved = np.isin(topic, self.loved_topics(index, topic[click])) if click.any() else (
        np.zeros(n, bool))
    like = u[1] < np.where(loved, LIKE_LOVED, LIKE_OTHER)
    views = np.minimum(_earlier_counts(author, click), FOLLOW_MAX_VIEWS)
    follow = u[2] < 1.0 / (1.0 + np.exp(-(FOLLOW_BASE + FOLLOW_PER_VIEW * views)))
    labels = np.stack([click, long_view & click, like & click, follow & click], 1)
    watch = self.base.item_duration(items) * (0.15 + 0.85 * u[3])
    events = np.array(seq[schema.SEQ_EVENT_FEATURES], copy=True)
    events[:, 0] = labels.astype(np.int32) @ _BITS + 1        # no long_view bit
    events[:, 1] = kuaiformer_bucket(watch)
    seq[schema.SEQ_LABELS] = labels.astype(np.int8)
    seq[schema.SEQ_EVENT_FEATURES] = events
    return seq


def _earlier_counts(keys: np.ndarray, counted: np.ndarray) -> np.ndarray:
  """For every position, how many earlier positions with `counted` share its key."""
  n = len(keys)
  order = np.lexsort((np.arange(n), keys))          # by key, then position
  k, c = keys[order], counted[order].astype(np.int64)
  run_start = np.r_[True, k[1:] != k[:-1]]
  csum = np.cumsum(c) - c                            # counted before, overall
  base = np.maximum.accumulate(np.where(run_start, csum, 0))
  out = np.empty(n, np.int64)
  out[order] = csum - base
  return out
