"""A serialized ScaNN searcher that can move: asset paths stored relative, resolved at load.

ScaNN's `serialize` writes absolute asset paths into `scann_assets.pbtxt`, so a searcher
written under an artifact's temporary folder could not be loaded after the atomic rename
(`serving.artifact.publish`). The exporter rewrites them to file names; `load` points them at
the folder being loaded and builds the searcher as `scann_ops_pybind.load_searcher` does.
"""
from __future__ import annotations

import os
import re

ASSETS = "scann_assets.pbtxt"
_PATH = re.compile(r'asset_path: "([^"]*)"')


def make_relative(directory: str) -> None:
  """Rewrites the asset paths of a freshly serialized searcher to bare file names."""
  path = os.path.join(directory, ASSETS)
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:
    f.write(_PATH.sub(lambda m: f'asset_path: "{os.path.basename(m.group(1))}"', text))


def load(directory: str):
  """The ScaNN searcher saved in `directory` (asset names resolved inside it)."""
  from scann.scann_ops.py import scann_ops_pybind  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(directory)
  with open(os.path.join(directory, ASSETS)) as f:
    text = _PATH.sub(lambda m: f'asset_path: "{os.path.join(directory, m.group(1))}"',
                     f.read())
  native = scann_ops_pybind.scann_pybind   # the extension module load_searcher uses
  return scann_ops_pybind.ScannSearcher(native.ScannNumpy(directory, text))
