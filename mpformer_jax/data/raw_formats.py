"""Parsers for the raw files of the real datasets (ML-1M, ML-100K, Amazon Beauty).

Why separate from the TFDS builders: parsing is plain numpy over a directory, so it can be
tested on tiny handmade directories without TFDS, and the builders only serialise its result.
Every parser returns a `ParsedDataset`: per-user sequences as ragged (offsets + flat) arrays in
user order, user features, a [num_items + 1, F_item] item side-feature table and the
`DatasetSpec`. Feature conventions (0 = padding / unknown everywhere):
  * genre1..3: the first three known genres of a movie (`GENRES` index + 1);
  * year: release-year bucket (`YEAR_EDGES`); age: the ML-1M age groups (`AGE_EDGES`);
  * gender: M = 1, F = 2; occupation: ML-1M code + 1, or ML-100K name index + 1;
  * ML-100K events: behaviour = objective bitmask + 1, time_gap = bucket of the seconds since
    the user's previous event (`GAP_EDGES_S`; a user's first event starts a session, so it
    gets the top bucket, as in the synthetic simulator).
A missing file raises FileNotFoundError naming it and where to get it; a malformed line
raises RawFormatError naming the file and line number.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterator, Sequence

import numpy as np

from mpformer_jax.data import schema
from mpformer_jax.data.synthetic import GAP_EDGES_S

GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western")     # ML-100K's extra "unknown" genre maps to 0
YEAR_EDGES = (1940, 1960, 1970, 1980, 1985, 1990, 1993, 1994, 1995, 1996, 1997, 1998, 1999,
              2000)                         # -> buckets 1..15
AGE_EDGES = (18, 25, 35, 45, 50, 56)        # ML-1M age groups: <18, 18-24, ..., 56+ -> 1..7
ML1M_AGE_CODES = (1, 18, 25, 35, 45, 50, 56)
OCCUPATIONS_100K = ("administrator", "artist", "doctor", "educator", "engineer",
                    "entertainment", "executive", "healthcare", "homemaker", "lawyer",
                    "librarian", "marketing", "none", "other", "programmer", "retired",
                    "salesman", "scientist", "student", "technician", "writer")

MOVIE_ITEM_FEATURES = (("genre1", len(GENRES) + 1), ("genre2", len(GENRES) + 1),
                       ("genre3", len(GENRES) + 1), ("year", len(YEAR_EDGES) + 2))
MOVIE_USER_FEATURES = (("gender", 3), ("age", len(AGE_EDGES) + 2), ("occupation", 22))
ML100K_OBJECTIVES = ("watch", "like", "love")
ML100K_EVENT_FEATURES = (("behaviour", 2**len(ML100K_OBJECTIVES) + 1),
                         ("time_gap", len(GAP_EDGES_S) + 2))

ML1M_FILES = ("sequences.txt", "item_to_movie_id.txt", "user_to_original_user_id.txt",
              "movies.dat", "users.dat")
ML100K_FILES = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
BEAUTY_FILES = ("sequences.txt",)

ML1M_INSTRUCTIONS = """\
Put the SASRec version of MovieLens-1M in the manual directory (or its ml-1m/ subfolder):
sequences.txt (`user item` per line, each user's lines in time order; SASRec's ml-1m.txt from
https://github.com/kang205/SASRec/tree/master/data), item_to_movie_id.txt and
user_to_original_user_id.txt (`id original_movielens_id` per line), and movies.dat and
users.dat from the GroupLens archive https://files.grouplens.org/datasets/movielens/ml-1m.zip
(https://grouplens.org/datasets/movielens/1m/). Optional: incomplete_users.txt (one user id
per line: users whose sequence misses its second-to-last event)."""
ML100K_INSTRUCTIONS = """\
Put the RecBole atomic files of MovieLens-100K in the manual directory (or its ml-100k/
subfolder): ml-100k.inter, ml-100k.user, ml-100k.item. Get them from RecBole's dataset list
(https://recbole.io/dataset_list.html) or the `recbole` wheel on PyPI
(recbole/dataset_example/ml-100k/); the original data is GroupLens'
https://grouplens.org/datasets/movielens/100k/."""
BEAUTY_INSTRUCTIONS = """\
Put the S3-Rec preprocessing of Amazon Beauty (5-core) in the manual directory (or its
amazon-beauty/ subfolder) as sequences.txt: `user_id item item ...` per line in time order
(data/Beauty.txt of https://github.com/RUCAIBox/CIKM2020-S3Rec, renamed)."""


class RawFormatError(ValueError):
  """A malformed line in a raw dataset file."""

  def __init__(self, path: os.PathLike | str, lineno: int, message: str):
    super().__init__(f"{os.fspath(path)}:{lineno}: {message}")


@dataclasses.dataclass
class ParsedDataset:
  """One dataset in memory: ragged per-user sequences (user i = events offsets[i]:offsets[i+1])."""
  spec: schema.DatasetSpec
  user_ids: np.ndarray          # [U] int64 user id in the raw files (0 if not numeric)
  offsets: np.ndarray           # [U + 1] int64
  item_ids: np.ndarray          # [E] int32 dense item ids 1..num_items, oldest first per user
  event_features: np.ndarray    # [E, F_event] int32
  labels: np.ndarray            # [E, O] int8
  user_features: np.ndarray     # [U, F_user] int32
  item_table: np.ndarray        # [num_items + 1, F_item] int32, row 0 = padding zeros
  incomplete_users: np.ndarray  # user indices (0-based) flagged incomplete (ML-1M)
  item_tokens: Sequence[str] | None = None   # original id of item k + 1 (None: k + 1 itself)
  report: dict = dataclasses.field(default_factory=dict)     # build-report entries
  feature_vocabs: dict = dataclasses.field(default_factory=dict)

  def explicit_split(self) -> None:
    """Named datasets are split leave-one-out (`examples.SplitPoints`)."""
    return None

  def __len__(self) -> int:
    return self.user_ids.size

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)

  def examples(self):
    """(user index, sequence) of every user, in order (the TFDS builder's input)."""
    for index in range(len(self)):
      yield index, self.user(index)

  def original_ids(self, what: str) -> list[str]:
    """Original user ids (row = user index) or item ids (row k = item id k + 1), as text."""
    if what == "users":
      return [str(u) for u in self.user_ids.tolist()]
    if self.item_tokens is not None:
      return list(self.item_tokens)
    return [str(i) for i in range(1, self.spec.num_items + 1)]

  def user(self, index: int) -> dict[str, np.ndarray]:
    lo, hi = self.offsets[index], self.offsets[index + 1]
    return {schema.SEQ_ITEM_IDS: self.item_ids[lo:hi],
            schema.SEQ_EVENT_FEATURES: self.event_features[lo:hi],
            schema.SEQ_LABELS: self.labels[lo:hi],
            schema.SEQ_USER_FEATURES: self.user_features[index]}


def check_files(directory: os.PathLike | str, files: Sequence[str], instructions: str) -> None:
  """FileNotFoundError naming the first missing file and where to get it."""
  for name in files:
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"missing raw dataset file {path}\n{instructions}")


def _lines(path: str, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
  """(1-based line number, line without newline) of non-blank lines."""
  with open(path, encoding=encoding, newline="") as f:
    for lineno, line in enumerate(f, 1):
      line = line.rstrip("\r\n")
      if line.strip():
        yield lineno, line


def _int(token: str, path: str, lineno: int, what: str, minimum: int | None = None) -> int:
  try:
    value = int(token)
  except ValueError:
    raise RawFormatError(path, lineno, f"{what} {token!r} is not an integer") from None
  if minimum is not None and value < minimum:
    raise RawFormatError(path, lineno, f"{what} {value} is below {minimum}")
  return value


def _int_pairs(path: str, what: tuple[str, str]) -> dict[int, int]:
  """`a b` integer pairs per line (ids >= 1) -> {a: b}."""
  out = {}
  for lineno, line in _lines(path):
    parts = line.split()
    if len(parts) != 2:
      raise RawFormatError(path, lineno, f"expected 2 fields `{what[0]} {what[1]}`, "
                           f"got {len(parts)}")
    out[_int(parts[0], path, lineno, what[0], 1)] = _int(parts[1], path, lineno, what[1], 1)
  return out


def _bucket(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
  return np.searchsorted(np.asarray(edges), values, side="right").astype(np.int32) + 1


def genre_codes(genres: Sequence[str]) -> list[int]:
  """The first three known genres as codes 1..18, zero-padded to 3."""
  codes = [GENRES.index(g) + 1 for g in genres if g in GENRES][:3]
  return codes + [0] * (3 - len(codes))


def year_bucket(year: int | None) -> int:
  return 0 if year is None else int(_bucket(np.array([year]), YEAR_EDGES)[0])


def _group_users(user_ids: np.ndarray, order_keys: Sequence[np.ndarray] = ()):
  """(sorted unique user ids, event permutation, offsets): stable by user, then order_keys."""
  keys = (np.arange(user_ids.size),) + tuple(order_keys)[::-1] + (user_ids,)
  perm = np.lexsort(keys)
  uniq, counts = np.unique(user_ids, return_counts=True)
  return uniq, perm, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _make_spec(name, num_items, item_features, event_features, user_features, objectives,
               behaviour_feature=None) -> schema.DatasetSpec:
  return schema.DatasetSpec(name=name, num_items=int(num_items),
                            item_features=tuple(item_features),
                            event_features=tuple(event_features),
                            user_features=tuple(user_features), objectives=tuple(objectives),
                            behaviour_feature=behaviour_feature)


# ----------------------------------------------------------------------------- ML-1M
def parse_ml1m(directory: os.PathLike | str) -> ParsedDataset:
  """The SASRec ML-1M: one objective "watch" (all 1), no event features."""
  directory = os.fspath(directory)
  check_files(directory, ML1M_FILES, ML1M_INSTRUCTIONS)
  path = os.path.join(directory, "sequences.txt")
  users, items = [], []
  for lineno, line in _lines(path):
    parts = line.split()
    if len(parts) != 2:
      raise RawFormatError(path, lineno, f"expected 2 fields `user item`, got {len(parts)}")
    users.append(_int(parts[0], path, lineno, "user id", 1))
    items.append(_int(parts[1], path, lineno, "item id", 1))
  if not users:
    raise RawFormatError(path, 1, "no interactions")
  user_ids, perm, offsets = _group_users(np.asarray(users, np.int64))
  item_ids = np.asarray(items, np.int32)[perm]
  num_items = int(item_ids.max())
  n = item_ids.size
  spec = _make_spec("ml1m", num_items, MOVIE_ITEM_FEATURES, (), MOVIE_USER_FEATURES, ("watch",))

  item_map = _int_pairs(os.path.join(directory, "item_to_movie_id.txt"), ("item", "movie_id"))
  movies = _read_movies(os.path.join(directory, "movies.dat"))
  item_table = np.zeros((num_items + 1, len(MOVIE_ITEM_FEATURES)), np.int32)
  for item, movie in item_map.items():
    if item <= num_items and movie in movies:
      item_table[item] = movies[movie]

  user_map = _int_pairs(os.path.join(directory, "user_to_original_user_id.txt"),
                        ("user", "original_user_id"))
  profiles = _read_ml1m_users(os.path.join(directory, "users.dat"))
  user_features = np.zeros((user_ids.size, len(MOVIE_USER_FEATURES)), np.int32)
  for row, user in enumerate(user_ids.tolist()):
    original = user_map.get(user)
    if original in profiles:
      user_features[row] = profiles[original]

  incomplete = np.zeros(0, np.int64)
  inc_path = os.path.join(directory, "incomplete_users.txt")
  if os.path.isfile(inc_path):
    flagged = [_int(line.strip(), inc_path, lineno, "user id", 1)
               for lineno, line in _lines(inc_path)]
    incomplete = np.flatnonzero(np.isin(user_ids, np.asarray(flagged, np.int64)))
  return ParsedDataset(spec=spec, user_ids=user_ids, offsets=offsets, item_ids=item_ids,
                       event_features=np.zeros((n, 0), np.int32),
                       labels=np.ones((n, 1), np.int8), user_features=user_features,
                       item_table=item_table, incomplete_users=incomplete)


def _read_movies(path: str) -> dict[int, list[int]]:
  """movies.dat `MovieID::Title (Year)::Genre|Genre` (latin-1) -> {movie: features}."""
  out = {}
  for lineno, line in _lines(path, encoding="latin-1"):
    parts = line.split("::")
    if len(parts) != 3:
      raise RawFormatError(path, lineno, "expected `MovieID::Title (Year)::Genres`, got "
                           f"{len(parts)} `::`-separated fields")
    match = re.search(r"\((\d{4})\)\s*$", parts[1])
    year = int(match.group(1)) if match else None
    out[_int(parts[0], path, lineno, "movie id", 1)] = (
        genre_codes(parts[2].split("|")) + [year_bucket(year)])
  return out


def _read_ml1m_users(path: str) -> dict[int, list[int]]:
  """users.dat `UserID::Gender::Age::Occupation::Zip` -> {user: (gender, age, occupation)}."""
  out = {}
  for lineno, line in _lines(path, encoding="latin-1"):
    parts = line.split("::")
    if len(parts) != 5:
      raise RawFormatError(path, lineno, "expected `UserID::Gender::Age::Occupation::Zip`, "
                           f"got {len(parts)} `::`-separated fields")
    age = _int(parts[2], path, lineno, "age")
    occupation = _int(parts[3], path, lineno, "occupation", 0)
    out[_int(parts[0], path, lineno, "user id", 1)] = [
        {"M": 1, "F": 2}.get(parts[1].strip().upper(), 0),
        ML1M_AGE_CODES.index(age) + 1 if age in ML1M_AGE_CODES else 0,
        occupation + 1 if occupation <= 20 else 0]
  return out


# ----------------------------------------------------------------------------- ML-100K
def _atomic_rows(path: str, columns: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
  """RecBole atomic file: a tab-separated `name:type` header, then rows; yields the columns."""
  rows = _lines(path)
  first = next(rows, None)
  if first is None:
    raise RawFormatError(path, 1, "empty file (expected a `name:type` header)")
  header = [field.split(":")[0] for field in first[1].split("\t")]
  missing = [c for c in columns if c not in header]
  if missing:
    raise RawFormatError(path, first[0], f"header {first[1]!r} lacks columns {missing}")
  index = [header.index(c) for c in columns]
  for lineno, line in rows:
    fields = line.split("\t")
    if len(fields) != len(header):
      raise RawFormatError(path, lineno, f"expected {len(header)} tab-separated fields, got "
                           f"{len(fields)}")
    yield lineno, [fields[i].strip() for i in index]


def _float(token: str, path: str, lineno: int, what: str) -> float:
  try:
    value = float(token)
  except ValueError:
    raise RawFormatError(path, lineno, f"{what} {token!r} is not a number") from None
  if not np.isfinite(value):
    raise RawFormatError(path, lineno, f"{what} {token!r} is not finite")
  return value


def _token_order(token: str):
  return (0, int(token), "") if token.isdigit() else (1, 0, token)


def parse_ml100k(directory: os.PathLike | str) -> ParsedDataset:
  """RecBole ML-100K: objectives watch / like (>= 4) / love (== 5), behaviour and time gap."""
  directory = os.fspath(directory)
  check_files(directory, ML100K_FILES, ML100K_INSTRUCTIONS)
  path = os.path.join(directory, "ml-100k.inter")
  users, items, ratings, times = [], [], [], []
  for lineno, (user, item, rating, ts) in _atomic_rows(
      path, ("user_id", "item_id", "rating", "timestamp")):
    if not user or not item:
      raise RawFormatError(path, lineno, "empty user_id or item_id")
    users.append(user)
    items.append(item)
    ratings.append(_float(rating, path, lineno, "rating"))
    times.append(_float(ts, path, lineno, "timestamp"))
  if not users:
    raise RawFormatError(path, 2, "no interactions")
  user_tokens = sorted(set(users), key=_token_order)
  item_tokens = sorted(set(items), key=_token_order)
  user_dense = {t: i for i, t in enumerate(user_tokens)}
  item_dense = {t: i + 1 for i, t in enumerate(item_tokens)}
  user_index = np.fromiter((user_dense[u] for u in users), np.int64, len(users))
  time_arr = np.asarray(times, np.float64)
  _, perm, offsets = _group_users(user_index, (time_arr,))
  item_ids = np.fromiter((item_dense[i] for i in items), np.int32, len(items))[perm]
  rating_arr, time_arr = np.asarray(ratings)[perm], time_arr[perm]
  labels = np.stack([np.ones_like(rating_arr, bool), rating_arr >= 4, rating_arr == 5],
                    -1).astype(np.int8)
  behaviour = labels.astype(np.int32) @ (1 << np.arange(labels.shape[1], dtype=np.int32)) + 1
  gap = np.diff(time_arr, prepend=0.0)
  gap[offsets[:-1]] = np.inf          # a user's first event starts a session
  events = np.stack([behaviour, _bucket(gap, GAP_EDGES_S)], -1).astype(np.int32)
  spec = _make_spec("ml100k", len(item_tokens), MOVIE_ITEM_FEATURES, ML100K_EVENT_FEATURES,
                    MOVIE_USER_FEATURES, ML100K_OBJECTIVES, behaviour_feature="behaviour")

  user_features = np.zeros((len(user_tokens), len(MOVIE_USER_FEATURES)), np.int32)
  upath = os.path.join(directory, "ml-100k.user")
  for lineno, (user, age, gender, occupation) in _atomic_rows(
      upath, ("user_id", "age", "gender", "occupation")):
    if user in user_dense:
      age_value = _int(age, upath, lineno, "age", 0)
      user_features[user_dense[user]] = [
          {"M": 1, "F": 2}.get(gender.upper(), 0), int(_bucket(np.array([age_value]),
                                                               AGE_EDGES)[0]),
          OCCUPATIONS_100K.index(occupation) + 1 if occupation in OCCUPATIONS_100K else 0]

  item_table = np.zeros((len(item_tokens) + 1, len(MOVIE_ITEM_FEATURES)), np.int32)
  ipath = os.path.join(directory, "ml-100k.item")
  for _, (item, year, genres) in _atomic_rows(ipath, ("item_id", "release_year", "class")):
    if item in item_dense:      # release_year holds junk such as "unkonwn": year unknown
      year_value = int(year) if re.fullmatch(r"\d{4}", year) else None
      item_table[item_dense[item]] = genre_codes(genres.split()) + [year_bucket(year_value)]
  return ParsedDataset(
      spec=spec, user_ids=np.asarray([_token_order(t)[1] for t in user_tokens], np.int64),
      offsets=offsets, item_ids=item_ids, event_features=events, labels=labels,
      user_features=user_features, item_table=item_table,
      incomplete_users=np.zeros(0, np.int64), item_tokens=item_tokens)


# ----------------------------------------------------------------------------- Beauty
def parse_amazon_beauty(directory: os.PathLike | str) -> ParsedDataset:
  """S3-Rec Amazon Beauty: `user item item ...` lines; objective "purchase", no features."""
  directory = os.fspath(directory)
  check_files(directory, BEAUTY_FILES, BEAUTY_INSTRUCTIONS)
  path = os.path.join(directory, "sequences.txt")
  seqs: dict[int, list[int]] = {}
  first_line: dict[int, int] = {}
  for lineno, line in _lines(path):
    parts = line.split()
    if len(parts) < 2:
      raise RawFormatError(path, lineno, "expected `user_id item item ...` with at least one "
                           "item")
    user = _int(parts[0], path, lineno, "user id", 1)
    if user in seqs:
      raise RawFormatError(path, lineno, f"user {user} already listed on line "
                           f"{first_line[user]}")
    seqs[user], first_line[user] = [_int(t, path, lineno, "item id", 1) for t in parts[1:]], lineno
  if not seqs:
    raise RawFormatError(path, 1, "no users")
  user_ids = np.asarray(sorted(seqs), np.int64)
  item_ids = np.concatenate([np.asarray(seqs[u], np.int32) for u in user_ids.tolist()])
  offsets = np.concatenate([[0], np.cumsum([len(seqs[u]) for u in user_ids.tolist()])])
  n, num_items = item_ids.size, int(item_ids.max())
  spec = _make_spec("amazon_beauty", num_items, (), (), (), ("purchase",))
  return ParsedDataset(spec=spec, user_ids=user_ids, offsets=offsets.astype(np.int64),
                       item_ids=item_ids, event_features=np.zeros((n, 0), np.int32),
                       labels=np.ones((n, 1), np.int8),
                       user_features=np.zeros((user_ids.size, 0), np.int32),
                       item_table=np.zeros((num_items + 1, 0), np.int32),
                       incomplete_users=np.zeros(0, np.int64))


PARSERS = {"ml1m": parse_ml1m, "ml100k": parse_ml100k, "amazon_beauty": parse_amazon_beauty}
FILES = {"ml1m": ML1M_FILES, "ml100k": ML100K_FILES, "amazon_beauty": BEAUTY_FILES}
INSTRUCTIONS = {"ml1m": ML1M_INSTRUCTIONS, "ml100k": ML100K_INSTRUCTIONS,
                "amazon_beauty": BEAUTY_INSTRUCTIONS}
SUBFOLDERS = {"ml1m": "ml-1m", "ml100k": "ml-100k", "amazon_beauty": "amazon-beauty"}


def resolve_dir(name: str, directory: os.PathLike | str) -> str:
  """The dataset's folder: `directory` itself or its conventional subfolder (ml-1m/, ...)."""
  directory = os.fspath(directory)
  sub = os.path.join(directory, SUBFOLDERS[name])
  has_files = os.path.isfile(os.path.join(directory, FILES[name][0]))
  return sub if os.path.isdir(sub) and not has_files else directory
