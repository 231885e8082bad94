"""Turns what happens in a run into alerts: one alert when an episode starts, one when it ends.

The run loop calls one `on_*` method of `engine.AlertEngine` per event. Each alert is appended
to the audit store (kind `alert`, with the run id) and handed to the dispatcher in the same call;
the dispatcher never blocks. An alert's `ts` is the time of the event (in a replay, the simulated
day), not the wall clock; its id sorts by the time it was made.

`inputs` checks an event's arguments, `episodes` follows each symbol's safety action,
`halts` the book's trading state, and `recorder` stores and hands on every alert and records
the sinks' delivery failures.
"""
