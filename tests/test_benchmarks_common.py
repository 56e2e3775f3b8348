"""benchmarks/common.parse_args: --quick figures never land in the committed results."""
import argparse
import pathlib

import pytest


def _parser(common):
  p = common.add_common_args(argparse.ArgumentParser())
  p.add_argument("--update_readme", action="store_true")
  p.add_argument("--readme", default=str(common.DEFAULT_README))
  return p


def test_quick_runs_write_to_scratch_unless_told(load_benchmark, tmp_path):
  common = load_benchmark("common")
  assert common.parse_args(_parser(common), []).out == common.DEFAULT_OUT
  quick = common.parse_args(_parser(common), ["--quick"]).out
  assert quick == common.QUICK_OUT and quick.resolve() != common.DEFAULT_OUT.resolve()
  assert common.parse_args(_parser(common), ["--quick", "--out", str(tmp_path)]).out == tmp_path
  with pytest.raises(SystemExit):       # argparse's error: toy figures into the README
    common.parse_args(_parser(common), ["--quick", "--update_readme"])
  args = common.parse_args(_parser(common), ["--quick", "--update_readme", "--readme",
                                             str(tmp_path / "README.md")])
  assert pathlib.Path(args.readme).parent == tmp_path
