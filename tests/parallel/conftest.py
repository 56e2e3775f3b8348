"""Fixtures: run a check script under N forced CPU host devices, read back its JSON result.

XLA_FLAGS must be set before JAX initialises its backend, and pytest-xdist workers have
usually initialised it already, so 8-device checks run in a fresh interpreter.
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


def device_env(devices: int = 8) -> dict:
  # The scripts import configs/ from the checkout (setup.py installs the library only).
  path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=path,
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def run_script(name: str, *args: str, devices: int = 8, timeout: float = 600) -> dict:
  """Runs tests/parallel/<name> and returns the dict it prints after 'RESULT '."""
  proc = subprocess.run([sys.executable, os.path.join(HERE, name), *args], cwd=REPO,
                        env=device_env(devices), capture_output=True, text=True,
                        timeout=timeout, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, (
      f"{name} failed (rc={proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}")
  return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="session")
def device_script():
  """`device_script(name, *args, devices=8)` -> the script's RESULT dict."""
  return run_script


@pytest.fixture(scope="session")
def devices_env():
  """`devices_env(n)` -> os.environ with n forced CPU host devices."""
  return device_env
