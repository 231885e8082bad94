"""The `fugger` command line."""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from cli import (
    access_cmds,
    activate_cmd,
    audit_cmds,
    backend_cmds,
    catalogue_cmd,
    exec_cmds,
    fmt_cmd,
    help_format,  # noqa: F401  (flags show no <bool> in --help)
    init_cmd,
    monitor_cmds,
    order_cmds,
    policy_cmds,
    rotate_cmd,
    run_cmd,
    scale_cmds,
    serve_cmd,
    token_cmds,
    tooling_cmds,
)
from cli.plain import write_lines

app = typer.Typer(
    name="fugger",
    help="FuggerBot risk-policy engine: validate policies, decide on facts, audit decisions.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def _version(value: bool) -> None:
    if value:
        try:
            number = version("fuggerbot")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown"
        write_lines(f"fugger {number}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """FuggerBot risk-policy engine: validate policies, decide on facts, audit decisions."""


app.command("validate")(policy_cmds.validate)
app.command("facts")(catalogue_cmd.facts)
app.command("init")(init_cmd.init)
app.command("fmt")(fmt_cmd.fmt)
app.command("eval")(policy_cmds.eval_cmd)
app.command("explain")(policy_cmds.explain)
app.command("test")(tooling_cmds.test_cmd)
app.command("lint")(tooling_cmds.lint_cmd)
app.command("diff")(tooling_cmds.diff_cmd)
app.command("verify-backend")(backend_cmds.verify_backend)
app.add_typer(audit_cmds.app, name="audit")
app.command("alerts")(monitor_cmds.alerts)
app.command("report")(monitor_cmds.report)
app.command("rotate")(rotate_cmd.rotate)
app.command("run")(run_cmd.run)
app.command("sweep")(scale_cmds.sweep)
app.command("activate")(activate_cmd.activate)
app.command("step")(exec_cmds.step)
app.command("resume")(exec_cmds.resume)
app.command("serve")(serve_cmd.serve)
app.command("order")(order_cmds.order)
app.command("kill")(order_cmds.kill)
app.add_typer(exec_cmds.paper_app, name="paper")
app.add_typer(exec_cmds.approvals_app, name="approvals")
app.add_typer(access_cmds.app, name="access")
app.add_typer(token_cmds.app, name="token")


def main() -> None:
    try:
        # The name completion scripts and usage lines use, however the program was started.
        app(prog_name="fugger")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:  # a bug, not a user's mistake: say so without a wall of text
        if os.environ.get("FUGGER_DEBUG"):
            raise
        write_lines(f"fugger: internal error: {type(e).__name__}: {e} "
                    "(set FUGGER_DEBUG=1 for the traceback)", sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
