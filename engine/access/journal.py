"""Every authorisation in the audit store: allowed or refused, who, how authenticated, what,
why; a refusal also raises an alert."""

from __future__ import annotations

from typing import Any

from engine.access.authorise import AccessDenied, Actor
from engine.access.identity import os_user
from engine.access.model import AccessPolicy
from engine.audit.store import AuditStore
from engine.timeutil import format_utc, utc_now

KIND = "access"
POLICY_KIND = "access_policy"


def record_allowed(store: AuditStore, access: AccessPolicy, actor: Actor, action: str,
                   target: str | None = None) -> None:
    _policy_text(store, access)
    store.append(KIND, target or action, {
        **_common(action, target, access), "allowed": True, "by": actor.name,
        "via": actor.via,
        "summary": f"{actor.name} ({actor.via}) allowed to {action}"
                   + (f" {target}" if target else "")})


def record_refused(store: AuditStore, denied: AccessDenied, target: str | None = None,
                   access: AccessPolicy | None = None, run_id: str | None = None) -> None:
    """Record the refusal, then raise the alert (kept in the store and handed to sinks)."""
    from engine.monitoring.alerting.engine import AlertEngine  # the monitoring stack loads late
    if access is not None:
        _policy_text(store, access)
    store.append(KIND, target or denied.action, {
        **_common(denied.action, target, access), "allowed": False, "by": denied.who,
        "via": denied.via, "reason": denied.reason, "run_id": run_id,
        "summary": f"REFUSED: {denied.who} may not {denied.action}"
                   + (f" {target}" if target else "") + f": {denied.reason}"})
    with AlertEngine(store, None, run_id or "live") as alerts:
        alerts.on_access_refused(format_utc(utc_now()), denied.who, denied.action,
                                 denied.reason, target)


def _common(action: str, target: str | None, access: AccessPolicy | None) -> dict[str, Any]:
    return {"action": action, "target": target, "os_user": os_user(),
            "at": format_utc(utc_now()),
            "access_policy": ({"name": access.name, "version": access.version,
                               "path": access.path, "hash": access.hash}
                              if access is not None else None)}


def _policy_text(store: AuditStore, access: AccessPolicy) -> None:
    """The access policy's full text, once per version of it, so every authorisation can be
    checked later against the very roles it was decided under."""
    store.append_once(POLICY_KIND, access.hash, {
        "name": access.name, "version": access.version, "path": access.path,
        "text": access.text, "summary": f"access policy {access.name} {access.version}"},
        unless=(POLICY_KIND,))
