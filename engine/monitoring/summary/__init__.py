"""What a run did, computed from its audit records alone.

The records read are those the run writes: `run_started`, one `cycle` per day, `order` records
(one per status an order reaches), `run_finished`, and the `alert` and `alert_sink_failure`
records of the alert engine. Nothing else is consulted, so a summary can be rebuilt from an
audit store long after the run, and two summaries of the same store are identical.

`records` reads and checks those records, `build` counts them into a `RunSummary` (`model`),
with the figures of an equity curve from `performance` and the per-year rows from `years`;
`text` lays a summary out as plain text.
"""
