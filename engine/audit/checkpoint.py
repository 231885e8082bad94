"""Signed checkpoints: the audit store verified against something outside it.

The hash chain alone proves the records agree with each other, not that they are the ones
written: whoever can write the file can re-chain it. A checkpoint is `{store id, genesis, seq,
head hash, time}` plus short digests of the records since the previous checkpoint, signed with
an Ed25519 key kept outside the store (`fugger audit keygen`, file mode 0600), and handed to a
witness (a directory, the alert sinks). `verify` proves that the store still holds, at every
checkpointed seq, the very record the checkpoint signed, and names the first that differs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.audit.store import AuditStore, VerifyResult
from engine.canonical import canonical
from engine.private_files import create_private_file
from engine.timeutil import format_utc

KEY_ENV = "FUGGER_AUDIT_KEY"
DEFAULT_KEY = Path.home() / ".config" / "fugger" / "audit.key"
#: At most this many record digests in one checkpoint; 16 hex characters (64 bits) each.
MAX_DIGESTS = 100_000
DIGEST_CHARS = 16
VERSION = 1


class CheckpointError(Exception):
    """A key or checkpoint that cannot be made, read or trusted."""


@dataclass(frozen=True)
class Checkpoint:
    store_id: str
    genesis: str
    seq: int
    head_hash: str
    time: str
    from_seq: int
    digests: tuple[str, ...]
    key_id: str
    signature: str = ""

    def payload(self) -> bytes:
        body = {k: v for k, v in asdict(self).items() if k != "signature"}
        body["digests"] = list(self.digests)
        return canonical({"version": VERSION, **body}).encode("utf-8")

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self), "digests": list(self.digests)}

    @classmethod
    def from_json(cls, data: object, where: str) -> Checkpoint:
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise CheckpointError(f"{where}: not a FuggerBot audit checkpoint (version "
                                  f"{VERSION})")
        try:
            cp = cls(str(data["store_id"]), str(data["genesis"]), int(data["seq"]),
                     str(data["head_hash"]), str(data["time"]), int(data["from_seq"]),
                     tuple(str(d) for d in data["digests"]), str(data["key_id"]),
                     str(data["signature"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: a field is missing or of the wrong type: {e}") \
                from None
        if cp.seq < 1 or not 1 <= cp.from_seq <= cp.seq or \
                len(cp.digests) != cp.seq - cp.from_seq + 1:
            raise CheckpointError(f"{where}: seq {cp.seq}, from_seq {cp.from_seq} and "
                                  f"{len(cp.digests)} digest(s) do not agree")
        return cp


# --- keys ---------------------------------------------------------------------------------


def keygen(path: Path) -> Path:
    """A new signing key at `path` (mode 0600, never overwritten) and its public half at
    PATH.pub; returns the public key's path."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        create_private_file(path, exclusive=True)
    except FileExistsError:
        raise CheckpointError(f"{path}: a key is already there; it is never overwritten") \
            from None
    with open(path, "wb") as f:
        f.write(pem)
    public = public_path(path)
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return public


def public_path(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the signing key: {e.strerror}; make one "
                              "with fugger audit keygen") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CheckpointError(f"{path}: the signing key is open to other users (mode "
                              f"{stat.S_IMODE(mode):o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as e:
        raise CheckpointError(f"{path}: not a signing key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path}: not an Ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the public key: {e.strerror}") from None
    except ValueError as e:
        raise CheckpointError(f"{path}: not a public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"{path}: not an Ed25519 public key")
    return key


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# --- taking and verifying -------------------------------------------------------------------


def take(store: AuditStore, key: Ed25519PrivateKey, now: datetime,
         since: Checkpoint | None = None) -> Checkpoint:
    """Sign the store's head, with the digests of the records after `since` (a previous
    checkpoint of this store), at most MAX_DIGESTS of them."""
    hashes = store.hashes()
    if not hashes:
        raise CheckpointError(f"{store.path}: the store is empty: nothing to checkpoint")
    seq = len(hashes)
    start = since.seq + 1 if since is not None and since.store_id == store.store_id and \
        since.seq < seq else 1
    start = max(start, seq - MAX_DIGESTS + 1)
    cp = Checkpoint(store.store_id, store.genesis, seq, hashes[-1], format_utc(now), start,
                    tuple(h[:DIGEST_CHARS] for h in hashes[start - 1:]),
                    key_id(key.public_key()))
    signature = base64.b64encode(key.sign(cp.payload())).decode("ascii")
    return Checkpoint(**{**asdict(cp), "signature": signature})


def write(cp: Checkpoint, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"checkpoint-{cp.store_id[:12]}-{cp.seq:012d}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cp.to_json(), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read(path: Path) -> Checkpoint:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not JSON: {e}") from None
    return Checkpoint.from_json(data, str(path))


def latest_in(directory: Path, store_id: str) -> Checkpoint | None:
    """The newest checkpoint of the store in a witness directory (unreadable ones skipped:
    the next checkpoint then covers more records, never fewer)."""
    best: Checkpoint | None = None
    for p in sorted(directory.glob(f"checkpoint-{store_id[:12]}-*.json")):
        try:
            cp = read(p)
        except CheckpointError:
            continue
        if cp.store_id == store_id and (best is None or cp.seq > best.seq):
            best = cp
    return best


def check_signature(cp: Checkpoint, public: Ed25519PublicKey, where: str) -> None:
    if cp.key_id != key_id(public):
        raise CheckpointError(f"{where}: signed by key {cp.key_id}, not by the trusted key "
                              f"{key_id(public)}: forged")
    try:
        public.verify(base64.b64decode(cp.signature, validate=True), cp.payload())
    except (InvalidSignature, ValueError):
        raise CheckpointError(f"{where}: the signature does not verify: the checkpoint was "
                              "forged or altered") from None


def verify(store: AuditStore, checkpoints: Sequence[tuple[str, Checkpoint]],
           public: Ed25519PublicKey) -> VerifyResult:
    """The chain, then every checkpoint against the store: the first bad seq of all."""
    chain = store.verify()
    bad: list[tuple[int, str]] = []
    if not chain.ok:
        bad.append((chain.first_bad_seq or chain.checked + 1, chain.message))
    hashes = store.hashes()
    for where, cp in checkpoints:
        check_signature(cp, public, where)
        if cp.store_id != store.store_id or cp.genesis != store.genesis:
            bad.append((1, f"{where}: the store is not the one checkpointed (store id "
                           f"{store.store_id}, checkpoint {cp.store_id}): rebuilt from "
                           "scratch"))
            continue
        found = _first_difference(hashes, cp)
        if found is not None:
            bad.append((found[0], f"{where}: {found[1]}"))
    if not bad:
        return VerifyResult(True, chain.checked, chain.head_hash)
    seq, message = min(bad)
    return VerifyResult(False, chain.checked, chain.head_hash, seq, message)


def _first_difference(hashes: list[str], cp: Checkpoint) -> tuple[int, str] | None:
    for i, digest in enumerate(cp.digests):
        seq = cp.from_seq + i
        if seq > len(hashes):
            return (len(hashes) + 1, f"records {len(hashes) + 1}..{cp.seq} are gone: the store "
                                     f"ends at {len(hashes)}, the checkpoint signed {cp.seq}: "
                                     "truncated")
        if hashes[seq - 1][:DIGEST_CHARS] != digest:
            earlier = (f" (or an earlier one: the checkpoint covers {cp.from_seq}..{cp.seq})"
                       if seq == cp.from_seq > 1 else "")
            return (seq, f"record {seq} is not the record the checkpoint signed{earlier}: "
                         "altered, reordered or re-chained")
    if hashes[cp.seq - 1] != cp.head_hash:
        return (cp.seq, f"record {cp.seq} is not the head the checkpoint signed")
    return None
