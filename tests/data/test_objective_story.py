"""The objective-story platform: each objective follows its stated cause, and the history hides
what the story says it hides."""
import numpy as np
import pytest

from configs import base
from mpformer_jax.data import schema
from mpformer_jax.data import objective_story as story
from mpformer_jax.data.objective_story import ObjectiveStory, preferred_bucket
from mpformer_jax.data.registry import make_source
from mpformer_jax.data.synthetic import SyntheticPlatform

USERS = 600


@pytest.fixture(scope="module")
def world():
  platform = SyntheticPlatform(num_users=USERS)
  source = ObjectiveStory(platform)
  rows = []
  for i in range(USERS):
    seq, plain = source.user(i), platform.user(i)
    items = seq[schema.SEQ_ITEM_IDS]
    np.testing.assert_array_equal(items, plain[schema.SEQ_ITEM_IDS])        # same events
    np.testing.assert_array_equal(seq[schema.SEQ_LABELS][:, 0], plain[schema.SEQ_LABELS][:, 0])
    topic, _ = platform.item_topic_rank(items)
    click = seq[schema.SEQ_LABELS][:, 0] > 0
    feats = platform.item_features(items)
    rows.append(dict(
        labels=seq[schema.SEQ_LABELS], events=seq[schema.SEQ_EVENT_FEATURES],
        match=np.abs(feats[:, 2] - preferred_bucket(seq[schema.SEQ_USER_FEATURES][0])) <= 1,
        loved=np.isin(topic, source.loved_topics(i, topic[click])), duration=feats[:, 2],
        views=story._earlier_counts(feats[:, 1], click)))
  return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def test_labels_follow_their_causes(world):
  lab, click = world["labels"], world["labels"][:, 0] > 0
  assert not (lab[:, 1:] > 0)[~click].any()                 # every label needs a click
  rate = lambda col, where: lab[click & where, col].mean()
  # long_view: the profile's preferred length band, 0.6 against 0.08.
  assert rate(1, world["match"]) == pytest.approx(story.LONG_VIEW_MATCH, abs=0.02)
  assert rate(1, ~world["match"]) == pytest.approx(story.LONG_VIEW_OTHER, abs=0.01)
  # like: loved topics, 0.4 against 0.02.
  assert rate(2, world["loved"]) == pytest.approx(story.LIKE_LOVED, abs=0.02)
  assert rate(2, ~world["loved"]) == pytest.approx(story.LIKE_OTHER, abs=0.01)
  # follow: rises with earlier clicked items by the author, as the logistic says.
  for views in range(story.FOLLOW_MAX_VIEWS + 1):
    where = np.minimum(world["views"], story.FOLLOW_MAX_VIEWS) == views
    want = 1 / (1 + np.exp(-(story.FOLLOW_BASE + story.FOLLOW_PER_VIEW * views)))
    assert where[click].sum() > 2000
    assert rate(3, where) == pytest.approx(want, abs=max(0.005, 0.3 * want))


def test_the_history_hides_long_views(world):
  lab, ev = world["labels"], world["events"]
  bits = ev[:, 0] - 1
  np.testing.assert_array_equal(bits, lab[:, 0] * 1 + lab[:, 2] * 4 + lab[:, 3] * 8)
  # Watch time says nothing about the long view: same distribution given the item's length.
  short = world["duration"] == 2
  lv = lab[:, 1] > 0
  assert (short & lv).sum() > 300 and (short & ~lv & (lab[:, 0] > 0)).sum() > 300
  assert ev[short & lv, 1].mean() == pytest.approx(ev[short & ~lv & (lab[:, 0] > 0), 1].mean(),
                                                   abs=0.1)


def test_preferred_bucket_spans_the_duration_buckets():
  np.testing.assert_array_equal(preferred_bucket(np.arange(1, 8)), [1, 2, 4, 5, 7, 8, 10])


def test_config_switch_and_clear_errors():
  c = base.get_config("tiny")
  c.data.objective_story = True
  assert isinstance(make_source(c.data), ObjectiveStory)
  c.data.recurring.items = 4
  with pytest.raises(ValueError, match="separate workloads"):
    make_source(c.data)
  c.data.recurring.items, c.data.name = 0, "ml1m"
  with pytest.raises(ValueError, match="objective_story=True gives the synthetic platform"):
    make_source(c.data)
