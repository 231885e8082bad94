"""`fugger serve` as a caller sees it: a real server process on 127.0.0.1, real HTTP, real
SQLite stores, real API tokens and the access policy's roles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_fixture import Server, serving

from engine.audit.store import AuditStore
from engine.client import ApiCallError, FuggerClient, OrderIn
from engine.execution.paper import PaperBroker
from engine.timeutil import format_utc, utc_now

CALM = {"price": 100.0, "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
        "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}


def snap(symbol: str, **changes: Any) -> dict[str, Any]:
    return {"ts": format_utc(utc_now()), "symbol": symbol, **CALM, **changes}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("serve")) as s:
        yield s


def assert_error(r: Any, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message", "field"}
    assert err["code"] == code and err["message"]
    assert err["field"] == field


def test_health_metrics_and_schema_need_no_token(server: Server) -> None:
    with server.client() as c:
        assert c.get("/v1/health").json() == {"status": "ok", "reason": "ok"}
        metrics = c.get("/metrics")
        assert metrics.status_code == 200
        assert 'fugger_trading_state{state="ACTIVE"} 1.0' in metrics.text
        assert "fugger_request_seconds_bucket" in metrics.text
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/v1/decide", "/v1/orders", "/v1/state", "/v1/resume", "/v1/approvals",
                "/v1/alerts", "/v1/policies", "/v1/health"} <= set(paths)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/decide"), ("POST", "/v1/orders"), ("GET", "/v1/state"),
    ("POST", "/v1/resume"), ("GET", "/v1/approvals"), ("GET", "/v1/alerts"),
    ("POST", "/v1/approvals/x/approve"), ("GET", "/v1/decisions/x"), ("GET", "/v1/policies")])
def test_no_token_no_access(server: Server, method: str, path: str) -> None:
    with server.client() as c:
        assert_error(c.request(method, path, json={}), 401, "unauthenticated")
        bad = c.request(method, path, json={}, headers={"Authorization": "Bearer fgt_nope"})
        assert_error(bad, 401, "unauthenticated")


def test_a_role_without_the_right_gets_403_and_the_refusal_is_recorded(server: Server) -> None:
    with server.client("ann") as approver, server.client("tim") as trader:
        assert_error(approver.post("/v1/orders", json={"orders": [
            {"symbol": "AAA", "side": "BUY", "shares": 1, "price": 100.0}]}), 403, "forbidden")
        assert_error(trader.post("/v1/resume", json={"reason": "x"}), 403, "forbidden")
        assert trader.get("/v1/state").status_code == 200
    with AuditStore(server.audit) as store:
        refused = [r.body for r in store.iter_records("access") if not r.body["allowed"]]
    assert {(b["by"], b["action"]) for b in refused} >= {("ann", "trade"), ("tim", "resume")}


def test_caller_mistakes_are_400_naming_the_field(server: Server) -> None:
    with server.client("tim") as c:
        assert_error(c.post("/v1/decide", json={"snapshots": [1]}), 400, "invalid",
                     "snapshots.0")
        assert_error(c.post("/v1/orders", json={"orders": [
            {"symbol": "AAA", "side": "HOLD", "shares": 1, "price": 1.0}]}), 400, "invalid",
            "orders.0.side")
        assert_error(c.post("/v1/orders", json={"orders": [
            {"symbol": "AAA", "side": "BUY", "shares": 1.5, "price": 1.0}]}), 400, "invalid",
            "orders.0.shares")
        assert_error(c.get("/v1/decisions/nothing-here"), 404, "not_found")
    with server.client("ann") as c:
        assert_error(c.post("/v1/approvals/x/approve", json={}), 400, "invalid", "reason")


def test_bodies_are_read_by_the_strict_json_reader(server: Server) -> None:
    """A repeated key is never settled by taking the last value (here that would be allow),
    and a lone surrogate or broken text is the caller's 400, not a 500."""
    calm = json.dumps(snap("DUP"))[1:-1]
    with server.client("tim") as c:
        def post(text: str | bytes) -> Any:
            return c.post("/v1/decide", content=text,
                          headers={"Content-Type": "application/json"})
        assert_error(post('{"drift_score": 0.95, ' + calm + "}"), 400, "invalid",
                     "drift_score")
        assert_error(post('{"snapshots": [{"drift_score": 0.95, ' + calm + "}]}"), 400,
                     "invalid", "snapshots.0.drift_score")
        surrogate = post('{"symbol": "\\ud800", "ts": "2024-01-02T00:00:00Z"}')
        assert_error(surrogate, 400, "invalid")
        assert "surrogate" in surrogate.json()["error"]["message"]
        assert_error(post(b'{"symbol": "\xff"}'), 400, "invalid")
        assert_error(post("{"), 400, "invalid")
        assert_error(c.post("/v1/orders", content='{"orders": [], "orders": [{"symbol": "A", '
                            '"side": "BUY", "shares": 1, "price": 1.0}]}'), 400, "invalid",
                     "orders")
    with AuditStore(server.audit) as store:
        assert not [r for r in store.iter_records("decision")
                    if r.body["decision"].get("symbol") == "DUP"]


def test_each_decision_is_in_the_audit_store_when_the_response_arrives(server: Server) -> None:
    with server.client("tim") as c:
        one = c.post("/v1/decide", json=snap("DDD")).json()["decisions"]
        many = c.post("/v1/decide", json={"snapshots": [
            snap("EEE"), snap("FFF", coherence=0.3)]}).json()
        ids = [d["decision_id"] for d in one + many["decisions"]]
        with AuditStore(server.audit) as store:
            recorded = {r.ref: r.body for r in store.iter_records("decision")}
        assert all(i in recorded for i in ids)
        assert [d["action"] for d in many["decisions"]] == ["allow", "block_new"]
        why = c.get(f"/v1/decisions/{ids[0]}/why")
        assert why.status_code == 200 and "DDD" in json.dumps(why.json())
        assert c.get(f"/v1/decisions/{ids[0]}").json()["decision"]["symbol"] == "DDD"


def test_orders_pass_the_one_gate_and_a_client_id_is_never_sent_twice(server: Server) -> None:
    with server.client("tim") as c, server.client("ann") as approver:
        c.post("/v1/decide", json={"snapshots": [snap("AAA"), snap("BBB")]})
        first = c.post("/v1/orders", json={"orders": [
            {"symbol": "AAA", "side": "BUY", "shares": 10, "price": 100.0,
             "client_id": "bot-1"},
            {"symbol": "ZZZ", "side": "BUY", "shares": 10, "price": 100.0},
            {"symbol": "BBB", "side": "BUY", "shares": 3000, "price": 100.0,
             "client_id": "bot-big"}]}).json()["orders"]
        assert [(o["status"], o["rule"]) for o in first] == [
            ("filled", None), ("denied", "decision-missing"),
            ("pending_approval", "large-order-approval")]
        again = c.post("/v1/orders", json={"orders": [
            {"symbol": "AAA", "side": "BUY", "shares": 10, "price": 100.0,
             "client_id": "bot-1"}]}).json()["orders"]
        assert again[0]["duplicate"] is True and again[0]["status"] == "filled"
        assert PaperBroker(str(server.broker)).positions().get("AAA") == 10

        queue = approver.get("/v1/approvals").json()["approvals"]
        assert [i["item_id"] for i in queue] == ["bot-big"]
        done = approver.post("/v1/approvals/bot-big/approve",
                             json={"reason": "sized on purpose"}).json()
        assert (done["outcome"], done["decided_by"], done["reason"]) == (
            "approved", "ann", "sized on purpose")
        assert_error(approver.post("/v1/approvals/bot-big/reject", json={"reason": "late"}),
                     409, "conflict")
    with AuditStore(server.audit) as store:
        steps = [r.body["status"] for r in store.find("bot-1") if r.kind == "order"]
    assert steps == ["submitting", "filled"]


def test_a_halt_denies_orders_until_a_person_resumes(tmp_path: Path) -> None:
    with serving(tmp_path / "home") as server, server.client("tim") as bot, \
            server.client("rita") as risk:
        # A wrongly typed fact never yields allow: here it fails closed to a halt.
        bad = bot.post("/v1/decide", json=snap("AAA", drift_score="high")).json()
        assert bad["decisions"][0]["action"] == "halt"
        assert bot.get("/v1/state").json()["trading_state"]["state"] == "HALTED"
        denied = bot.post("/v1/orders", json={"orders": [
            {"symbol": "AAA", "side": "SELL", "shares": 1, "price": 100.0}]}).json()
        assert denied["orders"][0]["status"] == "denied"
        assert_error(risk.post("/v1/resume", json={"reason": "checked"}), 409, "conflict")
        bot.post("/v1/decide", json=snap("AAA"))
        resumed = risk.post("/v1/resume", json={"reason": "drift back to normal"}).json()
        assert resumed["trading_state"]["state"] == "ACTIVE"
        assert "rita" in resumed["trading_state"]["reason"]
        code, err = server.stop()
    assert code == 0, err
    assert "stopped" in err


def test_health_is_503_without_a_valid_policy_set(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "safety.yaml").write_text("kind: SafetyPolicy\nspec: [\n", encoding="utf-8")
    with serving(tmp_path / "home", policies=broken) as server, server.client("tim") as c:
        health = c.get("/v1/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert_error(c.post("/v1/decide", json=snap("AAA")), 409, "conflict")


def test_a_bot_loop_through_the_typed_client(server: Server) -> None:
    with FuggerClient(server.url, server.tokens["tim"]) as api:
        decisions = api.decide([snap("CCC"), snap("GGG", volatility=0.5)])
        orders = [OrderIn(d.symbol, "BUY", 5, 100.0) for d in decisions if d.all_clear and
                  d.symbol]
        outcomes = api.submit([*orders, OrderIn("GGG", "BUY", 5, 100.0)])
        assert [(o.status, o.held, o.denied) for o in outcomes] == [
            ("filled", False, False), ("denied", False, True)]
        assert outcomes[1].rule == "high-volatility-flatten"
        with pytest.raises(ApiCallError) as refused:
            api.resume("not my role")
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        assert api.health()


def test_a_kill_withdraws_what_waits_and_halts_until_a_person_resumes(tmp_path: Path) -> None:
    with serving(tmp_path / "home") as server, server.client("tim") as bot, \
            server.client("rita") as risk:
        bot.post("/v1/decide", json={"snapshots": [snap("AAA"), snap("BBB")]})
        held = bot.post("/v1/orders", json={"orders": [
            {"symbol": "BBB", "side": "BUY", "shares": 3000, "price": 100.0,
             "client_id": "big"}]}).json()["orders"]
        assert held[0]["status"] == "pending_approval"
        # A trader may not kill; the scope must be named exactly once; a reason is required.
        assert bot.post("/v1/kill", json={"all": True, "reason": "x"}).status_code == 403
        assert_error(risk.post("/v1/kill", json={"reason": "x"}), 400, "invalid", "symbols")
        assert_error(risk.post("/v1/kill", json={"all": True, "symbols": ["AAA"],
                                                 "reason": "x"}), 400, "invalid", "symbols")
        assert_error(risk.post("/v1/kill", json={"all": True, "side": "buy", "reason": "x"}),
                     400, "invalid", "side")
        assert_error(risk.post("/v1/kill", json={"all": True}), 400, "invalid", "reason")
        assert bot.get("/v1/approvals").json()["approvals"] != []

        killed = risk.post("/v1/kill", json={"all": True, "reason": "feed looks wrong"})
        assert killed.status_code == 200, killed.text
        body = killed.json()
        assert (body["by"], body["cancelled_approvals"]) == ("rita", ["big"])
        assert body["trading_state"]["state"] == "HALTED"
        assert bot.get("/v1/approvals").json()["approvals"] == []
        denied = bot.post("/v1/orders", json={"orders": [
            {"symbol": "AAA", "side": "BUY", "shares": 1, "price": 100.0}]}).json()
        assert denied["orders"][0]["status"] == "denied"

        resumed = risk.post("/v1/resume", json={"reason": "feed fixed"}).json()
        assert resumed["trading_state"]["state"] == "ACTIVE"
        assert server.stop()[0] == 0
    with AuditStore(server.audit) as store:
        (record,) = store.records("kill")
        alerts = [r.body for r in store.records("alert")]
    assert (record.body["by"], record.body["reason"]) == ("rita", "feed looks wrong")
    assert record.body["approvals"] == ["big"]
    assert any("kill" in json.dumps(a) and a.get("severity") == "critical" for a in alerts)
