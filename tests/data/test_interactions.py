"""The generic interactions path: formats, objectives, side tables, filters, fingerprints."""
from __future__ import annotations

import json
import os
import pathlib

import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from configs import base
from mpformer_jax.data import pipeline, schema, tfds_source
from mpformer_jax.data.log_readers import InputError

DATA = pathlib.Path(os.environ.get(
    "MPFORMER_DATA", pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"))


def data_config(tfds_dir, path, **fields) -> ml_collections.ConfigDict:
  """config.data for `interactions` with base defaults, `fields` set on data.interactions."""
  c = base.get_config().data
  c.name, c.tfds_dir = "interactions", str(tfds_dir)
  item_table = fields.pop("item_table", None)
  user_table = fields.pop("user_table", None)
  c.interactions.update(path=str(path), **fields)
  if item_table:
    c.interactions.item_table.update(item_table)
  if user_table:
    c.interactions.user_table.update(user_table)
  return c


def load(tfds_dir, path, **fields) -> tfds_source.TfdsSource:
  return tfds_source.load_source(data_config(tfds_dir, path, **fields))


def items_of(src, u):
  """User u's events as original item ids."""
  return list(src.original_ids("items")[src.user(u)[schema.SEQ_ITEM_IDS] - 1])


def write(path: pathlib.Path, text: str, encoding="utf-8") -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding=encoding)
  return path


LOG = ("user_id,item_id,timestamp,event\n"
       "bob,b,50,view\n"        # line 2
       "alice,a,100,view\n"     # line 3
       "alice,b,100,cart\n"     # line 4: tie with line 3, file order kept
       "alice,c,90,view\n"      # line 5
       "bob,a,60,buy\n"         # line 6
       "alice,c,200,buy\n")     # line 7
BEHAVIOURS = (("view", ("view",)), ("cart", ("cart", "buy")), ("buy", ("buy",)))


# ----------------------------------------------------------------------------- log format
def test_csv_log_objectives_order_and_features(tmp_path):
  log = write(tmp_path / "log.csv", LOG)
  items = write(tmp_path / "items.csv", "item_id,brand\na,acme\nb,zeta\nzz,acme\n")
  src = load(tmp_path / "tfds", log, time_col="timestamp", behaviour_col="event",
             objectives=BEHAVIOURS, item_table=dict(path=str(items), columns=("brand",)))
  spec = src.spec
  assert spec.objectives == ("view", "cart", "buy") and spec.behaviour_feature == "behaviour"
  assert spec.event_features == (("behaviour", 9), ("time_gap", 9))
  assert spec.item_features == (("brand", 3),) and spec.num_items == 3
  assert list(src.original_ids("users")) == ["alice", "bob"]
  assert list(src.original_ids("items")) == ["a", "b", "c"]
  assert items_of(src, 0) == ["c", "a", "b", "c"] and items_of(src, 1) == ["b", "a"]
  # buy feeds both cart and buy: one event, two labels.
  np.testing.assert_array_equal(src.user(0)[schema.SEQ_LABELS],
                                [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1]])
  feats = src.user(0)[schema.SEQ_EVENT_FEATURES]
  np.testing.assert_array_equal(feats[:, 0], [2, 2, 3, 7])   # label bitmask + 1
  np.testing.assert_array_equal(feats[:, 1], [8, 2, 1, 4])   # first event, 10 s, 0 s, 100 s
  np.testing.assert_array_equal(src.item_features(np.array([1, 2, 3])), [[1], [2], [0]])
  report = json.loads((pathlib.Path(src.data_dir) / "build_report.json").read_text())
  assert report["events_per_objective"] == {"view": 3, "cart": 3, "buy": 2}
  assert report["items_without_features"] == 1 and report["item_table_rows_unused"] == 1
  assert report["users"] == 2 and report["events"] == 6 and report["rows_in"] == 6


def test_other_formats_give_the_same_build(tmp_path):
  """TSV, JSON Lines, Parquet and a folder of two CSV parts read as the CSV does."""
  rows = [line.split(",") for line in LOG.splitlines()]
  header, body = rows[0], rows[1:]
  fields = dict(time_col="timestamp", behaviour_col="event", objectives=BEHAVIOURS)
  ref = load(tmp_path / "t0", write(tmp_path / "log.csv", LOG), **fields)
  tsv = write(tmp_path / "log.tsv", "\n".join("\t".join(r) for r in rows) + "\n")
  jsonl = write(tmp_path / "log.jsonl", "".join(
      json.dumps(dict(zip(header, [r[0], r[1], int(r[2]), r[3]]))) + "\n" for r in body))
  parquet = tmp_path / "log.parquet"
  pq.write_table(pa.table({h: [r[k] for r in body] for k, h in enumerate(header)}), parquet)
  parts = tmp_path / "parts"
  write(parts / "part-0.csv", "\n".join(",".join(r) for r in rows[:3]) + "\n")
  write(parts / "part-1.csv", "\n".join(",".join(r) for r in [header] + body[2:]) + "\n")
  for k, path in enumerate((tsv, jsonl, parquet, parts)):
    src = load(tmp_path / f"t{k + 1}", path, **fields)
    assert src.spec == ref.spec and list(src.lengths()) == list(ref.lengths())
    for u in range(len(ref)):
      for key in (schema.SEQ_ITEM_IDS, schema.SEQ_LABELS, schema.SEQ_EVENT_FEATURES):
        np.testing.assert_array_equal(src.user(u)[key], ref.user(u)[key])


def test_no_behaviour_one_objective_integer_ids_and_dates(tmp_path):
  log = write(tmp_path / "log.csv", "u,i,when\n10,7,2024-01-02T00:00:00\n9,7,2024-01-01\n"
              "10,100,2024-01-01T12:00:00\n10,8,2024-01-03\n")
  src = load(tmp_path / "tfds", log, user_col="u", item_col="i", time_col="when")
  assert src.spec.objectives == ("interaction",) and src.spec.behaviour_feature is None
  assert src.spec.event_features == (("time_gap", 9),)
  assert list(src.original_ids("users")) == ["9", "10"]          # integers: numeric order
  assert list(src.original_ids("items")) == ["7", "8", "100"]
  assert items_of(src, 1) == ["100", "7", "8"]
  np.testing.assert_array_equal(src.user(1)[schema.SEQ_LABELS], np.ones((3, 1)))


def test_label_columns_and_user_table(tmp_path):
  log = write(tmp_path / "log.csv", "user_id,item_id,like,follow\nu1,a,1,0\nu1,b,0,0\n"
              "u2,a,1,1\nu1,c,0,1\n")
  users = write(tmp_path / "users.tsv", "user_id\tcountry\nu1\tfr\nu3\tde\n")
  src = load(tmp_path / "tfds", log, label_cols=("like", "follow"),
             user_table=dict(path=str(users), columns=("country",)))
  assert src.spec.objectives == ("like", "follow")
  assert src.spec.user_features == (("country", 3),)     # de, fr + unknown
  np.testing.assert_array_equal(src.user(0)[schema.SEQ_LABELS], [[1, 0], [0, 0], [0, 1]])
  np.testing.assert_array_equal(src.user(0)[schema.SEQ_EVENT_FEATURES][:, 0], [2, 1, 3])
  np.testing.assert_array_equal(src.user(0)[schema.SEQ_USER_FEATURES], [2])
  np.testing.assert_array_equal(src.user(1)[schema.SEQ_USER_FEATURES], [0])   # not in table
  report = json.loads((pathlib.Path(src.data_dir) / "build_report.json").read_text())
  assert report["users_without_features"] == 1 and report["user_table_rows_unused"] == 1


def test_filters_are_applied_and_counted(tmp_path):
  # u1: a a b c d (a repeated), u2: a b, u3: x (x only once, u3 one event)
  log = write(tmp_path / "log.txt", "u1 a\nu1 a\nu2 a\nu1 b\nu1 c\nu2 b\nu1 d\nu3 x\n")
  src = load(tmp_path / "t1", log, format="pairs", dedup_consecutive=True, min_user_events=2,
             min_item_events=2, max_events_per_user=3)
  # dedup drops u1's 2nd a; k-core round 1: u3 (1 event), then items c and d (1 event each);
  # round 2 changes nothing: u1 a b, u2 a b.
  assert list(src.original_ids("users")) == ["u1", "u2"]
  assert items_of(src, 0) == ["a", "b"] and items_of(src, 1) == ["a", "b"]
  report = json.loads((pathlib.Path(src.data_dir) / "build_report.json").read_text())
  assert report["dropped"] == {"consecutive_duplicate": 1, "k_core_user": 1, "k_core_item": 2,
                               "truncated_oldest": 0}
  src = load(tmp_path / "t2", log, format="pairs", max_events_per_user=2)
  assert items_of(src, 0) == ["c", "d"]            # the newest two kept
  report = json.loads((pathlib.Path(src.data_dir) / "build_report.json").read_text())
  assert report["dropped"] == {"truncated_oldest": 3}


# ----------------------------------------------------------------------------- no stale builds
def test_changed_inputs_rebuild(tmp_path):
  log = write(tmp_path / "in" / "log.txt", "u1 a b c\nu2 b c\n")
  first = load(tmp_path / "tfds", log, format="sequences")
  again = load(tmp_path / "tfds", log, format="sequences")
  assert again.data_dir == first.data_dir and len(first) == 2
  write(log, "u1 a b c\nu2 b c\nu3 a\n")
  changed = load(tmp_path / "tfds", log, format="sequences")
  assert changed.data_dir != first.data_dir and len(changed) == 3
  # A folder: adding a file is a new build; so is a changed shaping setting.
  folder = log.parent
  by_folder = load(tmp_path / "tfds", folder, format="sequences")
  write(folder / "more.txt", "u4 c a\n")
  grown = load(tmp_path / "tfds", folder, format="sequences")
  assert grown.data_dir != by_folder.data_dir and len(grown) == len(by_folder) + 1
  trimmed = load(tmp_path / "tfds", folder, format="sequences", max_events_per_user=1)
  assert trimmed.data_dir != grown.data_dir and trimmed.lengths().max() == 1


def test_changed_named_dataset_rebuilds(tmp_path):
  """The stale-build case of the issue, on the named Amazon Beauty builder."""
  folder = write(tmp_path / "raw" / "amazon-beauty" / "sequences.txt", "1 1 2 3\n2 2 3\n").parent
  cfg = ml_collections.ConfigDict({"name": "amazon_beauty", "dir": str(folder),
                                   "tfds_dir": str(tmp_path / "tfds")})
  assert len(tfds_source.load_source(cfg)) == 2
  write(folder / "sequences.txt", "1 1 2 3\n2 2 3\n3 1 3 2\n")
  assert len(tfds_source.load_source(cfg)) == 3


def test_fingerprint_is_content_not_mtime_or_place(tmp_path, monkeypatch):
  """Re-copied or moved data (new mtimes and path, same bytes) keep their key, so saved runs
  resume; an edit anywhere in a file is a new key; a file too large to hash whole adds mtime."""
  import shutil  # pylint: disable=g-import-not-at-top
  from mpformer_jax.data import fingerprint  # pylint: disable=g-import-not-at-top
  folder = write(tmp_path / "a" / "data" / "log.txt", "u1 a b c\n" * 2000).parent
  key, record = fingerprint.fingerprint([folder], "v1")
  assert record["files"][0]["path"] == "log.txt" and "mtime_ns" not in record["files"][0]
  os.utime(folder / "log.txt", ns=(1, 1))
  copy = shutil.copytree(folder, tmp_path / "b" / "data")
  assert fingerprint.fingerprint([folder], "v1")[0] == key
  assert fingerprint.fingerprint([copy], "v1")[0] == key
  text = (copy / "log.txt").read_text()
  middle = len(text) // 2
  write(copy / "log.txt", text[:middle] + "x" + text[middle + 1:])   # same size, one byte
  assert fingerprint.fingerprint([copy], "v1")[0] != key
  assert fingerprint.fingerprint([folder], "v2")[0] != key            # a new parser
  monkeypatch.setattr(fingerprint, "FULL_HASH_BYTES", 1024)
  monkeypatch.setattr(fingerprint, "SAMPLE_BYTES", 256)
  sampled, record = fingerprint.fingerprint([folder], "v1")
  assert "mtime_ns" in record["files"][0] and sampled != key
  os.utime(folder / "log.txt", ns=(2, 2))
  assert fingerprint.fingerprint([folder], "v1")[0] != sampled


def test_interrupted_build_is_not_taken_for_complete(tmp_path, monkeypatch):
  from mpformer_jax.data import interactions  # pylint: disable=g-import-not-at-top
  log = write(tmp_path / "log.txt", "u1 a b c\nu2 b c\nu3 a b\n")
  original = interactions.InteractionLog._sequence
  calls = []

  def dies_on_the_second_user(self, *args):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt("killed")
    return original(self, *args)

  monkeypatch.setattr(interactions.InteractionLog, "_sequence", dies_on_the_second_user)
  with pytest.raises(KeyboardInterrupt):
    load(tmp_path / "tfds", log, format="sequences")
  assert not list((tmp_path / "tfds").glob("interactions/*/1.0.0"))
  monkeypatch.undo()
  assert len(load(tmp_path / "tfds", log, format="sequences")) == 3


# ----------------------------------------------------------------------------- bad input
BAD_INPUTS = [
    ("missing column", "user_id,sku,timestamp,event\nu,a,1,view\n", {},
     r"log\.csv: missing column\(s\) \['item_id'\]; the header has \['user_id', 'sku', "),
    ("empty file", "", {}, r"log\.csv: the file is empty"),
    ("header only", "user_id,item_id,timestamp,event\n", {}, r"no events"),
    ("malformed row", "user_id,item_id,timestamp,event\nu,a,1,view\nu,b,2\n", {},
     r"log\.csv:3: malformed row: expected 4 fields, got 3"),
    ("bad timestamp", "user_id,item_id,timestamp,event\nu,a,1,view\nu,b,yesterday,view\n", {},
     r"log\.csv:3: timestamp 'yesterday' is not a number or an ISO-8601 date-time"),
    ("unknown behaviour", "user_id,item_id,timestamp,event\nu,a,1,view\nu,b,2,share\n", {},
     r"log\.csv:3: behaviour 'share' is not in data\.interactions\.objectives"),
    ("empty user", "user_id,item_id,timestamp,event\nu,a,1,view\n,b,2,view\n", {},
     r"log\.csv:3: empty user id"),
    ("empty item", "user_id,item_id,timestamp,event\nu,a,1,view\nu, ,2,view\n", {},
     r"log\.csv:3: empty item id"),
    ("bad label", "user_id,item_id,timestamp,event,like\nu,a,1,view,1\nu,b,2,view,yes\n",
     {"label_cols": ("like",)}, r"log\.csv:3: label column 'like' value 'yes' is not a number"),
]


@pytest.mark.parametrize("case,text,extra,match", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_message(tmp_path, case, text, extra, match):
  del case
  log = write(tmp_path / "log.csv", text)
  with pytest.raises(InputError, match=match):
    load(tmp_path / "tfds", log, time_col="timestamp", behaviour_col="event",
         objectives=(("view", ("view",)),), **extra)
  assert not list((tmp_path / "tfds").glob("interactions/*/1.0.0"))


def test_non_utf8_names_the_byte_offset(tmp_path):
  log = tmp_path / "log.csv"
  log.write_bytes(b"user_id,item_id\nu,a\nu,caf\xe9\n")
  with pytest.raises(InputError, match=r"log\.csv: not UTF-8 text: invalid byte at offset 25"):
    load(tmp_path / "tfds", log)
  seq = tmp_path / "seq.txt"
  seq.write_bytes(b"u1 a b\nu2 \xff b\n")
  with pytest.raises(InputError, match=r"seq\.txt: not UTF-8 text: invalid byte at offset 10"):
    load(tmp_path / "tfds", seq, format="sequences")


def test_malformed_sequence_lines_and_dropped_behaviours(tmp_path):
  with pytest.raises(InputError, match=r"pairs\.txt:2: malformed line: expected 2 fields"):
    load(tmp_path / "tfds", write(tmp_path / "pairs.txt", "u a\nu a b\n"), format="pairs")
  with pytest.raises(InputError, match=r"seq\.txt:3: malformed line: expected `user item"):
    load(tmp_path / "tfds", write(tmp_path / "seq.txt", "u a\n\nv\n"), format="sequences")
  log = write(tmp_path / "log.csv", "user_id,item_id,event\nu,a,view\nu,b,share\nu,c,view\n")
  src = load(tmp_path / "tfds", log, behaviour_col="event", objectives=(("view", ("view",)),),
             unknown_behaviour="drop")
  assert items_of(src, 0) == ["a", "c"]
  report = json.loads((pathlib.Path(src.data_dir) / "build_report.json").read_text())
  assert report["dropped"] == {"unknown_behaviour": 1}


@pytest.mark.parametrize("fields,match", [
    ({"path": ""}, "data.interactions.path is empty"),
    ({"format": "xml"}, "format='xml'"),
    ({"behaviour_col": "event"}, "behaviour_col and .objectives go together"),
    ({"format": "pairs", "time_col": "t"}, "need format='log'"),
    ({"objectives": (("view", "view"),), "behaviour_col": "e"}, "must be pairs"),
    ({"label_cols": ("a", "a")}, "objective names repeat"),
    ({"path": "/nonexistent/log.csv"}, "no such file or folder: /nonexistent/log.csv"),
])
def test_bad_config_message(tmp_path, fields, match):
  fields = {"path": str(tmp_path / "log.csv"), **fields}
  write(tmp_path / "log.csv", "user_id,item_id\nu,a\n")
  with pytest.raises((ValueError, FileNotFoundError), match=match):
    load(tmp_path / "tfds", **fields)


# ----------------------------------------------------------------------------- the real files
def _named(name, tmp_path):
  return tfds_source.load_source(ml_collections.ConfigDict(
      {"name": name, "dir": str(DATA), "tfds_dir": str(tmp_path / "named")}))


def _assert_same_examples(generic, named):
  """Same users, lengths, events (item ids up to the id mapping) and held-out targets."""
  assert len(generic) == len(named) and generic.spec.num_items == named.spec.num_items
  np.testing.assert_array_equal(generic.lengths(), named.lengths())
  users = generic.original_ids("users").astype(np.int64)
  np.testing.assert_array_equal(users, [int(x) for x in named.original_ids("users")])
  to_named = np.concatenate([[0], generic.original_ids("items").astype(np.int64)])
  named_ids = np.concatenate([[0], named.original_ids("items").astype(np.int64)])
  assert (named_ids[1:] == np.arange(1, named.spec.num_items + 1)).all()
  for u in range(len(generic)):
    np.testing.assert_array_equal(to_named[generic.user(u)[schema.SEQ_ITEM_IDS]],
                                  named.user(u)[schema.SEQ_ITEM_IDS])
  logq = np.zeros(generic.spec.item_vocab_size, np.float32)
  for split in ("valid", "test"):
    a = pipeline.eval_examples(generic, split=split, max_len=50, logq_table=logq)
    b = pipeline.eval_examples(named, split=split, max_len=50, logq_table=logq)
    np.testing.assert_array_equal(to_named[a[schema.TARGET_ID]], b[schema.TARGET_ID])
    np.testing.assert_array_equal(to_named[a[schema.HISTORY_IDS]], b[schema.HISTORY_IDS])


def test_ml1m_through_the_pair_format(tmp_path):
  generic = load(tmp_path / "generic", DATA / "ml-1m" / "sequences.txt", format="pairs")
  _assert_same_examples(generic, _named("ml1m", tmp_path))


def test_beauty_through_the_sequence_format(tmp_path):
  generic = load(tmp_path / "generic", DATA / "amazon-beauty" / "sequences.txt",
                 format="sequences")
  _assert_same_examples(generic, _named("amazon_beauty", tmp_path))


# ----------------------------------------------------------------------------- time split
def test_global_time_split(tmp_path):
  log = write(tmp_path / "log.csv", "user_id,item_id,t\n"
              "u1,a,10\nu1,b,50\nu1,c,120\nu1,d,150\nu1,e,250\n"
              "u2,a,10\nu2,b,20\nu2,c,30\n"
              "u3,d,150\nu3,a,300\n")
  src = load(tmp_path / "tfds", log, time_col="t", split="time", time_cutoffs=(100, 200))
  points = src.split_points()
  # u1: 2 events before 100 (train target at position 1), c (t=120) validation, e test;
  # u2: all before 100, trains on positions 1-2, nothing held out; u3: d is history, a test.
  np.testing.assert_array_equal(points.train_end, [2, 3, 0])
  np.testing.assert_array_equal(points.valid, [2, -1, -1])
  np.testing.assert_array_equal(points.test, [4, -1, 1])
  assert len(pipeline.examples.ExampleIndex.from_source(src)) == 1 + 2
  logq = np.zeros(src.spec.item_vocab_size, np.float32)
  test = pipeline.eval_examples(src, split="test", max_len=4, logq_table=logq)
  names = np.concatenate([[""], src.original_ids("items")])
  assert [list(names[h[h > 0]]) for h in test[schema.HISTORY_IDS]] == [["a", "b", "c", "d"],
                                                                       ["d"]]
  assert list(names[test[schema.TARGET_ID]]) == ["e", "a"]
  valid = pipeline.eval_examples(src, split="valid", max_len=4, logq_table=logq)
  assert list(names[valid[schema.TARGET_ID]]) == ["c"]
  report = json.loads((pathlib.Path(src.data_dir) / "build_report.json").read_text())
  assert (report["train_examples"], report["valid_users"], report["test_users"]) == (3, 1, 2)
  dated = load(tmp_path / "tfds", log, time_col="t", split="time",
               time_cutoffs=("1970-01-01T00:01:40", "1970-01-01T00:03:20"))
  np.testing.assert_array_equal(dated.split_points().test, points.test)
  with pytest.raises(ValueError, match="split='time' needs time_col"):
    load(tmp_path / "tfds", log, split="time", time_cutoffs=(100, 200))
  with pytest.raises(ValueError, match="must come before the test start"):
    load(tmp_path / "tfds", log, time_col="t", split="time", time_cutoffs=(200, 100))


def test_many_shards_read_back_in_order(tmp_path, monkeypatch):
  from mpformer_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(tfds_builders, "EXAMPLES_PER_SHARD", 2)
  lines = "".join(f"u{k} " + " ".join(f"i{k + j}" for j in range(k + 1)) + "\n" for k in range(5))
  src = load(tmp_path / "tfds", write(tmp_path / "seq.txt", lines), format="sequences")
  assert len(list(pathlib.Path(src.data_dir).glob("*.array_record-*"))) == 3
  for k in range(5):
    assert items_of(src, k) == [f"i{k + j}" for j in range(k + 1)]


def test_small_hand_made_files_match_the_named_builders(tmp_path):
  """The same equivalence on tiny files: SASRec-style pairs and S3-Rec-style sequences."""
  ml1m = tmp_path / "raw" / "ml-1m"
  write(ml1m / "sequences.txt", "2 3\n1 1\n1 2\n2 1\n1 3\n2 2\n2 3\n1 2\n")
  write(ml1m / "item_to_movie_id.txt", "1 10\n2 20\n3 30\n")
  write(ml1m / "user_to_original_user_id.txt", "1 100\n2 200\n")
  write(ml1m / "movies.dat", "10::A (2001)::Comedy\n20::B (1925)::Drama\n30::C (1990)::War\n")
  write(ml1m / "users.dat", "100::F::1::10::48067\n200::M::56::0::70072\n")
  named = tfds_source.load_source(ml_collections.ConfigDict(
      {"name": "ml1m", "dir": str(ml1m), "tfds_dir": str(tmp_path / "named")}))
  generic = load(tmp_path / "generic", ml1m / "sequences.txt", format="pairs")
  _assert_same_examples(generic, named)
  beauty = write(tmp_path / "raw" / "amazon-beauty" / "sequences.txt",
                 "2 4 1 4 5\n1 1 2 3 5\n3 2 2 4 1 3\n")
  named = tfds_source.load_source(ml_collections.ConfigDict(
      {"name": "amazon_beauty", "dir": str(beauty.parent), "tfds_dir": str(tmp_path / "named")}))
  generic = load(tmp_path / "generic", beauty, format="sequences")
  _assert_same_examples(generic, named)
