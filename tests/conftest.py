"""Shared fixtures."""
import importlib.util
import os
import pathlib
import tempfile

import jax
import pytest

# Many tests compile the same tiny programs (each run jits its own step): a persistent
# compilation cache, shared by the xdist workers and the subprocesses they start, compiles
# each once. Keyed by the program and the jax version, so a stale entry is never used.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "mpformer_tests_jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def load_benchmark():
  """Import a script of benchmarks/ by name (they are scripts, not a package)."""
  def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  return load
