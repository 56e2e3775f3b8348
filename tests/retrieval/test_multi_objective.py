"""The merged multi-objective list: quotas, per-interest fill, dedupe, exact length."""
import numpy as np

from mpformer_jax.retrieval.multi_objective import merged_lists


def test_merged_list_follows_quotas_and_dedupes():
  # 8 items on the axes of a 4-d space; objective 0 likes items 1-4, objective 1 items 3-6.
  d = 4
  items = np.zeros((9, d), np.float32)
  for i in range(1, 9):
    items[i, (i - 1) % d] = 1.0 + 0.1 * i
  interests = np.zeros((1, 2, 2, d), np.float32)
  interests[0, 0, 0] = [1, 0, 0, 0]
  interests[0, 0, 1] = [0, 1, 0, 0]
  interests[0, 1, 0] = [0, 0, 1, 0]
  interests[0, 1, 1] = [0, 0, 0, 1]
  lists = merged_lists(interests, items, np.array([[0.75, 0.25]]), n=4, minimum=1, c=1.0)
  assert lists.shape == (1, 4)
  got = lists[0]
  assert len(set(got.tolist())) == 4 and 0 not in got  # exactly n distinct real items
  # quotas (3, 1): objective 0 fills 3 slots from items on axes 0/1 (ids 1, 2, 5, 6)
  from_obj0 = [i for i in got if (i - 1) % d in (0, 1)]
  assert len(from_obj0) == 3
  # with weights reversed, objective 1's axes (ids 3, 4, 7, 8) take 3 slots
  lists = merged_lists(interests, items, np.array([[0.25, 0.75]]), n=4, minimum=1, c=1.0)
  assert len([i for i in lists[0] if (i - 1) % d in (2, 3)]) == 3
