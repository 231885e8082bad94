"""A person acknowledging an alert: recorded once per alert, under their name, in the audit
store beside the alert it answers (the same ref)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.audit.store import AuditStore
from engine.monitoring.alerting.recorder import ALERT_KIND
from engine.timeutil import format_utc

ACK_KIND = "alert_ack"


def acknowledge(store: AuditStore, alert_id: str, *, by: str, via: str, note: str = "",
                now: datetime) -> dict[str, Any]:
    """Record that `by` has seen alert `alert_id`. LookupError for an unknown alert,
    ValueError when it was acknowledged already (the first acknowledgement stands)."""
    if not any(r.kind == ALERT_KIND for r in store.find(alert_id)):
        raise LookupError(f"no alert {alert_id!r}")
    body = {"alert_id": alert_id, "by": by, "via": via, "at": format_utc(now), "note": note,
            "summary": f"alert {alert_id} acknowledged by {by}" + (f": {note}" if note else "")}
    if store.append_once(ACK_KIND, alert_id, body, unless=(ACK_KIND,)) is None:
        first = acknowledgements(store).get(alert_id) or {}
        raise ValueError(f"alert {alert_id} was already acknowledged by {first.get('by')} at "
                         f"{first.get('at')}")
    return body


def acknowledgements(store: AuditStore) -> dict[str, dict[str, Any]]:
    """Each acknowledged alert's acknowledgement, by alert id."""
    return {r.ref: r.body for r in store.iter_records(ACK_KIND)}
