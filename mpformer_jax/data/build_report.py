"""The build report of a prepared dataset: read it back and format it for people."""
from __future__ import annotations

import json
import os
from typing import Any

from etils import epath

REPORT_FILE = "build_report.json"


def read_report(build_dir: os.PathLike | str) -> dict[str, Any]:
  """The report written beside a build (`tfds_builders`), or a clear error."""
  path = epath.Path(build_dir) / REPORT_FILE
  if not path.exists():
    raise FileNotFoundError(f"{path} is missing: {build_dir} was built by an older version; "
                            "delete the folder to rebuild it")
  return json.loads(path.read_text())


def format_report(report: dict[str, Any], build_dir: os.PathLike | str) -> str:
  """A few lines: sizes, events per objective, length percentiles, drops, build cost."""
  lines = [f"{report['name']} built in {build_dir}",
           f"  {report['users']:,} users, {report['items']:,} items, "
           f"{report['events']:,} events (from {report.get('rows_in', report['events']):,} "
           "input rows)"]
  if "events_per_objective" in report:
    lines.append("  events per objective: " + ", ".join(
        f"{k} {v:,}" for k, v in report["events_per_objective"].items()))
  pct = report.get("length_percentiles")
  if pct:
    lines.append("  events per user: " + ", ".join(f"{k} {v:g}" for k, v in pct.items()))
  if report.get("users_below_4_events"):
    lines.append(f"  {report['users_below_4_events']:,} users have fewer than 4 events: they "
                 "give no training example (leave-one-out needs history, train, valid, test)")
  dropped = {k: v for k, v in report.get("dropped", {}).items() if v}
  lines.append("  dropped: " + (", ".join(f"{k} {v:,}" for k, v in dropped.items())
                                if dropped else "nothing"))
  for key in ("items_without_features", "users_without_features", "item_table_rows_unused",
              "user_table_rows_unused"):
    if key in report:
      lines.append(f"  {key.replace('_', ' ')}: {report[key]:,}")
  if "seconds" in report:
    lines.append(f"  built in {report['seconds']:.1f} s "
                 f"({report.get('rows_in', report['events']) / max(report['seconds'], 1e-9):,.0f}"
                 f" rows/s), peak RSS {report['peak_rss_bytes'] / 2**20:,.0f} MiB")
  return "\n".join(lines)
