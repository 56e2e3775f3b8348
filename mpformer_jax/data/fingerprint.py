"""Fingerprints that key a dataset build on what it was built from.

Why: a build is reused only while its inputs are unchanged. The key covers every input file
(its path inside the input folder, its size and a SHA-256 of its bytes), the parser version
and the data-shaping config. A changed file, a file added to or removed from an input folder,
a new parser or a new filter setting gives a new key, so a stale build is never taken for the
requested one. Files up to `FULL_HASH_BYTES` are keyed by content alone, so copying the data
elsewhere or re-copying it (new mtimes, same bytes) keeps the key and every run that was trained
on it resumes. A larger file hashes its first, middle and last MiB (a multi-GB log costs three
reads) and adds its mtime, since an edit between the samples would otherwise go unseen.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable

FULL_HASH_BYTES = 256 << 20   # files up to this size are hashed whole (~0.5 s a 256 MiB file)
SAMPLE_BYTES = 1 << 20        # larger files: bytes hashed at their start, middle and end


def input_files(path: os.PathLike | str) -> list[str]:
  """The regular files under `path` (itself if a file), sorted; hidden files skipped."""
  path = os.fspath(path)
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no such file or folder: {path}")
  files = []
  for root, dirs, names in os.walk(path):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    files += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
  return sorted(files)


def file_digest(path: str, root: str) -> dict[str, Any]:
  """Path relative to `root`, size and SHA-256 of one file (sampled, plus mtime, if large)."""
  stat = os.stat(path)
  sha = hashlib.sha256()
  digest = {"path": os.path.relpath(path, root), "size": stat.st_size}
  with open(path, "rb") as f:
    if stat.st_size <= FULL_HASH_BYTES:
      while chunk := f.read(SAMPLE_BYTES):
        sha.update(chunk)
      return {**digest, "sha256": sha.hexdigest()}
    for offset in (0, stat.st_size // 2 - SAMPLE_BYTES // 2, stat.st_size - SAMPLE_BYTES):
      f.seek(offset)
      sha.update(f.read(SAMPLE_BYTES))
  return {**digest, "mtime_ns": stat.st_mtime_ns, "sample_sha256": sha.hexdigest()}


def _root(path: str) -> str:
  """The folder an input's file paths are recorded relative to (a file's own folder)."""
  path = os.path.abspath(path)
  return path if os.path.isdir(path) else os.path.dirname(path)


def fingerprint(paths: Iterable[os.PathLike | str], parser_version: str,
                shaping: Any = None) -> tuple[str, dict[str, Any]]:
  """(16-hex-digit key, the JSON-able record it hashes) of input files + parser + config."""
  record = {"parser_version": parser_version, "shaping": shaping,
            "files": [file_digest(f, _root(p)) for p in map(os.fspath, paths)
                      for f in input_files(p)]}
  text = json.dumps(record, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16], record
