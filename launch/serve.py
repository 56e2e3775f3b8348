"""Serve the newest artifact under a root over HTTP, reloading newer versions as they appear.

  python -m launch.serve --artifacts=/tmp/mpformer/export --port=8000
  curl -s localhost:8000/recommend -d '{"history": [{"item": "12"}, {"item": "7"}], "n": 5}'

Endpoints and errors: `mpformer_jax/serving/service.py`; request format:
`mpformer_jax/serving/encoding.py`; README "Serve".
"""
from absl import app, flags, logging
import uvicorn

from mpformer_jax.serving.service import create_app

_ARTIFACTS = flags.DEFINE_string("artifacts", "/tmp/mpformer/export",
                                 "Artifact root (launch.export --out, or <workdir>/export).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on (0.0.0.0: all).")
_PORT = flags.DEFINE_integer("port", 8000, "Port.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", 64, "Most requests answered in one batch.")
_MAX_WAIT = flags.DEFINE_float("max_wait_ms", 2.0, "Longest a request waits for a batch.")
_POLL = flags.DEFINE_float("poll_seconds", 2.0, "How often the artifact root is checked for "
                           "a newer version.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  service = create_app(_ARTIFACTS.value, max_batch=_MAX_BATCH.value,
                       max_wait_ms=_MAX_WAIT.value, poll_s=_POLL.value)
  uvicorn.run(service, host=_HOST.value, port=_PORT.value, log_level="warning")


if __name__ == "__main__":
  app.run(main)
