"""Your own data: a retriever trained on an interaction log, sequence file or pair file.

  python -m launch.prepare --config=configs/interactions.py --config.data.interactions.path=log.csv
  python -m launch.train --config=configs/interactions.py --config.data.interactions.path=log.csv \
      --workdir=/tmp/mine
  python -m launch.evaluate --config=configs/interactions.py \
      --config.data.interactions.path=log.csv --workdir=/tmp/mine --top_items=20

The defaults read a CSV with a header `user_id,item_id,timestamp,event` whose events are
`view`, `cart`, `fav` or `buy`, one objective each, and train MPFormer on the four. Every
field of `data.interactions` (set it with --config.data.interactions.<field>=...):

  path            a file, or a folder of files of one format read in name order (required)
  format          "log": one event a row, with named columns (below);
                  "sequences": `user item item ...` a line, in time order (S3-Rec style);
                  "pairs": `user item` a line, each user's lines in time order (SASRec style)
  file_type       log only: "csv", "tsv", "parquet", "jsonl" (JSON Lines); "auto" = by the
                  extension (.csv .tsv .parquet .jsonl/.ndjson)
  delimiter       csv/tsv: one character; "" = "," for csv, tab for tsv
  header          csv/tsv: the first row names the columns; False = columns f0, f1, ...
  user_col, item_col    id columns: any text or integers; mapped to dense ids, and back in
                  every output (vocab_*.parquet beside the build, launch.evaluate --top_items)
  time_col        "" = the file order is the time order; else seconds (any number) or
                  date-times (ISO-8601, or `time_format` in strptime syntax: "%d/%m/%Y %H:%M");
                  adds the time_gap event feature. Ties keep the file order.
  behaviour_col   "" = none; else the column of each event's behaviour type
  objectives      with behaviour_col: ((objective, (behaviour value, ...)), ...): the
                  behaviour values (as text) that make an event a positive of each objective;
                  several values may feed one objective and a value may feed several, e.g.
                  (("click", ("view", "cart", "buy")), ("buy", ("buy",)))
  label_cols      0/1 columns, each one more objective (after those above): an event can
                  carry several labels. With neither: one objective, "interaction".
                  The objective labels of an event become its `behaviour` event feature,
                  which model.attention_bias conditions on.
  unknown_behaviour     a behaviour value missing from `objectives`: "error" or "drop"
                  (dropped events are counted in the build report)
  item_table, user_table   optional side tables (same formats): `path`, `file_type`,
                  `delimiter`, `id_col` (joined with the log's original ids) and `columns`
                  (categorical; each gets a vocabulary, 0 = unknown). Ids missing from a table
                  get the unknown value and are counted in the report.
  min_user_events, min_item_events   iterated k-core: drop users / items with fewer events
                  until none is left (0 = off)
  dedup_consecutive     drop an event equal (item and labels) to the user's previous one
  max_events_per_user   keep each user's newest N events (0 = all)
  split           "leave_one_out": per user the last event is the test target, the one
                  before it the validation target (users need 4 events to take part)
  memory_limit    DuckDB's memory limit for the build; past it, it spills to disk

`python -m launch.prepare` prints the build report (users, items, events per objective,
length percentiles, rows dropped by reason). model.objectives must name objectives of the
data; loss.objective_weights gives one weight each.
"""
from configs import base


def get_config(arg: str | None = None):
  variant = arg or "default"
  if variant not in ("default", "tiny"):
    raise ValueError(f"configs/interactions.py: unknown variant {variant!r}; use 'default' or "
                     "'tiny'")
  c = base.get_config("tiny" if variant == "tiny" else "default")
  c.data.name = "interactions"
  c.data.max_len = 64 if variant == "tiny" else 200
  c.data.stats_max_users = 1_000_000
  c.data.interactions.update(
      time_col="timestamp", behaviour_col="event",
      objectives=(("view", ("view",)), ("cart", ("cart",)), ("fav", ("fav",)),
                  ("buy", ("buy",))))
  c.model.objectives = ("view", "cart", "fav", "buy")
  # The user token and its gates need user features: turn both on with a user_table.
  c.model.update(user_token=False, user_gate=False)
  c.model.compression.schedule = ((32, 2), (16, 4)) if variant == "default" else ((8, 2),)
  c.loss.objective_weights = (1.0, 1.0, 1.0, 1.0)
  c.eval.num_users = 0       # every user
  return c
