"""Versioned serving artifacts on disk: atomic publishing, checksums, pruning, discovery.

Layout of an artifact root (what `launch.export` and `train.export_every_steps` write and
`launch.serve` watches):

  <root>/v000001/manifest.json   format, step, objectives, encoding, files with SHA-256
  <root>/v000001/...             the files the manifest lists
  <root>/v000002/...
  <root>/.tmp-*/                 a version being written (never read)

A version is written in full under `.tmp-*`, its manifest last, then renamed into place
(`os.rename` is atomic on one file system), so a reader sees a whole version or none. The
manifest's checksums let a loader refuse a version damaged after publishing. Only one
writer per root is supported (a training job, or `launch.export`). Standard library only:
the loader and the exporter both use it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Any, Callable

FORMAT = "mpformer-artifact-1"
MANIFEST = "manifest.json"
_VERSION = re.compile(r"^v(\d{6,})$")


class ArtifactError(ValueError):
  """An artifact that cannot be served: missing, incomplete, damaged or of another format."""


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def file_table(directory: str) -> dict[str, dict[str, Any]]:
  """{relative path: {"sha256", "bytes"}} of every file under `directory` but the manifest."""
  table = {}
  for base, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(base, name)
      rel = os.path.relpath(path, directory)
      if rel != MANIFEST:
        table[rel] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
  return dict(sorted(table.items()))


def versions(root: str) -> list[str]:
  """Published versions under `root` (paths, oldest first); [] for a missing root."""
  if not os.path.isdir(root):
    return []
  found = [(int(m.group(1)), name) for name in os.listdir(root)
           if (m := _VERSION.match(name)) and os.path.isfile(os.path.join(root, name, MANIFEST))]
  return [os.path.join(root, name) for _, name in sorted(found)]


def latest(root: str) -> str:
  """The newest published version under `root`, or an ArtifactError saying there is none."""
  found = versions(root)
  if not found:
    raise ArtifactError(f"no published artifact under {root!r}; export one first: "
                        "python -m launch.export --workdir=W --out=" + root)
  return found[-1]


def publish(root: str, write: Callable[[str], dict], keep: int = 3) -> str:
  """Writes a new version under `root` atomically and returns its path.

  `write(tmp_dir)` puts the artifact's files in `tmp_dir` and returns the manifest's fields;
  the file table and format are added here. Afterwards only the newest `keep` versions stay.
  """
  if keep < 1:
    raise ValueError(f"keep must be >= 1, got {keep}")
  os.makedirs(root, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
  try:
    manifest = dict(write(tmp))
    manifest.update(format=FORMAT, files=file_table(tmp))
    with open(os.path.join(tmp, MANIFEST), "w") as f:
      json.dump(manifest, f, indent=1, sort_keys=True)
    existing = versions(root)
    number = int(os.path.basename(existing[-1])[1:]) + 1 if existing else 1
    final = os.path.join(root, f"v{number:06d}")
    os.chmod(tmp, 0o755)
    os.rename(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  for old in versions(root)[:-keep]:
    shutil.rmtree(old, ignore_errors=True)
  return final


def read_manifest(directory: str) -> dict[str, Any]:
  """The manifest of `directory` (format checked, files not)."""
  path = os.path.join(directory, MANIFEST)
  try:
    with open(path) as f:
      manifest = json.load(f)
  except FileNotFoundError:
    raise ArtifactError(f"{directory}: no {MANIFEST} (not a published artifact)") from None
  except json.JSONDecodeError as e:
    raise ArtifactError(f"{path}: unreadable manifest ({e})") from None
  if manifest.get("format") != FORMAT:
    raise ArtifactError(f"{directory}: format {manifest.get('format')!r}, this loader reads "
                        f"{FORMAT!r}")
  return manifest


def verify(directory: str) -> dict[str, Any]:
  """The manifest of `directory` after checking its format and every file's checksum."""
  manifest = read_manifest(directory)
  for rel, want in manifest["files"].items():
    file = os.path.join(directory, rel)
    if not os.path.isfile(file):
      raise ArtifactError(f"{directory}: {rel} is listed in the manifest but missing")
    got = sha256(file)
    if got != want["sha256"]:
      raise ArtifactError(f"{directory}: checksum of {rel} is {got[:12]}..., the manifest "
                          f"says {want['sha256'][:12]}... (damaged after publishing)")
  return manifest
