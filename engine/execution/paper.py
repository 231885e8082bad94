"""An embedded paper broker whose whole account lives in one SQLite file.

Every state change is one `BEGIN IMMEDIATE` transaction on a fresh connection, so a fill
and its cash and position change land together, and several processes can share one
account: the write lock serialises them and the `client_id` check runs inside it, so two
processes submitting the same `client_id` at once still produce exactly one order.
A long run keeps one connection open (`session`) and may group a day's calls into one
transaction (`transaction`), each call still all-or-nothing as a savepoint; a service keeps
one open for its whole life (`session(shared=True)`), its calls serialised by the service.

Money is kept as integer cents in the file (rounded half up) so results are deterministic;
the public API speaks floats in account currency.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from os import PathLike
from pathlib import Path
from typing import Any

from engine.execution.broker import (
    BrokerError,
    BrokerOrder,
    OrderRequest,
    OrderStatus,
    Side,
    crosses,
)
from engine.execution.paper_values import (
    CENT,
    MAX_CASH,
    MAX_POSITION,
    SYMBOL_PATTERN,
    WHOLE,
    RejectReason,
    cash_to_cents,
    cents_to_float,
    check_client_id,
    check_positions,
    check_price,
    check_shares,
    check_side,
    check_symbols,
    money,
    reason,
    setting,
    to_decimal,
    utc_text,
)
from engine.private_files import create_private_file
from engine.sqlite_tx import held_write
from engine.timeutil import utc_now

SCHEMA_VERSION = 1

_BUSY_TIMEOUT_S = 60.0
_PRICE_QUANTUM = Decimal("0.000001")
_ORDER_COLUMNS = (
    "seq, client_id, symbol, side, shares, status, fill_price, commission_cents, reason,"
    " submitted_at, filled_at"
)

_SCHEMA = (
    """CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        schema_version INTEGER NOT NULL,
        cash_cents INTEGER NOT NULL CHECK (cash_cents >= 0),
        open_symbols INTEGER NOT NULL CHECK (open_symbols IN (0, 1)),
        created_at TEXT NOT NULL
    )""",
    "CREATE TABLE symbols (symbol TEXT PRIMARY KEY) WITHOUT ROWID",
    """CREATE TABLE positions (
        symbol TEXT PRIMARY KEY,
        shares INTEGER NOT NULL CHECK (shares > 0)
    ) WITHOUT ROWID""",
    """CREATE TABLE orders (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id TEXT NOT NULL UNIQUE,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
        shares INTEGER NOT NULL,
        price REAL,
        status TEXT NOT NULL CHECK (status IN ('open', 'filled', 'rejected', 'cancelled')),
        fill_price REAL,
        commission_cents INTEGER NOT NULL DEFAULT 0 CHECK (commission_cents >= 0),
        reason TEXT NOT NULL DEFAULT '',
        submitted_at TEXT NOT NULL,
        filled_at TEXT,
        closed_at TEXT,
        limit_price REAL
    )""",
    "CREATE INDEX orders_by_status ON orders (status, seq)",
)


CANCELLED_REASON = "cancelled: by client request"


class PaperAccountError(Exception):
    """The account file is missing, already exists, or is not a paper account."""


@dataclass(frozen=True)
class AccountSummary:
    """Everything in a paper account; `symbols` is None when any well-formed symbol trades."""

    path: str
    cash: float
    positions: dict[str, int]
    symbols: tuple[str, ...] | None
    orders: tuple[BrokerOrder, ...]


@dataclass(frozen=True)
class _Fill:
    fill_price: float
    commission_cents: int


def init_account(
    path: str | PathLike[str],
    cash: float,
    positions: Mapping[str, int] | None = None,
    symbols: Iterable[str] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Create a paper account file; refuses to replace an existing file unless `overwrite`.

    `symbols` is the tradable set; None leaves it open to any symbol matching
    `SYMBOL_PATTERN`. Positions must be in the tradable set.
    """
    target = Path(path)
    cash_cents = cash_to_cents(cash)
    symbol_set = check_symbols(symbols)
    holdings = check_positions(positions, symbol_set)

    if target.exists() or target.is_symlink():
        if not overwrite:
            raise PaperAccountError(
                f"{target} already exists; pass overwrite=True to replace the account"
            )
        if target.is_dir():
            raise PaperAccountError(f"{target} is a directory, not a paper account file")
        for stale in (target, _sidecar(target, "-wal"), _sidecar(target, "-shm")):
            stale.unlink(missing_ok=True)
    try:
        # Exclusive create: two processes initialising the same path cannot both win. Owner
        # only: the account is nobody else's to read.
        create_private_file(target, exclusive=True)
    except FileExistsError as exc:
        raise PaperAccountError(f"{target} already exists") from exc
    except OSError as exc:
        raise PaperAccountError(f"cannot create paper account {target}: {exc}") from exc

    try:
        conn = _connect(target)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise PaperAccountError(f"{target}: the file system does not support WAL mode")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO account (id, schema_version, cash_cents, open_symbols, created_at)"
                " VALUES (1, ?, ?, ?, ?)",
                (SCHEMA_VERSION, cash_cents, int(symbol_set is None), utc_text(utc_now())),
            )
            conn.executemany(
                "INSERT INTO symbols (symbol) VALUES (?)", [(s,) for s in sorted(symbol_set or ())]
            )
            conn.executemany(
                "INSERT INTO positions (symbol, shares) VALUES (?, ?)", sorted(holdings.items())
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
    except BaseException as exc:
        for leftover in (target, _sidecar(target, "-wal"), _sidecar(target, "-shm")):
            with suppress(OSError):
                leftover.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.Error):
            raise PaperAccountError(f"cannot create paper account {target}: {exc}") from exc
        raise
    return target


class PaperBroker:
    """A `Broker` that fills against a paper account stored in one SQLite file.

    Fills happen at the request price (or the `fill_open` price) moved against the trader
    by `slippage_bps`, plus a commission of `commission_per_share` per share, at least
    `commission_min`. With `fill_on_submit=False` orders stay open until `fill_open`. A
    limit order whose limit the request price does not reach rests open until a `fill_open`
    price crosses it.
    `cancel` of an unknown `client_id` raises KeyError.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        slippage_bps: float = 0.0,
        commission_per_share: float = 0.0,
        commission_min: float = 0.0,
        fill_on_submit: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._path = Path(path)
        self._slippage = setting("slippage_bps", slippage_bps, upper=10_000.0) / 10_000
        self._per_share = setting("commission_per_share", commission_per_share)
        self._commission_min = setting("commission_min", commission_min)
        if not isinstance(fill_on_submit, bool):
            raise ValueError(f"fill_on_submit must be a bool, got {fill_on_submit!r}")
        self._fill_on_submit = fill_on_submit
        self._clock = clock or utc_now
        #: The connection kept by `session`, and whether `transaction` holds it in a write.
        self._conn: sqlite3.Connection | None = None
        self._held = False
        #: Connections opened to the account file so far (each costs milliseconds).
        self.connections_opened = 0
        self._check_account()

    @property
    def path(self) -> Path:
        """The account file."""
        return self._path

    # -- connections and transactions --------------------------------------------------

    @contextmanager
    def session(self, *, shared: bool = False) -> Iterator[PaperBroker]:
        """Keep one connection open for every call made inside (a long run) instead of one
        per call. A session belongs to the thread that opened it, unless `shared`: then any
        thread may call, and the caller makes sure no two calls run at once (a service
        serialises them under its lock)."""
        if self._conn is not None:
            yield self
            return
        self._conn = self._open(shared=shared)
        try:
            yield self
        finally:
            conn, self._conn = self._conn, None
            conn.close()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """Group every call made inside into one write transaction, committed at the end,
        also when the block raises: the orders it placed were placed. Each call stays
        all-or-nothing. `durable=False` commits without waiting for the disk (the account
        survives the process being killed, not a power loss): for a replay's own account."""
        if self._held:
            raise RuntimeError(f"paper account {self._path}: a transaction is already held")
        with self.session():
            assert self._conn is not None
            with self._errors(), held_write(self._conn, durable=durable):
                self._held = True
                try:
                    yield
                finally:
                    self._held = False

    # -- Broker protocol ---------------------------------------------------------------

    def submit(self, order: OrderRequest) -> BrokerOrder:
        """Send `order`; an already seen `client_id` returns the stored order unchanged.

        Malformed shares, price or symbol are rejected at once; with `fill_on_submit` the
        cash and holdings checks run now, otherwise when `fill_open` fills the order.
        Raises ValueError for a malformed `client_id` or side, which cannot be recorded.
        """
        if not isinstance(order, OrderRequest):
            raise ValueError(f"submit expects an OrderRequest, got {type(order).__name__}")
        client_id = check_client_id(order.client_id)
        side = check_side(order.side)
        now = utc_text(self._clock())
        with self._write() as conn:
            existing = _fetch(conn, client_id)
            if existing is not None:
                return existing
            symbol_text = order.symbol if isinstance(order.symbol, str) else repr(order.symbol)
            shares, shares_problem = check_shares(order.shares)
            price, price_problem = check_price(order.price)
            problem = _symbol_problem(conn, order.symbol) or shares_problem or price_problem
            limit: float | None = None
            if order.limit_price is not None and problem is None:
                limit, problem = check_price(order.limit_price)
            resting = limit is not None and price is not None and \
                not crosses(side, price, limit)
            fill: _Fill | None = None
            if problem is None and price is not None and self._fill_on_submit and not resting:
                outcome = self._execute(conn, symbol_text, side, shares, price)
                if isinstance(outcome, str):
                    problem = outcome
                else:
                    fill = outcome
            if problem is not None:
                status = OrderStatus.REJECTED
            elif fill is not None:
                status = OrderStatus.FILLED
            else:
                status = OrderStatus.OPEN
            conn.execute(
                "INSERT INTO orders (client_id, symbol, side, shares, price, status, fill_price,"
                " commission_cents, reason, submitted_at, filled_at, closed_at, limit_price)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    client_id,
                    symbol_text,
                    side.value,
                    shares,
                    price,
                    status.value,
                    fill.fill_price if fill else None,
                    fill.commission_cents if fill else 0,
                    problem or "",
                    now,
                    now if fill else None,
                    now if status.is_final else None,
                    limit,
                ),
            )
            stored = _fetch(conn, client_id)
        assert stored is not None  # inserted in this transaction
        return stored

    def cancel(self, client_id: str) -> BrokerOrder:
        """Cancel an open order; a filled, rejected or cancelled order comes back unchanged.

        Raises KeyError when no order was sent under `client_id`.
        """
        key = check_client_id(client_id)
        now = utc_text(self._clock())
        with self._write() as conn:
            existing = _fetch(conn, key)
            if existing is None:
                raise KeyError(f"no paper order with client_id {key!r} in {self._path}")
            if existing.status is not OrderStatus.OPEN:
                return existing
            conn.execute(
                "UPDATE orders SET status = ?, reason = ?, closed_at = ? WHERE client_id = ?",
                (OrderStatus.CANCELLED.value, CANCELLED_REASON, now, key),
            )
            cancelled = _fetch(conn, key)
        assert cancelled is not None
        return cancelled

    def order(self, client_id: str) -> BrokerOrder | None:
        """The order sent under `client_id`, or None."""
        key = check_client_id(client_id)
        with self._read() as conn:
            return _fetch(conn, key)

    def open_orders(self) -> list[BrokerOrder]:
        """Open orders, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status = ? ORDER BY seq",
                (OrderStatus.OPEN.value,),
            ).fetchall()
        return [_to_order(row) for row in rows]

    def positions(self) -> dict[str, int]:
        """Shares held per symbol (only symbols with shares)."""
        with self._read() as conn:
            return _positions(conn)

    def cash(self) -> float:
        """Cash in account currency, to the cent."""
        with self._read() as conn:
            return cents_to_float(_cash_cents(conn))

    # -- paper extras ------------------------------------------------------------------

    def fill_open(self, prices: Mapping[str, float]) -> list[BrokerOrder]:
        """Fill open orders, oldest first, at `prices[symbol]` (slippage and commission apply).

        An order whose symbol has no price stays open, and so does a limit order the price
        does not cross; a non-finite or non-positive price, or a failed cash or holdings
        check, rejects it. Returns the orders that changed.
        """
        if not isinstance(prices, Mapping):
            raise ValueError(f"prices must be a mapping of symbol to price, got {prices!r}")
        now = utc_text(self._clock())
        changed: list[str] = []
        with self._write() as conn:
            rows = conn.execute(
                "SELECT client_id, symbol, side, shares, limit_price FROM orders"
                " WHERE status = ? ORDER BY seq",
                (OrderStatus.OPEN.value,),
            ).fetchall()
            for client_id, symbol, side_text, shares, limit in rows:
                if symbol not in prices:
                    continue
                price, problem = check_price(prices[symbol])
                if problem is None and price is not None and limit is not None and \
                        not crosses(Side(side_text), price, float(limit)):
                    continue  # a resting limit order the market has not reached
                outcome: _Fill | str
                if problem is not None or price is None:
                    outcome = problem or reason(RejectReason.INVALID_PRICE, "no price")
                else:
                    outcome = self._execute(conn, symbol, Side(side_text), shares, price)
                if isinstance(outcome, str):
                    conn.execute(
                        "UPDATE orders SET status = ?, reason = ?, closed_at = ?"
                        " WHERE client_id = ?",
                        (OrderStatus.REJECTED.value, outcome, now, client_id),
                    )
                else:
                    conn.execute(
                        "UPDATE orders SET status = ?, price = ?, fill_price = ?,"
                        " commission_cents = ?, filled_at = ?, closed_at = ? WHERE client_id = ?",
                        (
                            OrderStatus.FILLED.value,
                            price,
                            outcome.fill_price,
                            outcome.commission_cents,
                            now,
                            now,
                            client_id,
                        ),
                    )
                changed.append(client_id)
            result = [_fetch(conn, client_id) for client_id in changed]
        return [order for order in result if order is not None]

    def equity(self, prices: Mapping[str, float]) -> float:
        """Cash plus every position marked at `prices`, to the cent.

        Raises ValueError when a held symbol has no valid price: a guessed mark would
        overstate or understate the account.
        """
        if not isinstance(prices, Mapping):
            raise ValueError(f"prices must be a mapping of symbol to price, got {prices!r}")
        with self._read() as conn:
            cash_cents = _cash_cents(conn)
            held = _positions(conn)
        total = Decimal(cash_cents) / 100
        for symbol, shares in sorted(held.items()):
            if symbol not in prices:
                raise ValueError(f"equity: no price for held symbol {symbol}")
            price, problem = check_price(prices[symbol])
            if problem is not None or price is None:
                raise ValueError(f"equity: bad price for {symbol}: {problem}")
            total += to_decimal(price) * shares
        return float(total.quantize(CENT, ROUND_HALF_UP))

    def account_summary(self) -> AccountSummary:
        """Cash, positions, tradable symbols and every order (oldest first), read atomically."""
        with self._read() as conn:
            cash_cents = _cash_cents(conn)
            held = _positions(conn)
            open_symbols = conn.execute("SELECT open_symbols FROM account").fetchone()[0]
            symbols = tuple(r[0] for r in conn.execute("SELECT symbol FROM symbols ORDER BY 1"))
            rows = conn.execute(f"SELECT {_ORDER_COLUMNS} FROM orders ORDER BY seq").fetchall()
        return AccountSummary(
            path=str(self._path),
            cash=cents_to_float(cash_cents),
            positions=held,
            symbols=None if open_symbols else symbols,
            orders=tuple(_to_order(row) for row in rows),
        )

    # -- internals ---------------------------------------------------------------------

    def _execute(
        self, conn: sqlite3.Connection, symbol: str, side: Side, shares: int, price: float
    ) -> _Fill | str:
        """Apply one fill to cash and positions, or return why it is rejected."""
        fill_price = self._fill_price(side, price)
        if fill_price <= 0:
            return reason(RejectReason.INVALID_PRICE, f"price {price} too small to fill")
        notional = int((fill_price * shares * 100).quantize(WHOLE, ROUND_HALF_UP))
        commission = max(self._per_share * shares, self._commission_min)
        commission_cents = int((commission * 100).quantize(WHOLE, ROUND_HALF_UP))
        cash = _cash_cents(conn)
        row = conn.execute("SELECT shares FROM positions WHERE symbol = ?", (symbol,)).fetchone()
        held = 0 if row is None else int(row[0])
        if side is Side.BUY:
            new_cash = cash - notional - commission_cents
            if new_cash < 0:
                return reason(
                    RejectReason.INSUFFICIENT_CASH,
                    f"buying {shares} {symbol} costs {money(notional + commission_cents)}"
                    f" (incl. commission {money(commission_cents)}) but cash is {money(cash)}",
                )
            new_held = held + shares
        else:
            if shares > held:
                return reason(
                    RejectReason.INSUFFICIENT_SHARES,
                    f"selling {shares} {symbol} but holding {held} (no short selling)",
                )
            new_cash = cash + notional - commission_cents
            if new_cash < 0:
                return reason(
                    RejectReason.INSUFFICIENT_CASH,
                    f"commission {money(commission_cents)} exceeds cash {money(cash)}"
                    f" plus proceeds {money(notional)}",
                )
            new_held = held - shares
        if new_cash > MAX_CASH * 100 or new_held > MAX_POSITION:
            return reason(RejectReason.ACCOUNT_LIMIT, "the fill would exceed the account limits")
        conn.execute("UPDATE account SET cash_cents = ?", (new_cash,))
        if new_held == 0:
            conn.execute("DELETE FROM positions WHERE symbol = ?", (symbol,))
        else:
            conn.execute(
                "INSERT INTO positions (symbol, shares) VALUES (?, ?)"
                " ON CONFLICT (symbol) DO UPDATE SET shares = excluded.shares",
                (symbol, new_held),
            )
        return _Fill(fill_price=float(fill_price), commission_cents=commission_cents)

    def _fill_price(self, side: Side, price: float) -> Decimal:
        factor = 1 + self._slippage if side is Side.BUY else 1 - self._slippage
        return (to_decimal(price) * factor).quantize(_PRICE_QUANTUM, ROUND_HALF_UP)

    def _migrate(self) -> None:
        """Accounts made before limit orders get the column they need (empty: no limit)."""
        with self._read() as conn:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(orders)")}
        if "limit_price" in columns:
            return
        with self._write() as conn:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(orders)")}
            if "limit_price" not in columns:
                conn.execute("ALTER TABLE orders ADD COLUMN limit_price REAL")

    def _check_account(self) -> None:
        if not self._path.is_file():
            raise PaperAccountError(
                f"no paper account at {self._path}; create one with init_account"
            )
        try:
            with self._read() as conn:
                has_table = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'account'"
                ).fetchone()
                row = None
                if has_table is not None:
                    row = conn.execute("SELECT schema_version FROM account WHERE id = 1").fetchone()
        except PaperAccountError as exc:
            raise PaperAccountError(f"{self._path} is not a paper account: {exc}") from exc
        # A locked or unreadable file is a BrokerError (transient) and propagates as such.
        if has_table is None:
            raise PaperAccountError(f"{self._path} is not a paper account: no account table")
        if row is None or row[0] != SCHEMA_VERSION:
            found = "no account row" if row is None else f"schema version {row[0]}"
            raise PaperAccountError(
                f"{self._path}: expected paper account schema {SCHEMA_VERSION}, found {found}"
            )
        self._migrate()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        if self._held:
            # The held write transaction is already one consistent view, with its own changes.
            assert self._conn is not None
            with self._errors():
                yield self._conn
            return
        # A deferred transaction reads one consistent WAL snapshot.
        with self._transaction("BEGIN") as conn:
            yield conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        if self._held:
            # Inside a held transaction: a savepoint keeps this call all-or-nothing.
            conn = self._conn
            assert conn is not None
            steps: tuple[str, str, tuple[str, ...]] = (
                "SAVEPOINT call", "RELEASE call", ("ROLLBACK TO call", "RELEASE call"))
        else:
            conn = self._conn or self._open()
            steps = (begin, "COMMIT", ("ROLLBACK",))
        start, finish, undo = steps
        done = False
        try:
            with self._errors():
                conn.execute(start)
                yield conn
                conn.execute(finish)
                done = True
        finally:
            if not done:
                with suppress(sqlite3.Error):
                    for statement in undo:
                        conn.execute(statement)
            if conn is not self._conn:
                conn.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise BrokerError(f"paper account {self._path}: {exc}") from exc
        except sqlite3.IntegrityError as exc:
            # The schema's CHECKs are the last line: a change that breaks them is refused whole.
            raise PaperAccountError(
                f"paper account {self._path} refused an inconsistent change: {exc}"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise PaperAccountError(f"paper account {self._path} is damaged: {exc}") from exc

    def _open(self, *, shared: bool = False) -> sqlite3.Connection:
        self.connections_opened += 1
        try:
            return _connect(self._path, check_same_thread=not shared)
        except sqlite3.OperationalError as exc:
            raise BrokerError(f"cannot open paper account {self._path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise PaperAccountError(f"paper account {self._path} is damaged: {exc}") from exc


def _connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    # mode=rw: opening must never create an empty file where an account was expected.
    uri = path.resolve().as_uri() + "?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=check_same_thread)
    try:
        conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn


def _fetch(conn: sqlite3.Connection, client_id: str) -> BrokerOrder | None:
    row = conn.execute(
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_id = ?", (client_id,)
    ).fetchone()
    return None if row is None else _to_order(row)


def _to_order(row: tuple[Any, ...]) -> BrokerOrder:
    seq, client_id, symbol, side, shares, status, fill_price, commission, reason, sub, fil = row
    return BrokerOrder(
        client_id=str(client_id),
        broker_order_id=f"paper-{int(seq):08d}",
        symbol=str(symbol),
        side=Side(side),
        shares=int(shares),
        status=OrderStatus(status),
        fill_price=None if fill_price is None else float(fill_price),
        commission=cents_to_float(int(commission)),
        reason=str(reason),
        submitted_at=str(sub),
        filled_at=None if fil is None else str(fil),
    )


def _cash_cents(conn: sqlite3.Connection) -> int:
    value = conn.execute("SELECT cash_cents FROM account WHERE id = 1").fetchone()[0]
    assert isinstance(value, int)
    return value


def _positions(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT symbol, shares FROM positions WHERE shares > 0 ORDER BY symbol")
    return {str(symbol): int(shares) for symbol, shares in rows}


def _symbol_problem(conn: sqlite3.Connection, symbol: object) -> str | None:
    if not isinstance(symbol, str) or SYMBOL_PATTERN.fullmatch(symbol) is None:
        return reason(RejectReason.UNKNOWN_SYMBOL, f"{symbol!r} is not a valid symbol")
    open_symbols = conn.execute("SELECT open_symbols FROM account").fetchone()[0]
    if open_symbols:
        return None
    known = conn.execute("SELECT 1 FROM symbols WHERE symbol = ?", (symbol,)).fetchone()
    if known is None:
        return reason(RejectReason.UNKNOWN_SYMBOL, f"{symbol} is not tradable in this account")
    return None


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)
