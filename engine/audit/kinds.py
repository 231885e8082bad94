"""Every kind of record the audit store holds: what `fugger audit list --kind` accepts.

A kind the code writes belongs here, so a filter that names no kind (a typo) is refused
rather than listing nothing. A store written by a newer version may hold kinds not listed:
those present in the store are accepted too.
"""

from __future__ import annotations

RECORD_KINDS: tuple[str, ...] = (
    "access",
    "access_policy",
    "alert",
    "alert_sink_failure",
    "approval_decided",
    "approval_given",
    "approval_requested",
    "decision",
    "equity_mark",
    "kill",
    "order",
    "policy_activation",
    "rebalance",
    "run_finished",
    "run_started",
    "shadow_difference",
    "token_created",
    "token_revoked",
    "trading_state",
)
