"""Fingerprints that key a dataset build on what it was built from.

Why: a build is reused only while its inputs are unchanged. The key covers every input file
(its path, size, mtime and a SHA-256 of sampled bytes: the first, middle and last MiB, so a
multi-GB log costs three reads), the parser version and the data-shaping config. A changed
file, a file added to or removed from an input folder, a new parser or a new filter setting
gives a new key, so a stale build is never taken for the requested one.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable

SAMPLE_BYTES = 1 << 20    # bytes hashed at the start, middle and end of each file


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


def file_digest(path: str) -> dict[str, Any]:
  """Size, mtime (ns) and a SHA-256 over sampled bytes of one file."""
  stat = os.stat(path)
  sha = hashlib.sha256()
  with open(path, "rb") as f:
    for offset in sorted({0, max(0, stat.st_size // 2 - SAMPLE_BYTES // 2),
                          max(0, stat.st_size - SAMPLE_BYTES)}):
      f.seek(offset)
      sha.update(f.read(SAMPLE_BYTES))
  return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
          "sample_sha256": sha.hexdigest()}


def fingerprint(paths: Iterable[os.PathLike | str], parser_version: str,
                shaping: Any = None) -> tuple[str, dict[str, Any]]:
  """(16-hex-digit key, the JSON-able record it hashes) of input files + parser + config."""
  record = {"parser_version": parser_version, "shaping": shaping,
            "files": [file_digest(f) for p in paths for f in input_files(p)]}
  text = json.dumps(record, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16], record
