"""The embedded paper broker against real SQLite files: fills, rejections, idempotency."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.execution.broker import Broker, BrokerOrder, OrderRequest, OrderStatus, Side
from engine.execution.paper import AccountSummary, PaperAccountError, PaperBroker, init_account
from engine.execution.paper_values import RejectReason


def _account(
    tmp_path: Path,
    cash: float = 10_000.0,
    positions: dict[str, int] | None = None,
    symbols: list[str] | None = None,
    **broker_settings: Any,
) -> PaperBroker:
    path = init_account(tmp_path / "paper.db", cash, positions, symbols)
    return PaperBroker(path, **broker_settings)


def _buy(client_id: str, symbol: str, shares: Any, price: Any) -> OrderRequest:
    return OrderRequest(client_id, symbol, Side.BUY, shares, price)


def _sell(client_id: str, symbol: str, shares: Any, price: Any) -> OrderRequest:
    return OrderRequest(client_id, symbol, Side.SELL, shares, price)


# -- fills ---------------------------------------------------------------------------------


def test_buy_fills_at_slipped_price_plus_commission(tmp_path: Path) -> None:
    broker = _account(tmp_path, slippage_bps=25, commission_per_share=0.01, commission_min=1.0)
    order = broker.submit(_buy("b1", "AAPL", 150, 40.0))

    assert order.status is OrderStatus.FILLED
    assert order.fill_price == 40.1  # 40.00 * (1 + 0.0025): buys pay up
    assert order.commission == 1.5  # 150 * 0.01 beats the 1.00 minimum
    assert order.reason == ""
    assert order.shares == 150 and order.side is Side.BUY and order.symbol == "AAPL"
    assert order.broker_order_id.startswith("paper-")
    assert order.filled_at is not None and order.filled_at.endswith("Z")
    assert broker.cash() == 3983.5  # 10000 - 150 * 40.10 - 1.50
    assert broker.positions() == {"AAPL": 150}


def test_sell_receives_less_and_pays_minimum_commission(tmp_path: Path) -> None:
    broker = _account(
        tmp_path,
        cash=100.0,
        positions={"MSFT": 100},
        slippage_bps=10,
        commission_per_share=0.01,
        commission_min=1.0,
    )
    order = broker.submit(_sell("s1", "MSFT", 30, 200.0))

    assert order.status is OrderStatus.FILLED
    assert order.fill_price == 199.8  # sells receive less
    assert order.commission == 1.0  # 30 * 0.01 = 0.30 is below the minimum
    assert broker.cash() == 6093.0  # 100 + 30 * 199.80 - 1.00
    assert broker.positions() == {"MSFT": 70}


def test_selling_everything_removes_the_position(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=0.0, positions={"MSFT": 5})
    broker.submit(_sell("s1", "MSFT", 5, 10.0))
    assert broker.positions() == {}
    assert broker.cash() == 50.0


def test_money_is_rounded_half_up_to_cents(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=1000.0, commission_per_share=0.005)
    order = broker.submit(_buy("r1", "AAPL", 3, 33.333))
    # notional 99.999 -> 100.00, commission 0.015 -> 0.02
    assert order.commission == 0.02
    assert broker.cash() == 899.98


def test_paper_broker_keeps_the_broker_contract(tmp_path: Path) -> None:
    """What the engine relies on, through the Broker protocol alone: a client id sends an
    order once, a final order is not cancelled again, positions leave out what is sold."""
    broker: Broker = _account(tmp_path)
    assert isinstance(broker, Broker)
    first = broker.submit(_buy("c1", "AAPL", 10, 100.0))
    assert (first.client_id, first.status, first.shares, first.fill_price) == (
        "c1", OrderStatus.FILLED, 10, 100.0)
    assert broker.submit(_buy("c1", "AAPL", 99, 1.0)) == first  # a retry, not a new order
    assert broker.cancel("c1") == first
    assert broker.order("c1") == first
    assert broker.order("c404") is None
    assert broker.open_orders() == []
    assert (broker.positions(), broker.cash()) == ({"AAPL": 10}, 9_000.0)
    assert broker.submit(_sell("c2", "AAPL", 10, 100.0)).status is OrderStatus.FILLED
    assert (broker.positions(), broker.cash()) == ({}, 10_000.0)


def test_injected_clock_stamps_orders_in_utc(tmp_path: Path) -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    broker = _account(tmp_path, clock=lambda: moment)
    order = broker.submit(_buy("t1", "AAPL", 1, 10.0))
    assert order.submitted_at == "2024-01-02T03:04:05.000000Z"
    assert order.filled_at == "2024-01-02T03:04:05.000000Z"


def test_naive_clock_is_refused(tmp_path: Path) -> None:
    broker = _account(tmp_path, clock=lambda: datetime(2024, 1, 2))
    with pytest.raises(ValueError, match="aware datetime"):
        broker.submit(_buy("t1", "AAPL", 1, 10.0))
    assert broker.order("t1") is None


# -- rejections ----------------------------------------------------------------------------


def _assert_rejected(
    broker: PaperBroker, order: BrokerOrder, code: RejectReason, cash: float, held: dict[str, int]
) -> None:
    assert order.status is OrderStatus.REJECTED
    assert order.reason.startswith(f"{code.value}: "), order.reason
    assert order.fill_price is None and order.filled_at is None and order.commission == 0.0
    assert broker.cash() == cash
    assert broker.positions() == held
    assert broker.order(order.client_id) == order


def test_buy_costing_more_than_cash_is_rejected(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=1000.0, commission_min=1.0)
    order = broker.submit(_buy("c1", "AAPL", 10, 99.91))  # 999.10 + 1.00 > 1000.00
    _assert_rejected(broker, order, RejectReason.INSUFFICIENT_CASH, 1000.0, {})
    assert "1000.10" in order.reason and "1000.00" in order.reason


def test_buy_costing_exactly_the_cash_fills(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=1000.0, commission_min=1.0)
    order = broker.submit(_buy("c1", "AAPL", 10, 99.9))
    assert order.status is OrderStatus.FILLED
    assert broker.cash() == 0.0


def test_slippage_counts_towards_the_cash_check(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=1000.0, slippage_bps=1)
    order = broker.submit(_buy("c1", "AAPL", 10, 100.0))  # 10 * 100.01 > 1000
    _assert_rejected(broker, order, RejectReason.INSUFFICIENT_CASH, 1000.0, {})


def test_sell_whose_commission_exceeds_cash_and_proceeds_is_rejected(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=0.0, positions={"PENNY": 1}, commission_min=1.0)
    order = broker.submit(_sell("c1", "PENNY", 1, 0.5))
    _assert_rejected(broker, order, RejectReason.INSUFFICIENT_CASH, 0.0, {"PENNY": 1})


@pytest.mark.parametrize(
    ("symbol", "shares"),
    [("AAPL", 11), ("MSFT", 1)],
    ids=["more-than-held", "not-held"],
)
def test_selling_more_than_held_is_rejected(tmp_path: Path, symbol: str, shares: int) -> None:
    broker = _account(tmp_path, positions={"AAPL": 10})
    order = broker.submit(_sell("x1", symbol, shares, 100.0))
    _assert_rejected(broker, order, RejectReason.INSUFFICIENT_SHARES, 10_000.0, {"AAPL": 10})
    assert "no short selling" in order.reason


@pytest.mark.parametrize(
    "shares",
    [0, -5, 1.5, 2.0, True, "10", None, 10**10],
    ids=["zero", "negative", "fraction", "whole-float", "bool", "str", "none", "huge"],
)
def test_bad_share_counts_are_rejected(tmp_path: Path, shares: Any) -> None:
    broker = _account(tmp_path, positions={"AAPL": 10})
    for index, side in enumerate(Side):
        request = OrderRequest(f"q{index}", "AAPL", side, shares, 100.0)
        order = broker.submit(request)
        _assert_rejected(broker, order, RejectReason.INVALID_SHARES, 10_000.0, {"AAPL": 10})


@pytest.mark.parametrize(
    "price",
    [math.nan, math.inf, -math.inf, 0.0, -1.0, "100", None, True, 1e12],
    ids=["nan", "inf", "-inf", "zero", "negative", "str", "none", "bool", "huge"],
)
def test_bad_prices_are_rejected(tmp_path: Path, price: Any) -> None:
    broker = _account(tmp_path, positions={"AAPL": 10})
    for index, side in enumerate(Side):
        order = broker.submit(OrderRequest(f"p{index}", "AAPL", side, 1, price))
        _assert_rejected(broker, order, RejectReason.INVALID_PRICE, 10_000.0, {"AAPL": 10})


def test_symbols_outside_the_tradable_set_are_rejected(tmp_path: Path) -> None:
    broker = _account(tmp_path, symbols=["AAPL", "MSFT"])
    order = broker.submit(_buy("u1", "TSLA", 1, 10.0))
    _assert_rejected(broker, order, RejectReason.UNKNOWN_SYMBOL, 10_000.0, {})
    assert "TSLA" in order.reason
    assert broker.submit(_buy("u2", "MSFT", 1, 10.0)).status is OrderStatus.FILLED


@pytest.mark.parametrize(
    "symbol",
    ["aapl", "", "1ABC", "A" * 17, "AAPL\n", "BRK B", 7],
    ids=["lowercase", "empty", "digit-first", "too-long", "newline", "space", "not-str"],
)
def test_malformed_symbols_are_rejected_in_an_open_account(tmp_path: Path, symbol: Any) -> None:
    broker = _account(tmp_path)
    order = broker.submit(_buy("u1", symbol, 1, 10.0))
    _assert_rejected(broker, order, RejectReason.UNKNOWN_SYMBOL, 10_000.0, {})


def test_well_formed_symbols_trade_in_an_open_account(tmp_path: Path) -> None:
    broker = _account(tmp_path)
    for index, symbol in enumerate(["BRK.B", "RDS-A", "X", "A" * 16, "T_1"]):
        assert broker.submit(_buy(f"o{index}", symbol, 1, 1.0)).status is OrderStatus.FILLED


@pytest.mark.parametrize("client_id", ["", "   ", None, 12, "x" * 129])
def test_malformed_client_ids_raise(tmp_path: Path, client_id: Any) -> None:
    broker = _account(tmp_path)
    with pytest.raises(ValueError, match="client_id"):
        broker.submit(_buy(client_id, "AAPL", 1, 10.0))
    with pytest.raises(ValueError, match="client_id"):
        broker.order(client_id)
    assert broker.account_summary().orders == ()


def test_malformed_side_raises_and_a_string_side_is_accepted(tmp_path: Path) -> None:
    broker = _account(tmp_path)
    with pytest.raises(ValueError, match="side"):
        broker.submit(OrderRequest("s1", "AAPL", "buy", 1, 10.0))  # type: ignore[arg-type]
    order = broker.submit(OrderRequest("s2", "AAPL", "BUY", 1, 10.0))  # type: ignore[arg-type]
    assert order.side is Side.BUY and order.status is OrderStatus.FILLED


# -- idempotency ---------------------------------------------------------------------------


def test_same_client_id_twice_fills_once(tmp_path: Path) -> None:
    broker = _account(tmp_path, commission_min=1.0)
    first = broker.submit(_buy("dup", "AAPL", 10, 100.0))
    second = broker.submit(_buy("dup", "AAPL", 10, 100.0))
    different = broker.submit(_buy("dup", "MSFT", 99, 5.0))

    assert first == second == different
    assert broker.cash() == 10_000.0 - 1000.0 - 1.0
    assert broker.positions() == {"AAPL": 10}
    assert len(broker.account_summary().orders) == 1


def test_a_rejected_client_id_stays_rejected(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=100.0, positions={"MSFT": 10})
    rejected = broker.submit(_buy("r1", "AAPL", 10, 100.0))
    assert rejected.status is OrderStatus.REJECTED
    broker.submit(_sell("s1", "MSFT", 10, 100.0))  # now there is cash for it
    assert broker.submit(_buy("r1", "AAPL", 10, 100.0)) == rejected
    assert broker.positions() == {}


def _race_submit(path: str, client_id: str, price: float, barrier: Any, results: Any) -> None:
    try:
        broker = PaperBroker(path, commission_min=1.0)
        barrier.wait(timeout=60)
        order = broker.submit(_buy(client_id, "AAPL", 3, price))
        results.put((order.client_id, order.broker_order_id, order.status.value))
    except BaseException as exc:
        # Report instead of dying silently, so the parent never waits for a lost result.
        results.put((client_id, "", f"error: {exc!r}"))
        raise


def _race(path: Path, jobs: list[tuple[str, float]]) -> list[tuple[str, str, str]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs))
    results = context.Queue()
    processes = [
        context.Process(target=_race_submit, args=(str(path), cid, price, barrier, results))
        for cid, price in jobs
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcomes


def test_processes_racing_on_one_client_id_make_one_order(tmp_path: Path) -> None:
    path = init_account(tmp_path / "paper.db", 10_000.0)
    outcomes = _race(path, [("same", 100.0)] * 4)

    assert len({broker_id for _, broker_id, _ in outcomes}) == 1
    assert {status for _, _, status in outcomes} == {"filled"}
    summary = PaperBroker(path).account_summary()
    assert len(summary.orders) == 1
    assert summary.cash == 10_000.0 - 300.0 - 1.0
    assert summary.positions == {"AAPL": 3}


def test_racing_processes_never_spend_the_same_cash_twice(tmp_path: Path) -> None:
    path = init_account(tmp_path / "paper.db", 1000.0)
    # each order costs 300 + 1 commission: only three of four can fill
    outcomes = _race(path, [(f"id{i}", 100.0) for i in range(4)])

    statuses = sorted(status for _, _, status in outcomes)
    assert statuses == ["filled", "filled", "filled", "rejected"]
    broker = PaperBroker(path)
    assert broker.cash() == 1000.0 - 3 * 301.0
    assert broker.positions() == {"AAPL": 9}


# -- persistence and the account file ------------------------------------------------------


def test_account_survives_reopening(tmp_path: Path) -> None:
    broker = _account(tmp_path, positions={"MSFT": 4}, symbols=["AAPL", "MSFT"])
    filled = broker.submit(_buy("p1", "AAPL", 7, 12.34))
    broker.submit(_sell("p2", "MSFT", 9, 1.0))

    reopened = PaperBroker(broker.path)
    assert reopened.cash() == broker.cash() == 9913.62  # 10000 - 7 * 12.34
    assert reopened.positions() == {"AAPL": 7, "MSFT": 4}
    assert reopened.order("p1") == filled
    assert reopened.submit(_buy("p1", "AAPL", 7, 12.34)) == filled
    summary = reopened.account_summary()
    assert [o.client_id for o in summary.orders] == ["p1", "p2"]
    assert summary.symbols == ("AAPL", "MSFT")


def test_account_file_uses_wal(tmp_path: Path) -> None:
    broker = _account(tmp_path)
    with sqlite3.connect(broker.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_init_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=500.0)
    broker.submit(_buy("o1", "AAPL", 1, 10.0))
    with pytest.raises(PaperAccountError, match="already exists"):
        init_account(broker.path, 1.0)
    assert PaperBroker(broker.path).cash() == 490.0

    init_account(broker.path, 1.0, {"AAPL": 2}, overwrite=True)
    fresh = PaperBroker(broker.path)
    assert fresh.cash() == 1.0
    assert fresh.positions() == {"AAPL": 2}
    assert fresh.order("o1") is None


def test_init_refuses_an_existing_non_account_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(PaperAccountError, match="already exists"):
        init_account(path, 1.0)
    assert path.read_text() == "keep me"


@pytest.mark.parametrize(
    ("cash", "positions", "symbols", "message"),
    [
        (math.nan, None, None, "cash"),
        (-1.0, None, None, "cash"),
        ("100", None, None, "cash"),
        (100.0, None, "AAPL", "symbols"),
        (100.0, None, ["aapl"], "symbols"),
        (100.0, {"TSLA": 1}, ["AAPL"], "TSLA"),
        (100.0, {"AAPL": 1.5}, None, "AAPL"),
        (100.0, {"AAPL": -1}, None, "AAPL"),
        (100.0, {"bad sym": 1}, None, "bad sym"),
    ],
)
def test_init_rejects_bad_input_without_creating_a_file(
    tmp_path: Path, cash: Any, positions: Any, symbols: Any, message: str
) -> None:
    path = tmp_path / "paper.db"
    with pytest.raises(ValueError, match=message):
        init_account(path, cash, positions, symbols)
    assert not path.exists()


def test_opening_a_missing_account_fails_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(PaperAccountError, match="no paper account"):
        PaperBroker(path)
    assert not path.exists()


@pytest.mark.parametrize("content", [b"not a database at all" * 100, b""])
def test_opening_a_file_that_is_not_an_account_fails(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "other.db"
    path.write_bytes(content)
    with pytest.raises(PaperAccountError, match="not a paper account"):
        PaperBroker(path)


@pytest.mark.parametrize(
    "settings_",
    [
        {"slippage_bps": -1},
        {"slippage_bps": math.nan},
        {"slippage_bps": 10_000},
        {"commission_per_share": math.inf},
        {"commission_min": -0.01},
        {"commission_min": "1"},
        {"fill_on_submit": 1},
    ],
)
def test_bad_broker_settings_raise(tmp_path: Path, settings_: dict[str, Any]) -> None:
    path = init_account(tmp_path / "paper.db", 1.0)
    name = next(iter(settings_))
    with pytest.raises(ValueError, match=name):
        PaperBroker(path, **settings_)


# -- open orders, cancel, fill_open --------------------------------------------------------


def test_open_orders_wait_for_fill_open(tmp_path: Path) -> None:
    broker = _account(
        tmp_path,
        cash=1000.0,
        positions={"MSFT": 5},
        fill_on_submit=False,
        slippage_bps=100,
        commission_min=1.0,
    )
    a = broker.submit(_buy("a", "AAPL", 2, 100.0))
    b = broker.submit(_sell("b", "MSFT", 5, 50.0))
    c = broker.submit(_buy("c", "AAPL", 1, 100.0))
    assert [o.status for o in (a, b, c)] == [OrderStatus.OPEN] * 3
    assert a.fill_price is None and a.filled_at is None
    assert [o.client_id for o in broker.open_orders()] == ["a", "b", "c"]
    assert broker.cash() == 1000.0 and broker.positions() == {"MSFT": 5}

    cancelled = broker.cancel("c")
    assert cancelled.status is OrderStatus.CANCELLED
    assert broker.cancel("c") == cancelled

    changed = broker.fill_open({"AAPL": 200.0})  # no MSFT price: b stays open
    assert [o.client_id for o in changed] == ["a"]
    filled = changed[0]
    assert filled.status is OrderStatus.FILLED
    assert filled.fill_price == 202.0  # the fill_open price, slipped 1%
    assert broker.cash() == 1000.0 - 404.0 - 1.0
    assert [o.client_id for o in broker.open_orders()] == ["b"]

    assert broker.cancel("a") == filled  # a filled order is returned unchanged
    assert broker.fill_open({"AAPL": 1.0}) == []  # nothing open in AAPL any more

    changed = broker.fill_open({"MSFT": 40.0})
    assert [(o.client_id, o.fill_price) for o in changed] == [("b", 39.6)]
    assert broker.cash() == 595.0 + 198.0 - 1.0
    assert broker.positions() == {"AAPL": 2}
    assert broker.open_orders() == []
    assert broker.order("c") == cancelled


def test_fill_open_applies_the_checks_at_fill_time(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=100.0, positions={"MSFT": 1, "IBM": 1}, fill_on_submit=False)
    broker.submit(_buy("cash", "AAPL", 1, 50.0))
    broker.submit(_buy("nan", "MSFT", 1, 50.0))
    broker.submit(_sell("short", "IBM", 2, 50.0))
    # Static checks still run at submit time.
    assert broker.submit(_buy("zero", "AAPL", 0, 50.0)).status is OrderStatus.REJECTED

    changed = broker.fill_open({"AAPL": 150.0, "MSFT": math.nan, "IBM": 10.0})
    reasons = {o.client_id: o.reason.split(":")[0] for o in changed}
    assert reasons == {
        "cash": RejectReason.INSUFFICIENT_CASH.value,
        "nan": RejectReason.INVALID_PRICE.value,
        "short": RejectReason.INSUFFICIENT_SHARES.value,
    }
    assert all(o.status is OrderStatus.REJECTED for o in changed)
    assert broker.cash() == 100.0 and broker.positions() == {"IBM": 1, "MSFT": 1}
    assert broker.open_orders() == []


def test_cancelling_an_unknown_order_raises_key_error(tmp_path: Path) -> None:
    broker = _account(tmp_path)
    with pytest.raises(KeyError, match="nope"):
        broker.cancel("nope")
    assert broker.order("nope") is None


def test_cancelling_a_rejected_order_returns_it_unchanged(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=1.0, fill_on_submit=False)
    rejected = broker.submit(_buy("r", "AAPL", 1, math.nan))
    assert broker.cancel("r") == rejected


# -- equity and summary --------------------------------------------------------------------


def test_equity_marks_positions_to_market(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=100.0, positions={"AAPL": 3, "MSFT": 2})
    assert broker.equity({"AAPL": 10.005, "MSFT": 1.0, "UNUSED": math.nan}) == 132.02
    with pytest.raises(ValueError, match="MSFT"):
        broker.equity({"AAPL": 10.0})
    with pytest.raises(ValueError, match="AAPL"):
        broker.equity({"AAPL": math.inf, "MSFT": 1.0})


def test_account_summary_lists_everything(tmp_path: Path) -> None:
    broker = _account(tmp_path, cash=50.0, positions={"MSFT": 1})
    broker.submit(_buy("a", "AAPL", 2, 10.0))
    broker.submit(_buy("b", "AAPL", 20, 10.0))
    summary = broker.account_summary()
    assert isinstance(summary, AccountSummary)
    assert summary.cash == 30.0
    assert summary.positions == {"AAPL": 2, "MSFT": 1}
    assert summary.symbols is None
    assert [(o.client_id, o.status) for o in summary.orders] == [
        ("a", OrderStatus.FILLED),
        ("b", OrderStatus.REJECTED),
    ]
    assert summary.path == str(broker.path)


# -- property: no negative balances, value leaks only through costs ------------------------

_PRICES = {"AAA": 12.34, "BBB": 101.0, "CCC": 0.57}

_orders = st.lists(
    st.tuples(
        st.sampled_from(sorted(_PRICES)),
        st.sampled_from(list(Side)),
        # An int is a share count; "edge+k" sizes the order at what cash or holdings allow,
        # plus k, so the cash and holdings limits get probed from both sides.
        st.one_of(st.integers(min_value=-2, max_value=400), st.sampled_from(["edge+0", "edge+1"])),
    ),
    max_size=20,
)


def _size(spec: int | str, side: Side, price: float, cash: float, held: int, bps: float) -> int:
    if isinstance(spec, int):
        return spec
    extra = int(spec.removeprefix("edge+"))
    if side is Side.SELL:
        return held + extra
    return math.floor(cash / (price * (1 + bps / 10_000))) + extra


def _value(cash: float, positions: dict[str, int]) -> Decimal:
    marked = sum((Decimal(repr(_PRICES[s])) * n for s, n in positions.items()), Decimal(0))
    return Decimal(repr(cash)) + marked


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    cash_cents=st.integers(min_value=0, max_value=2_000_000),
    start=st.fixed_dictionaries({s: st.integers(0, 300) for s in _PRICES}),
    slippage_bps=st.sampled_from([0.0, 3.0, 12.5, 50.0]),
    per_share=st.sampled_from([0.0, 0.005, 0.01]),
    minimum=st.sampled_from([0.0, 0.35, 1.0]),
    orders=_orders,
)
def test_random_orders_keep_balances_non_negative_and_value_conserved(
    tmp_path_factory: pytest.TempPathFactory,
    cash_cents: int,
    start: dict[str, int],
    slippage_bps: float,
    per_share: float,
    minimum: float,
    orders: list[tuple[str, Side, int | str]],
) -> None:
    path = init_account(tmp_path_factory.mktemp("prop") / "paper.db", cash_cents / 100, start)
    broker = PaperBroker(
        path, slippage_bps=slippage_bps, commission_per_share=per_share, commission_min=minimum
    )
    cash, held = broker.cash(), broker.positions()
    for index, (symbol, side, spec) in enumerate(orders):
        price = _PRICES[symbol]
        shares = _size(spec, side, price, cash, held.get(symbol, 0), slippage_bps)
        order = broker.submit(OrderRequest(f"o{index}", symbol, side, shares, _PRICES[symbol]))
        new_cash, new_held = broker.cash(), broker.positions()

        assert new_cash >= 0
        assert all(n > 0 for n in new_held.values())
        loss = _value(cash, held) - _value(new_cash, new_held)
        if order.status is OrderStatus.FILLED:
            assert order.fill_price is not None
            slip = abs(Decimal(repr(order.fill_price)) - Decimal(repr(_PRICES[symbol]))) * shares
            costs = Decimal(repr(order.commission)) + slip
            # Only the notional's rounding to the cent may differ from the costs.
            assert abs(loss - costs) <= Decimal("0.005"), (loss, costs)
            signed = shares if side is Side.BUY else -shares
            assert new_held.get(symbol, 0) == held.get(symbol, 0) + signed
        else:
            assert order.status is OrderStatus.REJECTED
            assert (new_cash, new_held) == (cash, held)
        cash, held = new_cash, new_held
