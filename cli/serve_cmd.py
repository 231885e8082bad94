"""fugger serve: the decision API and the live book in one long-running process."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail
from cli.identity import DEFAULT_ACCESS, AccessOpt, authorised
from cli.plain import write_lines
from engine.audit.store import AuditError, AuditStore
from engine.policy.problems import PolicyError


def serve(
    policies: Annotated[str, typer.Option("--policies", "-p", metavar="DIR",
                                          help="The policy set; watched, the last good set "
                                               "kept.")],
    audit: Annotated[str, typer.Option("--audit", metavar="DB", help="The audit store.")],
    broker: Annotated[str, typer.Option("--broker", metavar="DB",
                                        help="The paper account file.")],
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        metavar="PORT", min=0, max=65535, help="TCP port to listen on.")] = 8700,
    sinks: Annotated[str | None, typer.Option(metavar="FILE", help="Alert sinks config "
                                                                   "(YAML).")] = None,
    access: AccessOpt = DEFAULT_ACCESS,
) -> None:
    """Serve the decision API (/v1, OpenAPI at /openapi.json) until SIGTERM or Ctrl-C:
    requests in flight finish first. Starting it puts the policy set in force for the live
    book: the admin role. Callers authenticate with API tokens (fugger token create)."""
    # Imported here: the web stack and the engine are not paid for by other commands.
    import uvicorn

    from engine.access.loading import load_access
    from engine.execution.paper import PaperAccountError, PaperBroker
    from engine.monitoring.alerting.engine import AlertEngine
    from engine.monitoring.sink_config import SinkConfigError, load_sinks
    from engine.service.app import create_app
    from engine.service.runtime import Runtime

    if not Path(broker).exists():
        fail(f"{broker}: no paper account; create one with: fugger paper init --cash 1000000")
    try:
        store = AuditStore(audit)
    except AuditError as e:
        fail(str(e))
    actor = authorised(store, access, "activate", target=policies)
    try:
        access_policy = load_access(access)
        paper = PaperBroker(broker)
        sink_list = load_sinks(sinks) if sinks else []
    except PolicyError as e:
        fail("; ".join(str(p) for p in e.problems))
    except (PaperAccountError, SinkConfigError, ValueError) as e:
        fail(str(e))
    alerts = (AlertEngine.with_sinks(store, sink_list, "live") if sink_list
              else AlertEngine(store, None, "live"))

    def report(event: object) -> None:
        for line in getattr(event, "lines", list)():
            write_lines(line, sys.stderr)
        sys.stderr.flush()

    runtime = Runtime(policies, store, paper, broker, alerts=alerts, on_event=report,
                      started_by=actor.name)
    if runtime.compiled is None:
        print(f"warning: {policies}: no valid policy set; /v1/health answers 503 and every "
              "decision is refused until the files are fixed", file=sys.stderr, flush=True)
    app = create_app(runtime, access_policy)
    # uvicorn handles SIGTERM and SIGINT: it stops accepting, lets requests in flight finish,
    # then re-raises the signal to the handler it found, which here only lets this function
    # close the stores and exit 0. Every write of a request is committed before its response.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
    runtime.close()
    alerts.close()
    store.close()
    print("fugger serve: stopped", file=sys.stderr)
