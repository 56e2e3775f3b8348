"""TFDS builders, raw-file parsers and the TfdsSource, on real ML-100K and handmade folders."""
from __future__ import annotations

import collections
import os
import pathlib
import pickle
import shutil

import ml_collections
import numpy as np
import pytest

from mpformer_jax.data import pipeline
from mpformer_jax.data import raw_formats
from mpformer_jax.data import registry
from mpformer_jax.data import schema
from mpformer_jax.data import tfds_builders
from mpformer_jax.data import tfds_source

DATA = pathlib.Path(os.environ.get(
    "MPFORMER_DATA", pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"))
ML100K = DATA / "ml-100k"


def _load(name, data_dir, manual_dir=None):
  """Build (once) and open a named dataset, as `registry.make_source` does."""
  return tfds_source.load_source(ml_collections.ConfigDict(
      {"name": name, "dir": str(manual_dir or ""), "tfds_dir": str(data_dir)}))


def _finished_builds(tfds_dir, name):
  return list(pathlib.Path(tfds_dir).glob(f"{name}/*/1.0.0"))


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def ml100k(tfds_dir):
  # The parent folder: the builder resolves its ml-100k/ subfolder.
  return _load("ml100k", tfds_dir, DATA)


def _raw_ml100k_sequences():
  """Independent oracle: per raw user, (item, rating) sorted by time, ties in file order."""
  rows = collections.defaultdict(list)
  with open(ML100K / "ml-100k.inter", encoding="utf-8") as f:
    next(f)
    for line in f:
      user, item, rating, ts = line.rstrip("\n").split("\t")
      rows[int(user)].append((float(ts), int(item), float(rating)))
  return {u: [(i, r) for _, i, r in sorted(ev, key=lambda e: e[0])] for u, ev in rows.items()}


def test_ml100k_counts_and_spec(ml100k):
  spec = ml100k.spec
  assert len(ml100k) == 943 and spec.num_items == 1682
  assert ml100k.lengths().sum() == 100_000 and ml100k.lengths().dtype == np.int64
  assert spec.objectives == ("watch", "like", "love") and spec.behaviour_feature == "behaviour"
  assert spec.event_features == (("behaviour", 9), ("time_gap", 9))
  assert spec.user_features == (("gender", 3), ("age", 8), ("occupation", 22))
  assert spec.item_features == (("genre1", 19), ("genre2", 19), ("genre3", 19), ("year", 16))
  seen = np.unique(np.concatenate([ml100k.user(u)[schema.SEQ_ITEM_IDS]
                                   for u in range(len(ml100k))]))
  np.testing.assert_array_equal(seen, np.arange(1, 1683))


def test_ml100k_hand_checked_events(ml100k):
  # ml-100k.inter: user 196 rated 242 (3), 286 (5), 269 (3) at 881250949 (file order),
  # then 306 (4) 72 s later and 340 (3) 24 s after that. Raw ids 1..N are already dense.
  seq = ml100k.user(195)
  np.testing.assert_array_equal(seq[schema.SEQ_ITEM_IDS][:5], [242, 286, 269, 306, 340])
  np.testing.assert_array_equal(seq[schema.SEQ_LABELS][:5],
                                [[1, 0, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]])
  events = seq[schema.SEQ_EVENT_FEATURES][:5]
  np.testing.assert_array_equal(events[:, 0], [2, 8, 2, 4, 2])    # bitmask + 1
  np.testing.assert_array_equal(events[:, 1], [8, 1, 1, 4, 2])    # first = session start
  np.testing.assert_array_equal(seq[schema.SEQ_USER_FEATURES], [1, 5, 21])   # M, 45-49, writer
  # 242 Kolya (1996) Comedy; 1682 (1991) Drama.
  np.testing.assert_array_equal(ml100k.item_features(np.array([0, 242, 1682])),
                                [[0, 0, 0, 0], [5, 0, 0, 11], [8, 0, 0, 7]])


def test_ml100k_order_labels_and_ranges(ml100k):
  raw = _raw_ml100k_sequences()
  assert sorted(raw) == list(range(1, 944))
  bits = np.array([1, 2, 4])
  for u in range(len(ml100k)):
    seq = ml100k.user(u)
    schema.validate_sequence(ml100k.spec, seq, u)
    items, ratings = zip(*raw[u + 1])
    np.testing.assert_array_equal(seq[schema.SEQ_ITEM_IDS], items)
    ratings = np.asarray(ratings)
    expected = np.stack([ratings > 0, ratings >= 4, ratings == 5], -1)
    np.testing.assert_array_equal(seq[schema.SEQ_LABELS], expected)
    np.testing.assert_array_equal(seq[schema.SEQ_EVENT_FEATURES][:, 0], expected @ bits + 1)
    assert seq[schema.SEQ_EVENT_FEATURES][0, 1] == 8
  corpus = pipeline.item_corpus_features(ml100k)
  assert corpus.shape == (1683, 4) and (corpus[1:, 3] > 0).mean() > 0.99
  for col, (_, vocab) in enumerate(ml100k.spec.item_features):
    assert 0 <= corpus[:, col].min() and corpus[:, col].max() < vocab


def test_pipeline_runs_on_ml100k(ml100k):
  logq = pipeline.target_log_q(ml100k)
  it = pipeline.train_iterator(ml100k, max_len=50, batch_size=32, seed=0, logq_table=logq)
  for _ in range(3):
    batch = next(it)
    schema.validate_batch(ml100k.spec, batch)
    assert batch[schema.HISTORY_EVENT_FEATURES].shape == (32, 50, 2)
  test = pipeline.eval_examples(ml100k, split="test", max_len=50, logq_table=logq)
  assert test[schema.TARGET_ID].shape == (943,)
  last = [ml100k.user(u)[schema.SEQ_ITEM_IDS][-1] for u in test[schema.USER_INDEX]]
  np.testing.assert_array_equal(test[schema.TARGET_ID], last)


def test_reopen_registry_and_pickle(ml100k, tfds_dir):
  cfg = ml_collections.ConfigDict({"name": "ml100k", "dir": str(DATA),
                                   "tfds_dir": str(tfds_dir)})
  again = registry.make_source(cfg)      # same inputs: the same build, not rebuilt
  assert isinstance(again, tfds_source.TfdsSource) and again.spec == ml100k.spec
  assert again.data_dir == ml100k.data_dir and len(_finished_builds(tfds_dir, "ml100k")) == 1
  np.testing.assert_array_equal(again.lengths(), ml100k.lengths())
  clone = pickle.loads(pickle.dumps(again))
  np.testing.assert_array_equal(clone.user(7)[schema.SEQ_LABELS],
                                ml100k.user(7)[schema.SEQ_LABELS])
  with pytest.raises(ValueError, match="out of range"):
    ml100k.item_features(np.array([1683]))
  with pytest.raises(ValueError, match="out of range"):
    ml100k.user(943)


# ----------------------------------------------------------------------------- bad input
def _write(folder: pathlib.Path, files: dict[str, str], encoding="utf-8") -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  for name, text in files.items():
    (folder / name).write_text(text, encoding=encoding)
  return folder


SMALL_100K = {
    "ml-100k.inter": ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                      "7\t30\t5\t100\n7\t10\t2\t50\n9\t10\t4\t10\n7\t20\t4\t100\n9\t30\t1\t4000\n"),
    "ml-100k.user": ("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                     "7\t17\tF\tstudent\t1\n9\t60\tM\tpilot\t2\n"),
    "ml-100k.item": ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                     "10\tA\t1939\tunknown Western\n20\tB\tV\tDrama Sci-Fi War Horror\n"),
}


def test_small_ml100k_parse(tmp_path):
  parsed = raw_formats.parse_ml100k(_write(tmp_path, SMALL_100K))
  assert parsed.spec.num_items == 3 and len(parsed) == 2   # items 10, 20, 30 -> 1, 2, 3
  np.testing.assert_array_equal(parsed.user_ids, [7, 9])
  np.testing.assert_array_equal(parsed.user(0)[schema.SEQ_ITEM_IDS], [1, 3, 2])  # tie: file order
  np.testing.assert_array_equal(parsed.user(0)[schema.SEQ_EVENT_FEATURES],
                                [[2, 8], [8, 3], [4, 1]])    # gaps: start, 50 s, 0 s
  np.testing.assert_array_equal(parsed.user(1)[schema.SEQ_EVENT_FEATURES], [[4, 8], [2, 6]])
  np.testing.assert_array_equal(parsed.user_features, [[2, 1, 19], [1, 7, 0]])
  np.testing.assert_array_equal(parsed.item_table,
                                [[0, 0, 0, 0], [18, 0, 0, 1], [8, 15, 17, 0], [0, 0, 0, 0]])


def test_missing_files_name_the_file(tmp_path, monkeypatch):
  partial = tmp_path / "raw"
  partial.mkdir()
  for name in ("ml-100k.inter", "ml-100k.item"):
    shutil.copy(ML100K / name, partial / name)
  with pytest.raises(FileNotFoundError, match=r"ml-100k\.user(.|\n)*recbole"):
    _load("ml100k", tmp_path / "tfds", partial)
  with pytest.raises(FileNotFoundError, match=r"ml-100k\.inter"):
    _load("ml100k", tmp_path / "tfds", tmp_path / "none")
  monkeypatch.delenv(tfds_source.RAW_DATA_ENV, raising=False)
  with pytest.raises(FileNotFoundError, match="MPFORMER_DATA"):
    _load("ml100k", tmp_path / "tfds")
  # The builder alone (manual dir absent): TFDS's assertion becomes a FileNotFoundError.
  builder = tfds_builders.Ml100k(data_dir=tmp_path / "tfds2", file_format="array_record")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with pytest.raises(FileNotFoundError, match=r"ml-100k\.inter"):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=tmp_path / "none"))
  assert not _finished_builds(tmp_path / "tfds", "ml100k")


@pytest.mark.parametrize("name,bad_line,lineno,match", [
    ("ml-100k.inter", "7\t30\tfive\t100", 3, "rating 'five' is not a number"),
    ("ml-100k.inter", "7\t30\t5", 4, "expected 4 tab-separated fields"),
    ("ml-100k.user", "7\tx\tF\tstudent\t1", 2, "age 'x' is not an integer"),
])
def test_ml100k_malformed_lines(tmp_path, name, bad_line, lineno, match):
  files = dict(SMALL_100K)
  lines = files[name].splitlines()
  lines[lineno - 1] = bad_line
  files[name] = "\n".join(lines) + "\n"
  folder = _write(tmp_path / "raw", files)
  with pytest.raises(raw_formats.RawFormatError, match=rf"{name}:{lineno}: {match}"):
    _load("ml100k", tmp_path / "tfds", folder)
  assert not _finished_builds(tmp_path / "tfds", "ml100k")


# ----------------------------------------------------------------------------- ML-1M format
SMALL_1M = {
    "sequences.txt": "2 3\n1 1\n1 2\n2 1\n1 3\n2 2\n2 3\n",
    "item_to_movie_id.txt": "1 10\n2 20\n3 30\n",
    "user_to_original_user_id.txt": "1 100\n2 200\n",
    "movies.dat": ("10::Amélie (2001)::Comedy|Romance\n20::Old One (1925)::Documentary\n"
                   "30::No Year::Film-Noir|Thriller|War|Western\n"),
    "users.dat": "100::F::1::10::48067\n200::M::56::0::70072\n",
    "incomplete_users.txt": "2\n",
}


def test_small_ml1m_build(tmp_path):
  folder = _write(tmp_path / "raw" / "ml-1m", SMALL_1M, encoding="latin-1")
  src = _load("ml1m", tmp_path / "tfds", tmp_path / "raw")
  assert src.spec.num_items == 3 and len(src) == 2 and src.spec.event_features == ()
  assert src.spec.objectives == ("watch",) and src.spec.behaviour_feature is None
  np.testing.assert_array_equal(src.lengths(), [3, 4])
  np.testing.assert_array_equal(src.user(0)[schema.SEQ_ITEM_IDS], [1, 2, 3])
  np.testing.assert_array_equal(src.user(1)[schema.SEQ_ITEM_IDS], [3, 1, 2, 3])  # file order
  assert src.user(1)[schema.SEQ_EVENT_FEATURES].shape == (4, 0)
  np.testing.assert_array_equal(src.user(1)[schema.SEQ_LABELS], np.ones((4, 1)))
  np.testing.assert_array_equal(src.user(0)[schema.SEQ_USER_FEATURES], [2, 1, 11])
  np.testing.assert_array_equal(src.user(1)[schema.SEQ_USER_FEATURES], [1, 7, 1])
  np.testing.assert_array_equal(src.item_features(np.array([[1, 2, 3, 0]])),
                                [[[5, 14, 0, 15], [7, 0, 0, 1], [10, 16, 17, 0], [0] * 4]])
  np.testing.assert_array_equal(src.incomplete_users, [1])
  for u in range(len(src)):
    schema.validate_sequence(src.spec, src.user(u), u)
  (folder / "movies.dat").write_text("10::Broken (2001)\n", encoding="latin-1")
  with pytest.raises(raw_formats.RawFormatError, match=r"movies\.dat:1: expected"):
    raw_formats.parse_ml1m(folder)
  (folder / "sequences.txt").write_text("1 1\n1\n")
  with pytest.raises(raw_formats.RawFormatError, match=r"sequences\.txt:2: expected 2 fields"):
    raw_formats.parse_ml1m(folder)
  os.remove(folder / "users.dat")
  with pytest.raises(FileNotFoundError, match=r"users\.dat(.|\n)*grouplens"):
    raw_formats.parse_ml1m(folder)


# ----------------------------------------------------------------------------- Beauty format
def test_small_beauty_build(tmp_path):
  folder = _write(tmp_path / "amazon-beauty", {"sequences.txt": "2 4 1 4\n1 1 2 3 5\n"})
  assert raw_formats.resolve_dir("amazon_beauty", folder) == str(folder)
  assert raw_formats.resolve_dir("amazon_beauty", tmp_path) == str(folder)
  src = _load("amazon_beauty", tmp_path / "tfds", folder)
  spec = src.spec
  assert (spec.num_items, spec.objectives, spec.item_features, spec.user_features) == (
      5, ("purchase",), (), ())
  np.testing.assert_array_equal(src.lengths(), [4, 3])
  np.testing.assert_array_equal(src.user(1)[schema.SEQ_ITEM_IDS], [4, 1, 4])
  assert src.user(1)[schema.SEQ_USER_FEATURES].shape == (0,)
  assert src.item_features(np.array([[0, 5]])).shape == (1, 2, 0)
  (folder / "sequences.txt").write_text("1 1 2\n2 3\n1 4\n")
  with pytest.raises(raw_formats.RawFormatError, match=r"sequences\.txt:3: user 1 already"):
    raw_formats.parse_amazon_beauty(folder)
  (folder / "sequences.txt").write_text("1 1 2\n2\n")
  with pytest.raises(raw_formats.RawFormatError, match=r"sequences\.txt:2: expected"):
    raw_formats.parse_amazon_beauty(folder)


# ----------------------------------------------------------------------------- full builds
@pytest.mark.slow
def test_full_ml1m_build(tmp_path):
  src = _load("ml1m", tmp_path, DATA)
  lengths = src.lengths()
  assert (len(src), src.spec.num_items, lengths.sum()) == (6040, 3416, 998_496)
  assert (lengths.min(), lengths.max()) == (18, 2276) and 95 <= np.median(lengths) <= 96
  assert src.incomplete_users.size == 1115
  for u in range(0, len(src), 7):
    schema.validate_sequence(src.spec, src.user(u), u)
  corpus = pipeline.item_corpus_features(src)
  assert (corpus[1:, 0] > 0).all() and (corpus[1:, 3] > 0).all()   # every item has a genre


@pytest.mark.slow
def test_full_beauty_build(tmp_path):
  src = _load("amazon_beauty", tmp_path, DATA)
  assert (len(src), src.spec.num_items, src.lengths().sum()) == (22_363, 12_101, 198_502)
  assert src.lengths().max() == 204
