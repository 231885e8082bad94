"""Authentication: who is acting. On the command line, the operating-system user mapped to a
person of the access policy; for programs, an API token (engine/access/tokens).

A name given on the command line (`--by`) is a claim checked against the authenticated
identity, never a way to choose one.
"""

from __future__ import annotations

import os
import pwd

from engine.access.authorise import AccessDenied, Actor
from engine.access.model import AccessPolicy


def os_user() -> str:
    """The user this process runs as, from the kernel's user id: LOGNAME and USER are
    variables anyone can set, so they are not read."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid-{os.geteuid()}"


def from_os_user(access: AccessPolicy, user: str, action: str, claimed: str = "") -> Actor:
    """The person `user` is mapped to; AccessDenied when none is, or when `claimed` names
    someone else."""
    person = access.person_for_os_user(user)
    if person is None:
        raise AccessDenied(claimed or f"os-user:{user}", action,
                           f"OS user '{user}' is not mapped to a person in access policy "
                           f"{access.path}", f"os-user {user}")
    actor = Actor(person.name, "person", f"os-user {user}")
    check_claim(actor, action, claimed)
    return actor


def check_claim(actor: Actor, action: str, claimed: str) -> None:
    if claimed.strip() and claimed.strip() != actor.name:
        raise AccessDenied(claimed.strip(), action,
                           f"--by {claimed.strip()} is not who is acting: authenticated as "
                           f"{actor.name} ({actor.via})", actor.via)
