"""Hot reload of a policy set by polling: the caller polls between two evaluations and swaps in
what `poll` returns.

Change is detected by the content hash of every policy file (a file rewritten within the same
second, or copied with its old modification time, is still seen). Each file is read once per
poll and the set is built from exactly the bytes that were hashed. A new set that cannot be
read, validated or compiled (whatever the failure) is never returned: the caller keeps the
last good one, and the failure is reported once per distinct broken content. A valid set that
would remove a policy of the last good one (a deleted file turns its controls off) is held
back the same way, until `may_remove` says an explicit activation of exactly that set was
recorded. The caller owns the compiled objects: it closes the one it swaps out (a compiled
evaluator holds rule-engine resources).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, cast, overload

from engine.ids import short
from engine.policy.loader import discover, policy_set_from_texts
from engine.policy.model import PolicySet
from engine.policy.problems import PolicyError, Position, Problem
from engine.policy.removal import members, removal_problem, removed

T = TypeVar("T")

EventKind = Literal["activated", "rejected", "restored"]


@dataclass(frozen=True)
class WatchEvent:
    """What a poll found: a new set activated, a change rejected (with every problem), or the
    files back to the active set after a rejected change."""

    kind: EventKind
    digest: str
    message: str
    problems: tuple[Problem, ...] = ()
    policy_set: PolicySet | None = None

    def lines(self) -> list[str]:
        return [self.message, *(str(p) for p in self.problems)]


@dataclass(frozen=True)
class _Read:
    digest: str
    sources: tuple[tuple[str, str], ...]
    problems: tuple[Problem, ...]


def _identity(policy_set: PolicySet) -> PolicySet:
    return policy_set


class PolicyWatcher(Generic[T]):
    """Watches policy files or directories; `poll()` returns a newly compiled object when the
    content changed and is valid, else None."""

    @overload
    def __init__(self: PolicyWatcher[PolicySet], paths: Sequence[str],
                 on_event: Callable[[WatchEvent], None] | None = None, *,
                 may_remove: Callable[[PolicySet], bool] | None = None) -> None: ...

    @overload
    def __init__(self, paths: Sequence[str],
                 on_event: Callable[[WatchEvent], None] | None = None, *,
                 compile: Callable[[PolicySet], T],
                 may_remove: Callable[[PolicySet], bool] | None = None) -> None: ...

    def __init__(self, paths: Sequence[str],
                 on_event: Callable[[WatchEvent], None] | None = None, *,
                 compile: Callable[[PolicySet], T] | None = None,
                 may_remove: Callable[[PolicySet], bool] | None = None) -> None:
        self.paths = tuple(paths)
        self._on_event = on_event
        self._compile: Callable[[PolicySet], T] = (
            compile if compile is not None else cast("Callable[[PolicySet], T]", _identity))
        self._good_digest: str | None = None
        self._bad_digest: str | None = None
        self.current: T | None = None
        self.policy_set: PolicySet | None = None
        self._last_signature: tuple[tuple[str, int, int, int, int], ...] | None = None
        self._may_remove = may_remove
        #: A valid change that would remove policies, waiting for an explicit activation.
        self._held: tuple[str, PolicySet] | None = None

    def _signature(self) -> tuple[tuple[str, int, int, int, int], ...] | None:
        out = []
        try:
            for f in discover(self.paths):
                st = os.stat(f)
                out.append((f, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except OSError:
            return None
        return tuple(out)

    def poll(self) -> T | None:
        """Check the files once. Returns the compiled new set to swap in, or None when nothing
        changed or the change was rejected (the last good set stays in force)."""
        # A stat of each file first: when no file's inode, size, mtime or ctime moved, its
        # bytes did not either (ctime cannot be set back by a copy that keeps mtime), so the
        # files are not read again. Any movement falls through to the content hash.
        signature = self._signature()
        if signature is not None and signature == self._last_signature:
            return self._release_held()
        self._last_signature = signature
        try:
            read = self._read()
        except Exception as e:  # a file system that fails under us is a rejected change
            self._reject(f"unreadable:{type(e).__name__}:{e}",
                         "policy change rejected: the policy files could not be read; "
                         "the active set stays in force",
                         [Problem(self._where(), f"cannot read: {type(e).__name__}: {e}")])
            return None
        if read.digest == self._good_digest:
            self._held = None
            if self._bad_digest is not None:
                self._bad_digest = None
                self._emit(WatchEvent("restored", read.digest,
                                      "policy files are back to the active set",
                                      policy_set=self.policy_set))
            return None
        if read.digest == self._bad_digest:
            return self._release_held()
        self._held = None
        problems = list(read.problems)
        policy_set: PolicySet | None = None
        if not problems:
            try:
                policy_set = policy_set_from_texts(read.sources)
            except PolicyError as e:
                problems.extend(e.problems)
            except Exception as e:  # reading a changed set must never end the caller
                problems.append(Problem(self._where(read),
                                        f"cannot load: {type(e).__name__}: {e}"))
        if policy_set is None:
            self._reject(read.digest, "policy change rejected: "
                         f"{len(problems)} problem(s); the active set stays in force", problems)
            return None
        if self.policy_set is not None:
            gone = removed(members(self.policy_set), policy_set)
            if gone and not self._removal_allowed(policy_set):
                self._reject(read.digest, f"policy change rejected: it would remove "
                             f"{len(gone)} policy(ies) from the active set; the active set "
                             "stays in force", [removal_problem(m) for m in gone])
                self._held = (read.digest, policy_set)
                return None
        return self._activate(read.digest, policy_set, self._where(read))

    def _removal_allowed(self, policy_set: PolicySet) -> bool:
        if self._may_remove is None:
            return False
        try:
            return bool(self._may_remove(policy_set))
        except Exception:  # an answer that cannot be had is a no: the set in force stays
            return False

    def _release_held(self) -> T | None:
        """A change held back because it removes policies goes into force once an explicit
        activation of exactly that set is recorded (asked again at every poll)."""
        if self._held is None or not self._removal_allowed(self._held[1]):
            return None
        (digest, policy_set), self._held = self._held, None
        return self._activate(digest, policy_set, Position(",".join(self.paths), 1, 1))

    def _activate(self, digest: str, policy_set: PolicySet, where: Position) -> T | None:
        try:
            compiled = self._compile(policy_set)
        except Exception as e:  # any compile failure is a rejected change, never a crash
            self._reject(digest, "policy change rejected: the set did not compile; "
                         "the active set stays in force",
                         [Problem(where, f"compile failed: {type(e).__name__}: {e}")])
            return None
        gone = removed(members(self.policy_set), policy_set) if self.policy_set else ()
        self._good_digest, self._bad_digest = digest, None
        self.current = compiled
        self.policy_set = policy_set
        versions = ", ".join(f"{p.name} {p.version}" for p in policy_set.policies)
        message = f"policy set {short(policy_set.hash)} activated: {versions}"
        if gone:
            message += ("; removed by an explicit activation: "
                        + ", ".join(str(m) for m in gone))
        self._emit(WatchEvent("activated", digest, message, policy_set=policy_set))
        return self.current

    def _where(self, read: _Read | None = None) -> Position:
        if read is not None and read.sources:
            return Position(read.sources[0][0], 1, 1)
        return Position(", ".join(self.paths) or "(nothing)", 1, 1)

    def _reject(self, digest: str, message: str, problems: Sequence[Problem]) -> None:
        self._bad_digest = digest
        self._emit(WatchEvent("rejected", digest, message, tuple(sorted(problems))))

    def _emit(self, event: WatchEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _read(self) -> _Read:
        h = hashlib.sha256()
        sources: list[tuple[str, str]] = []
        problems: list[Problem] = []
        files = discover(self.paths)
        if not files:
            problems.append(Problem(Position(", ".join(self.paths) or "(nothing)", 1, 1),
                                    "no policy files (*.yaml) found"))
        for f in files:
            h.update(f.encode("utf-8") + b"\0")
            try:
                with open(f, "rb") as fh:
                    raw = fh.read()
            except OSError as e:
                h.update(f"unreadable:{e.errno}".encode())
                problems.append(Problem(Position(f, 1, 1), f"cannot read file: {e.strerror}"))
                continue
            h.update(hashlib.sha256(raw).digest())
            try:
                sources.append((f, raw.decode("utf-8")))
            except UnicodeDecodeError as e:
                line = raw[: e.start].count(b"\n") + 1
                problems.append(Problem(Position(f, line, 1), "file is not valid UTF-8"))
        return _Read(h.hexdigest(), tuple(sources), tuple(problems))
