"""API tokens: shown once, kept only as an argon2 hash, revocable, expiring; a token is an
identity, never a fallback to the OS user."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import RunCli, access_text

from engine.access.authorise import AccessDenied, authorise
from engine.access.loading import load_access
from engine.access.tokens import (
    TokenError,
    VerifiedTokens,
    create,
    from_token,
    listing,
    revoke,
)
from engine.audit.store import AuditStore
from engine.timeutil import utc_now


def test_a_token_is_stored_as_a_hash_and_stops_working_when_revoked_or_expired(
        tmp_path: Path, access_policy: Path) -> None:
    access = load_access(str(access_policy))
    now = utc_now()
    with AuditStore(tmp_path / "audit.db") as store:
        token, info = create(store, access, "ann", by="me", ttl=timedelta(days=1), now=now)
        secret = token.rsplit("_", 1)[1]
        stored = store.find(info.token_id)[0]
        assert stored.body["hash"].startswith("$argon2id$")
        assert all(secret not in json.dumps(r.body) for r in store.iter_records())

        actor = from_token(store, access, token, "approve", now=now)
        assert (actor.name, actor.kind, actor.via) == ("ann", "person",
                                                       f"token {info.token_id}")
        with pytest.raises(AccessDenied, match="authenticated as ann"):
            from_token(store, access, token, "approve", claimed="me", now=now)
        wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(AccessDenied, match="wrong secret"):
            from_token(store, access, wrong, "approve", now=now)
        with pytest.raises(AccessDenied, match="malformed"):
            from_token(store, access, "ann", "approve", now=now)
        with pytest.raises(AccessDenied, match="is expired"):
            from_token(store, access, token, "approve", now=now + timedelta(days=1))

        revoke(store, info.token_id, by="me", now=now)
        with pytest.raises(AccessDenied, match="is revoked"):
            from_token(store, access, token, "approve", now=now)
        with pytest.raises(TokenError, match="already revoked"):
            revoke(store, info.token_id, by="me", now=now)
        assert [(t.holder, t.state(now)) for t in listing(store)] == [("ann", "revoked")]
        with pytest.raises(TokenError, match="'mallory' is not a person"):
            create(store, access, "mallory", by="me", ttl=timedelta(days=1), now=now)


def test_a_verified_token_is_not_hashed_again_yet_revocation_and_expiry_hold_at_once(
        tmp_path: Path, access_policy: Path) -> None:
    """The service's cache of verified tokens: keyed by a keyed hash of the whole token, so a
    wrong secret for the same id still meets argon2; a revocation written by another process
    and the expiry both refuse the very next request."""
    access = load_access(str(access_policy))
    now = utc_now()
    verified = VerifiedTokens()
    with AuditStore(tmp_path / "audit.db") as store:
        token, info = create(store, access, "ann", by="me", ttl=timedelta(days=1), now=now)
        assert verified.get(token) is None
        assert from_token(store, access, token, "approve", now=now, verified=verified).name \
            == "ann"
        assert verified.get(token) is not None
        assert token not in repr(verified.__dict__)
        wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(AccessDenied, match="wrong secret"):
            from_token(store, access, wrong, "approve", now=now, verified=verified)
        assert verified.get(wrong) is None
        with pytest.raises(AccessDenied, match="is expired"):
            from_token(store, access, token, "approve", now=now + timedelta(days=1),
                       verified=verified)
        assert from_token(store, access, token, "approve", now=now, verified=verified).name \
            == "ann"
        with AuditStore(tmp_path / "audit.db") as elsewhere:
            revoke(elsewhere, info.token_id, by="me", now=now)
        with pytest.raises(AccessDenied, match="is revoked"):
            from_token(store, access, token, "approve", now=now, verified=verified)
        assert verified.get(token) is None


def test_a_holder_the_access_policy_no_longer_names_has_no_rights(tmp_path: Path,
                                                                  access_policy: Path) -> None:
    now = utc_now()
    with AuditStore(tmp_path / "audit.db") as store:
        token, _ = create(store, load_access(str(access_policy)), "ann", by="me",
                          ttl=timedelta(days=1), now=now)
        later = tmp_path / "later.yaml"
        later.write_text(access_text(people={"bob": ("approver",)}), encoding="utf-8")
        access = load_access(str(later))
        actor = from_token(store, access, token, "approve", now=now)
        with pytest.raises(AccessDenied, match="not a person of access policy"):
            authorise(access, actor, "approve")


def test_tokens_through_the_cli(tmp_path: Path, run_cli: RunCli) -> None:
    db = str(tmp_path / "audit.db")
    made = run_cli("token", "create", "--for", "rita", "--expires", "2d", "--audit", db)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("fgt_tk-") and "shown this once" in made.stderr
    token_id = token.split("_")[1]

    # Acting through the token: rita (risk) may resume, but not create tokens.
    as_rita = {"FUGGER_TOKEN": token}
    resume = run_cli("resume", "--reason", "calm", "--audit", db, env=as_rita)
    assert "resume refused: trading is ACTIVE" in resume.stderr  # authorised, nothing to do
    minted = run_cli("token", "create", "--for", "rita", "--audit", db, env=as_rita)
    assert minted.returncode == 1 and "rita may not manage_tokens" in minted.stderr

    listed = run_cli("token", "list", "--format", "json", "--audit", db)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["token_id"], r["holder"], r["state"]) for r in rows] == [
        (token_id, "rita", "active")]
    assert token.rsplit("_", 1)[1] not in listed.stdout

    gone = run_cli("token", "revoke", token_id, "--audit", db)
    assert gone.returncode == 0, gone.stderr
    after = run_cli("resume", "--reason", "calm", "--audit", db, env=as_rita)
    assert after.returncode == 1 and f"token {token_id} is revoked" in after.stderr
    bogus = run_cli("resume", "--reason", "calm", "--audit", db,
                    env={"FUGGER_TOKEN": "not-a-token"})
    assert bogus.returncode == 1 and "the token is malformed" in bogus.stderr
    with AuditStore(db) as store:
        refused = [(r.body["by"], r.body["action"]) for r in store.iter_records("access")
                   if not r.body["allowed"]]
    assert refused == [("rita", "manage_tokens"), ("rita", "resume"),
                       ("token:malformed", "resume")]
