"""fugger access: a local access policy for the person at this machine."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail, out
from cli.identity import DEFAULT_ACCESS, AccessOpt
from engine.access.identity import os_user
from engine.access.loading import load_access
from engine.access.model import is_reserved
from engine.access.passwords import PasswordError, set_password
from engine.policy.problems import PolicyError

app = typer.Typer(help="Who may do what: the access policy.", no_args_is_help=True)

LOCAL_ACCESS = ".fugger/access.yaml"

_TEMPLATE = """\
apiVersion: fuggerbot/v1
kind: AccessPolicy
metadata:
  name: local-access
  version: 1.0.0
  description: A local access policy for {user} on this machine, made by fugger access init
  owner: {name}
spec:
  roles:
    trader: [trade]
    approver: [approve, reject]
    risk: [resume, kill, reenable]
    admin: [activate, rollback, init_account, manage_tokens]
  people:
    - name: {name}
      os_user: {user}
      roles: [trader, approver, risk, admin]
"""


def person_name(user: str) -> str:
    """A person name for an OS user: lowercase letters, digits and '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", user.lower()).strip("-")[:63]
    return name if name[:1].isalpha() else f"user-{name}"[:63]


def local_access_text(user: str) -> str:
    """An access policy naming OS user `user` as the one person, with every role."""
    name = person_name(user)
    if is_reserved(name):
        fail(f"OS user '{user}' would be the reserved system name '{name}': write the access "
             "policy by hand")
    return _TEMPLATE.format(user=user, name=name)


@app.command("init")
def init(out_path: Annotated[str, typer.Option("--out", metavar="FILE",
                                               help="Where to write it.")] = LOCAL_ACCESS,
         ) -> None:
    """Write an access policy naming the OS user as the one person, with every role, for a
    single-person set-up such as the demo; point FUGGER_ACCESS (or --access) at it. An
    existing file is kept as it is."""
    user = os_user()
    path = Path(out_path)
    if path.exists():
        try:
            load_access(str(path))
        except PolicyError as e:
            fail(f"{path} exists and is not a valid access policy: {e.problems[0]}")
        out.print(f"{path}: kept as it is")
        return
    text = local_access_text(user)
    name = person_name(user)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    out.print(f"{path}: {name} (OS user {user}) holds trader, approver, risk and admin")


@app.command("passwd")
def passwd(name: Annotated[str, typer.Argument(help="The person of the access policy.")],
           access: AccessOpt = DEFAULT_ACCESS,
           password_stdin: Annotated[bool, typer.Option(
               "--password-stdin", help="Read the password from the first line of standard "
                                        "input instead of asking for it.")] = False,
           ) -> None:
    """Set the password NAME logs in to the dashboard with (fugger serve). The access policy
    keeps only its argon2id hash; whoever may write that file decides who may log in."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(f"password for {name}", hide_input=True,
                                confirmation_prompt=True)
    try:
        set_password(access, name, password)
    except PolicyError as e:
        fail("; ".join(str(p) for p in e.problems))
    except (PasswordError, OSError) as e:
        fail(str(e))
    out.print(f"{access}: password of {name} set (argon2id hash)")
