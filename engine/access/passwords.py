"""Dashboard passwords: a person of the access policy logs in with one; the policy keeps only
its argon2id hash (`password:` of the person), written by `fugger access passwd`."""

from __future__ import annotations

import io
import os
import tempfile
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from ruamel.yaml import YAML

from engine.access.authorise import AccessDenied, Actor
from engine.access.loading import load_access
from engine.access.model import AccessPolicy

MIN_LENGTH = 12
MAX_LENGTH = 1024
_HASHER = PasswordHasher()


class PasswordError(Exception):
    """A password that cannot be set: too short, unknown person, unwritable file."""


@cache
def _decoy() -> str:
    """A hash checked when the name is unknown or has no password, so a refusal takes as long
    as a wrong password does and does not tell which names exist."""
    return _HASHER.hash("no person has this password")


def log_in(access: AccessPolicy, name: str, password: str) -> Actor:
    """The person `name`, when `password` is theirs; AccessDenied otherwise (the reason does
    not say whether the name, the password or a missing password was wrong)."""
    principal = access.principal(name)
    hashed = (principal.password_hash if principal is not None and principal.kind == "person"
              else None)
    try:
        _HASHER.verify(hashed or _decoy(), password[:MAX_LENGTH])
        good = hashed is not None
    except (VerificationError, InvalidHashError):
        good = False
    if not good:
        raise AccessDenied(name[:64] or "anonymous", "login", "unknown name or wrong password",
                           "password")
    return Actor(name, "person", "dashboard password")


def set_password(path: str, name: str, password: str) -> None:
    """Write the hash of `password` as person `name`'s in the access policy at `path`; the
    file is replaced whole, and only by a policy that still loads."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise PasswordError(f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters")
    access = load_access(path)
    principal = access.principal(name)
    if principal is None or principal.kind != "person":
        raise PasswordError(f"'{name}' is not a person of access policy {path}")
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    source = Path(path)
    doc = yaml.load(source.read_text(encoding="utf-8"))
    person = next(p for p in doc["spec"]["people"] if p["name"] == name)
    person["password"] = _HASHER.hash(password)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    fd, tmp = tempfile.mkstemp(dir=source.parent, prefix=f".{source.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(buf.getvalue())
        os.chmod(tmp, source.stat().st_mode & 0o777)
        load_access(tmp)  # what is written must load, or the old file stays
        os.replace(tmp, source)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
