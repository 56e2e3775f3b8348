"""Artifact publishing (atomic, pruned, checksummed) and the request encoding, by hand."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mpformer_jax.serving import artifact
from mpformer_jax.serving.encoding import HistoryEncoder, RequestError, Vocabulary


def _write(files: dict):
  def write(tmp):
    for name, text in files.items():
      with open(os.path.join(tmp, name), "w") as f:
        f.write(text)
    return {"step": 1}
  return write


def test_publish_numbers_versions_keeps_the_newest_and_checksums(tmp_path):
  root = str(tmp_path)
  paths = [artifact.publish(root, _write({"a.txt": str(i)}), keep=2) for i in range(3)]
  assert [os.path.basename(p) for p in paths] == ["v000001", "v000002", "v000003"]
  assert artifact.versions(root) == paths[1:] and artifact.latest(root) == paths[2]
  manifest = artifact.verify(paths[2])
  assert manifest["format"] == artifact.FORMAT and manifest["files"]["a.txt"]["bytes"] == 1
  with open(os.path.join(paths[2], "a.txt"), "w") as f:
    f.write("9")
  with pytest.raises(artifact.ArtifactError, match="checksum of a.txt"):
    artifact.verify(paths[2])
  os.remove(os.path.join(paths[2], "a.txt"))
  with pytest.raises(artifact.ArtifactError, match="a.txt is listed in the manifest but missing"):
    artifact.verify(paths[2])


def test_a_failed_write_publishes_nothing(tmp_path):
  def broken(tmp):
    open(os.path.join(tmp, "half.bin"), "w").close()
    raise OSError("disk full")
  with pytest.raises(OSError, match="disk full"):
    artifact.publish(str(tmp_path), broken)
  assert os.listdir(tmp_path) == []
  with pytest.raises(artifact.ArtifactError, match="no published artifact"):
    artifact.latest(str(tmp_path))
  with pytest.raises(artifact.ArtifactError, match="format"):
    (tmp_path / "v000001").mkdir()
    (tmp_path / "v000001" / "manifest.json").write_text(json.dumps({"format": "other"}))
    artifact.verify(str(tmp_path / "v000001"))


ENCODING = {"max_len": 3, "dataset_objectives": ["view", "cart", "buy"],
            "event_features": [["behaviour", 9], ["time_gap", 9]], "user_features": [["age", 5]],
            "behaviours": {"2": ["view"], "1": ["cart"], "0": ["buy", "cart"]},
            "gap_edges_s": [10., 30., 60., 300., 1800., 7200., 86400.]}


@pytest.fixture
def encoder():
  items = Vocabulary(np.array(["b", "a", "c", "10"]), 1)       # dense ids 1..4
  users = Vocabulary(np.array(["u0", "u1"]), 0)
  item_features = np.arange(10, 15, dtype=np.int32)[:, None]   # feature of id k: 10 + k
  return HistoryEncoder(ENCODING, items, item_features, users,
                        np.array([[3], [4]], np.int32), max_n=20)


def test_encoding_by_hand(encoder):
  e = encoder.encode({"user": "u1", "n": 2, "history": [
      {"item": "a", "behaviour": "2", "time": 0},      # dropped: older than the newest 3
      {"item": "zz", "time": 5},                       # unknown: dropped, no time gap
      {"item": 10, "behaviour": "0", "time": 20},      # gap 20 s -> bucket 2
      {"item": "c", "objectives": ["view", "buy"], "time": 20},   # gap 0 -> bucket 1
      {"item": "b", "time": 100_000}]}, default_n=5)   # gap 99,980 s -> bucket 8
  np.testing.assert_array_equal(e.history_ids, [4, 3, 1])
  np.testing.assert_array_equal(e.history_item_features[:, 0], [14, 13, 11])
  # behaviour = objective bitmask + 1: buy+cart = 0b110 + 1, view+buy = 0b101 + 1, none = 0
  np.testing.assert_array_equal(e.history_event_features, [[7, 2], [6, 1], [0, 8]])
  np.testing.assert_array_equal(e.user_features, [4])
  assert (e.n, e.events, e.unknown_items, e.truncated, e.used, e.known_user) == (2, 5, 1, 1, 3,
                                                                                  True)
  short = encoder.encode({"history": [{"item": "c", "time": 7}]}, default_n=5)
  np.testing.assert_array_equal(short.history_ids, [0, 0, 3])   # left-padded
  assert short.history_event_features[-1, 1] == 8     # a first event starts a session
  assert short.n == 5 and not short.known_user


@pytest.mark.parametrize("request_,message", [
    ({"history": [{"item": "a", "time": float("nan")}]}, "time must be a finite number"),
    ({"history": [{"item": "a", "objectives": ["like"]}]}, "objectives must be a list of"),
    ({"history": [{"item": "a", "features": {"time_gap": 3}}]}, "not a coded event feature"),
    ({"history": [{"item": None}]}, "item must be an item id"),
    ({"history": ["a"]}, "history[0] must be an object"),
    ({"history": [], "n": True}, "n must be an integer"),
    ({"history": [], "user": 1.5}, "user must be an id"),
])
def test_bad_requests_name_the_field(encoder, request_, message):
  with pytest.raises(RequestError) as e:
    encoder.encode(request_, default_n=5)
  assert message in str(e.value)
