"""The HTTP API in-process: the app of `fugger serve` (engine/service) on a real Runtime, real
SQLite stores, the frozen policies and the tests' access policy, called through the
framework's test client. A few end-to-end runs of the real server are in test_serve.py; here
each route's answers and records are read one by one."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import access_text, write_frozen_policies

with warnings.catch_warnings():
    # The framework's test client warns at import that it would rather have another HTTP
    # library; it works with the one the project pins.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from engine.access.loading import load_access
from engine.access.passwords import set_password
from engine.access.tokens import create
from engine.audit.store import AuditStore
from engine.execution.paper import PaperBroker, init_account
from engine.service.app import create_app
from engine.service.runtime import Runtime
from engine.timeutil import format_utc, utc_now

CALM = {"price": 100.0, "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
        "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}
HOLDERS = ("tim", "ann", "bob", "rita", "me")


def snap(symbol: str = "AAA", **changes: float) -> dict[str, Any]:
    return {"ts": format_utc(utc_now()), "symbol": symbol, **CALM, **changes}


@dataclass
class Api:
    client: TestClient
    runtime: Runtime
    store: AuditStore
    tokens: dict[str, str]
    home: Path

    def call(self, who: str | None, method: str, path: str, body: Any = None,
             **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        if body is not None:
            kwargs["content"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
            headers["content-type"] = "application/json"
        return self.client.request(method, path, headers=headers, **kwargs)

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [dict(r.body) for r in self.store.iter_records(kind)]


def start(home: Path, policies: Path | None = None,
          access_path: Path | None = None) -> Iterator[Api]:
    home.mkdir(parents=True, exist_ok=True)
    if policies is None:
        policies = write_frozen_policies(home / "policies")
    broker = str(home / "paper.db")
    init_account(broker, 1_000_000.0, {}, None)
    access = load_access(str(access_path or os.environ["FUGGER_ACCESS"]))
    with AuditStore(home / "audit.db") as store:
        tokens = {h: create(store, access, h, by="me", ttl=timedelta(days=1),
                            now=utc_now())[0] for h in HOLDERS}
        runtime = Runtime(str(policies), store, PaperBroker(broker), broker)
        try:
            with TestClient(create_app(runtime, access)) as client:
                yield Api(client, runtime, store, tokens, home)
        finally:
            runtime.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from start(tmp_path / "home")


def test_a_decision_is_recorded_and_answered(api: Api) -> None:
    r = api.call("tim", "POST", "/v1/decide", snap())
    assert r.status_code == 200, r.text
    [d] = r.json()["decisions"]
    assert d["action"] == "allow"
    assert [b["decision"]["decision_id"] for b in api.records("decision")] == [d["decision_id"]]


def error(r: Any, status: int, code: str, field: str | None = None) -> str:
    """The message of an error answer, after checking its status, code and field."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == (code, field), err
    return str(err["message"])


def refusals(api: Api) -> list[tuple[str, str, str | None]]:
    return [(b["by"], b["action"], b["target"]) for b in api.records("access")
            if not b["allowed"]]


# -- who is calling ------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Basic abc", "Bearer ", "Bearer    "])
def test_a_request_without_a_bearer_token_is_401_and_changes_nothing(
        api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = api.client.post("/v1/decide", content=json.dumps(snap()), headers=headers)
    assert "API token is required" in error(r, 401, "unauthenticated")
    assert api.records("decision") == []


def test_a_token_nobody_was_given_is_401_and_the_refusal_is_recorded(api: Api) -> None:
    forged = "fgt_tk-0123456789abcdef_" + "A" * 43
    r = api.client.get("/v1/state", headers={"Authorization": f"Bearer {forged}"})
    assert "no token tk-0123456789abcdef" in error(r, 401, "unauthenticated")
    assert refusals(api) == [("token:tk-0123456789abcdef", "read", None)]


def test_a_role_without_the_action_is_403_naming_the_role_and_the_refusal_is_recorded(
        api: Api) -> None:
    r = api.call("tim", "POST", "/v1/resume", {"reason": "let me"})
    assert error(r, 403, "forbidden") == "tim may not resume: needs role risk; tim holds trader"
    r = api.call("ann", "POST", "/v1/orders", {"orders": [
        {"symbol": "AAA", "side": "BUY", "shares": 1, "price": 100.0}]})
    assert "ann may not trade" in error(r, 403, "forbidden")
    assert refusals(api) == [("tim", "resume", "book"), ("ann", "trade", "orders")]
    assert api.records("order") == []
    alerts = [a["message"] for a in api.records("alert")]
    assert any("tim" in m and "resume" in m for m in alerts), alerts


def test_an_allowed_action_is_recorded_under_the_callers_name_and_token(api: Api) -> None:
    assert api.call("tim", "POST", "/v1/decide", snap()).status_code == 200
    allowed = [b for b in api.records("access") if b["allowed"]]
    assert [(b["by"], b["action"], b["target"]) for b in allowed] == [("tim", "trade", "decide")]
    assert allowed[0]["via"].startswith("token tk-")
    # Reading is allowed to anyone the policy names and is not journalled.
    assert api.call("ann", "GET", "/v1/state").status_code == 200
    assert len(api.records("access")) == 1


def test_me_names_the_caller_and_what_the_policy_allows_them(api: Api) -> None:
    me = api.call("rita", "GET", "/v1/me").json()
    assert (me["name"], me["kind"]) == ("rita", "person")
    assert me["via"].startswith("token tk-")
    assert me["actions"] == ["kill", "reenable", "resume"]


# -- what a request may carry ----------------------------------------------------------------


@pytest.mark.parametrize(("body", "message", "field"), [
    (b'{"symbol": "\xff"}', "the body is not UTF-8 text (byte 12)", None),
    ("{", "the body is not JSON: Expecting property name enclosed in double quotes at line 1 "
          "column 2", None),
    ("[" * 100_000 + "]" * 100_000, "the body is nested too deeply", None),
    ('{"a": {"b": [1, {"c": 1, "c": 2}]}}', "this key is given more than once; which value "
                                           "was meant would be a guess", "a.b.1.c"),
    ('[{"x": 1, "x": 1}]', "this key is given more than once; which value was meant would "
                          "be a guess", "0.x"),
])
def test_a_body_the_strict_reader_refuses_is_a_400_saying_why(
        api: Api, body: str | bytes, message: str, field: str | None) -> None:
    assert error(api.call("tim", "POST", "/v1/decide", body), 400, "invalid", field) == message
    assert api.records("decision") == []


def test_a_body_larger_than_the_limit_is_refused(api: Api) -> None:
    from engine.service.body import MAX_BODY_BYTES
    huge = '{"pad": "' + "x" * MAX_BODY_BYTES + '"}'
    r = api.call("tim", "POST", "/v1/decide", huge)
    assert error(r, 400, "invalid") == f"the body is larger than {MAX_BODY_BYTES} bytes"
    at_limit = '{"pad": "' + "x" * (MAX_BODY_BYTES - 11) + '"}'
    assert len(at_limit) == MAX_BODY_BYTES
    # Read whole and decided (a snapshot of no known fact, which fails closed).
    [d] = api.call("tim", "POST", "/v1/decide", at_limit).json()["decisions"]
    assert d["action"] == "halt"


@pytest.mark.parametrize(("body", "message", "field"), [
    ({"snapshots": []}, "snapshots must be a non-empty list of objects", "snapshots"),
    ({"snapshots": {"symbol": "AAA"}}, "snapshots must be a non-empty list of objects",
     "snapshots"),
    ({"snapshots": [{"symbol": "AAA"}, 1]}, "each snapshot must be an object", "snapshots.1"),
    ([1, 2], 'the body must be a snapshot object or {"snapshots": [...]}', None),
])
def test_a_decide_that_is_not_snapshots_is_refused_naming_the_field(
        api: Api, body: Any, message: str, field: str | None) -> None:
    assert error(api.call("tim", "POST", "/v1/decide", body), 400, "invalid", field) == message


def test_a_decide_takes_at_most_the_batch_limit(api: Api) -> None:
    from engine.service.app import MAX_BATCH
    r = api.call("tim", "POST", "/v1/decide", {"snapshots": [{}] * (MAX_BATCH + 1)})
    assert error(r, 400, "invalid", "snapshots") == f"at most {MAX_BATCH} snapshots a request"
    r = api.call("tim", "POST", "/v1/orders", {"orders": [{}] * (MAX_BATCH + 1)})
    assert error(r, 400, "invalid", "orders") == f"at most {MAX_BATCH} orders a request"


def test_a_batch_of_exactly_the_limit_is_decided(api: Api) -> None:
    from engine.service.app import MAX_BATCH
    r = api.call("tim", "POST", "/v1/decide", {"snapshots": [snap(f"S{n}")
                                                             for n in range(MAX_BATCH)]})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["decisions"]) == MAX_BATCH


GOOD_ORDER = {"symbol": "AAA", "side": "BUY", "shares": 1, "price": 100.0}


@pytest.mark.parametrize(("change", "message", "field"), [
    ({"symbol": ""}, "symbol must be a non-empty string", "orders.0.symbol"),
    ({"symbol": "  "}, "symbol must be a non-empty string", "orders.0.symbol"),
    ({"symbol": 7}, "symbol must be a non-empty string", "orders.0.symbol"),
    ({"side": "buy"}, "side must be BUY or SELL", "orders.0.side"),
    ({"shares": 0}, "shares must be a whole number above 0", "orders.0.shares"),
    ({"shares": -5}, "shares must be a whole number above 0", "orders.0.shares"),
    ({"shares": True}, "shares must be a whole number above 0", "orders.0.shares"),
    ({"shares": 2.5}, "shares must be a whole number above 0", "orders.0.shares"),
    ({"price": 0}, "price must be a finite number above 0", "orders.0.price"),
    ({"price": -1.0}, "price must be a finite number above 0", "orders.0.price"),
    ({"price": True}, "price must be a finite number above 0", "orders.0.price"),
    ({"price": "100"}, "price must be a finite number above 0", "orders.0.price"),
    ({"price": 1e309}, "price must be a finite number above 0", "orders.0.price"),
    ({"client_id": ""}, "client_id must be a string of 1 to 64 characters", "orders.0.client_id"),
    ({"client_id": "x" * 65}, "client_id must be a string of 1 to 64 characters",
     "orders.0.client_id"),
    ({"client_id": 12}, "client_id must be a string of 1 to 64 characters", "orders.0.client_id"),
])
def test_an_order_the_gate_could_not_judge_is_refused_naming_its_field(
        api: Api, change: dict[str, Any], message: str, field: str) -> None:
    api.call("tim", "POST", "/v1/decide", snap())
    body = json.dumps({"orders": [{**GOOD_ORDER, **change}]}).replace("Infinity", "1e309")
    assert error(api.call("tim", "POST", "/v1/orders", body), 400, "invalid", field) == message
    assert api.records("order") == []


@pytest.mark.parametrize("body", [{"orders": []}, {"orders": {"symbol": "AAA"}}, [GOOD_ORDER],
                                  {"order": [GOOD_ORDER]}])
def test_orders_must_be_a_non_empty_list(api: Api, body: Any) -> None:
    r = api.call("tim", "POST", "/v1/orders", body)
    assert error(r, 400, "invalid", "orders") == "orders must be a non-empty list"


def test_each_order_must_be_an_object(api: Api) -> None:
    r = api.call("tim", "POST", "/v1/orders", {"orders": [GOOD_ORDER, "AAA"]})
    assert error(r, 400, "invalid", "orders.1") == "each order must be an object"


def test_the_smallest_valid_order_and_a_client_id_of_64_characters_go_through(
        api: Api) -> None:
    api.call("tim", "POST", "/v1/decide", snap())
    cid = "c" * 64
    r = api.call("tim", "POST", "/v1/orders", {"orders": [
        {"symbol": "AAA", "side": "BUY", "shares": 1, "price": 1, "client_id": cid},
        {"symbol": "AAA", "side": "SELL", "shares": 1, "price": 0.01, "client_id": "s"}]})
    assert r.status_code == 200, r.text
    assert [(o["client_id"], o["status"]) for o in r.json()["orders"]] == [
        (cid, "filled"), ("s", "filled")]


@pytest.mark.parametrize(("body", "message", "field"), [
    ("[]", "the body must be an object", None),
    ({"all": "yes", "reason": "r"}, "all must be true or false", "all"),
    ({"all": 1, "reason": "r"}, "all must be true or false", "all"),
    ({"symbols": "AAA", "reason": "r"}, "symbols must be a list of symbol names", "symbols"),
    ({"symbols": ["AAA", ""], "reason": "r"}, "symbols must be a list of symbol names",
     "symbols"),
    ({"symbols": ["AAA", 3], "reason": "r"}, "symbols must be a list of symbol names",
     "symbols"),
    ({"reason": "r"}, "name the scope: all, or one or more symbols (not both)", "symbols"),
    ({"all": False, "symbols": [], "reason": "r"},
     "name the scope: all, or one or more symbols (not both)", "symbols"),
    ({"all": True, "symbols": ["AAA"], "reason": "r"},
     "name the scope: all, or one or more symbols (not both)", "symbols"),
    ({"all": True, "side": "sell", "reason": "r"}, "side must be BUY or SELL", "side"),
    ({"all": True}, "a reason is required", "reason"),
    ({"all": True, "reason": "  "}, "a reason is required", "reason"),
    ({"all": True, "reason": 5}, "a reason is required", "reason"),
])
def test_a_kill_names_its_scope_exactly_once_with_a_reason(
        api: Api, body: Any, message: str, field: str | None) -> None:
    r = api.call("rita", "POST", "/v1/kill", body)
    assert error(r, 400, "invalid", field) == message
    assert api.records("kill") == []
    assert api.call("rita", "GET", "/v1/state").json()["trading_state"]["state"] == "ACTIVE"


def test_a_kill_of_some_symbols_on_one_side_refuses_those_orders_only(api: Api) -> None:
    api.call("tim", "POST", "/v1/decide", {"snapshots": [snap("AAA"), snap("BBB")]})
    bought = api.call("tim", "POST", "/v1/orders", {"orders": [{**GOOD_ORDER, "shares": 2}]})
    assert bought.json()["orders"][0]["status"] == "filled"
    r = api.call("rita", "POST", "/v1/kill", {"symbols": ["BBB", "AAA", "BBB"], "side": "BUY",
                                              "reason": "feed looks wrong"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["scope"], body["by"], body["reason"]) == (
        "AAA, BBB (BUY orders)", "rita", "feed looks wrong")
    assert body["trading_state"]["kills"][0]["symbols"] == ["AAA", "BBB"]
    orders = api.call("tim", "POST", "/v1/orders", {"orders": [
        {**GOOD_ORDER, "symbol": "BBB"}, {**GOOD_ORDER, "side": "SELL"},
        GOOD_ORDER]}).json()["orders"]
    assert [(o["status"], o["rule"]) for o in orders] == [
        ("denied", "kill-switch"), ("filled", None), ("denied", "kill-switch")]
    assert "killed for AAA, BBB (BUY orders)" in orders[0]["reason"]
    [record] = api.records("kill")
    assert (record["by"], record["symbols"], record["side"]) == ("rita", ["AAA", "BBB"], "BUY")


# -- the routes ------------------------------------------------------------------------------


def held(api: Api, cid: str = "big", symbol: str = "AAA") -> None:
    """An order of `symbol` the approval policy holds (notional above 250,000)."""
    api.call("tim", "POST", "/v1/decide", snap(symbol))
    r = api.call("tim", "POST", "/v1/orders", {"orders": [
        {"symbol": symbol, "side": "BUY", "shares": 3000, "price": 100.0, "client_id": cid}]})
    assert r.json()["orders"][0]["status"] == "pending_approval", r.text


def test_the_queue_shows_who_approved_and_a_person_decides_each_item_once(api: Api) -> None:
    held(api)
    [item] = api.call("ann", "GET", "/v1/approvals").json()["approvals"]
    assert (item["item_id"], item["requested_by"], item["approvals"]) == ("big", "tim", [])
    r = api.call("tim", "POST", "/v1/approvals/big/approve", {"reason": "mine"})
    assert "tim may not approve" in error(r, 403, "forbidden")
    error(api.call("ann", "POST", "/v1/approvals/big/approve", {"reason": " "}), 400,
          "invalid", "reason")
    done = api.call("ann", "POST", "/v1/approvals/big/approve", {"reason": "sized on purpose"})
    assert done.status_code == 200, done.text
    assert (done.json()["outcome"], done.json()["decided_by"]) == ("approved", "ann")
    assert api.call("ann", "GET", "/v1/approvals").json()["approvals"] == []
    late = api.call("bob", "POST", "/v1/approvals/big/reject", {"reason": "too big"})
    assert "was already approved by ann" in error(late, 409, "conflict")
    error(api.call("bob", "POST", "/v1/approvals/nothing/reject", {"reason": "x"}), 409,
          "conflict")


def test_a_rejection_is_answered_and_ends_the_order(api: Api) -> None:
    held(api)
    r = api.call("bob", "POST", "/v1/approvals/big/reject", {"reason": "too big"})
    assert (r.json()["outcome"], r.json()["decided_by"], r.json()["reason"]) == (
        "rejected", "bob", "too big")
    latest = api.call("tim", "GET", "/v1/orders").json()["orders"]
    assert [(o["client_id"], o["status"]) for o in latest] == [("big", "rejected")]


def test_the_queue_lists_each_approval_given_so_far(tmp_path: Path) -> None:
    policies = write_frozen_policies(tmp_path / "policies")
    approval = policies / "approval.yaml"
    approval.write_text(approval.read_text(encoding="utf-8").replace(
        "action: require_approval", "action: require_approval\n      approvers: 2"),
        encoding="utf-8")
    for api in start(tmp_path / "home", policies):
        held(api)
        api.call("ann", "POST", "/v1/approvals/big/approve", {"reason": "first"})
        [item] = api.call("bob", "GET", "/v1/approvals").json()["approvals"]
        assert item["approvers_required"] == 2
        assert [a["by"] for a in item["approvals"]] == ["ann"]
        assert item["approvals"][0]["at"]


def test_orders_lists_the_latest_step_of_each_order_newest_first(api: Api) -> None:
    api.call("tim", "POST", "/v1/decide", snap())
    for cid in ("one", "two", "three"):
        api.call("tim", "POST", "/v1/orders", {"orders": [{**GOOD_ORDER, "client_id": cid}]})
    listed = api.call("ann", "GET", "/v1/orders").json()["orders"]
    assert [(o["client_id"], o["status"]) for o in listed] == [
        ("three", "filled"), ("two", "filled"), ("one", "filled")]
    assert set(listed[0]) == {"client_id", "ts", "symbol", "side", "shares", "price",
                              "status", "rule", "reason"}
    assert [o["client_id"] for o in api.call("ann", "GET", "/v1/orders?limit=2")
            .json()["orders"]] == ["three", "two"]
    assert len(api.call("ann", "GET", "/v1/orders?limit=0").json()["orders"]) == 0


def test_decisions_are_filtered_by_symbol_action_rule_and_time(api: Api) -> None:
    early, late = "2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"
    made = api.call("tim", "POST", "/v1/decide", {"snapshots": [
        snap("AAA"), snap("BBB", coherence=0.3), snap("CCC")]}).json()["decisions"]
    ids = [d["decision_id"] for d in made]

    def listed(query: str = "") -> list[str]:
        r = api.call("ann", "GET", "/v1/decisions" + query)
        assert r.status_code == 200, r.text
        return [d["decision_id"] for d in r.json()["decisions"]]

    assert listed() == ids[::-1]
    assert listed("?symbol=BBB") == [ids[1]]
    assert listed("?action=allow") == [ids[2], ids[0]]
    assert listed("?rule=coherence-break-block") == [ids[1]]
    assert listed(f"?since={early}&until={late}") == ids[::-1]
    assert listed(f"?since={late}") == []
    assert listed(f"?until={early}") == []
    assert listed("?limit=2") == [ids[2], ids[1]]
    assert listed("?limit=0") == [ids[2]]
    [first] = api.call("ann", "GET", "/v1/decisions?symbol=BBB").json()["decisions"]
    assert (first["symbol"], first["action"], first["rule"]) == (
        "BBB", "block_new", "coherence-break-block")


def test_a_decision_and_why_it_was_made(api: Api) -> None:
    [d] = api.call("tim", "POST", "/v1/decide", snap("DDD", coherence=0.3)).json()["decisions"]
    one = api.call("ann", "GET", f"/v1/decisions/{d['decision_id']}").json()
    assert one["decision"]["symbol"] == "DDD"
    why = api.call("ann", "GET", f"/v1/decisions/{d['decision_id']}/why")
    assert why.status_code == 200 and "coherence-break-block" in why.text
    assert error(api.call("ann", "GET", "/v1/decisions/nope"), 404, "not_found") == \
        "no decision 'nope'"
    assert error(api.call("ann", "GET", "/v1/decisions/nope/why"), 404, "not_found") == \
        "no decision 'nope'"


def test_state_shows_each_symbols_latest_decision_against_the_rails(api: Api) -> None:
    [d] = api.call("tim", "POST", "/v1/decide", snap("AAA", volatility=0.3)).json()["decisions"]
    state = api.call("ann", "GET", "/v1/state").json()
    assert state["trading_state"]["state"] == "ACTIVE"
    latest = state["latest"]["AAA"]
    assert (latest["decision_id"], latest["action"], latest["rule"]) == (
        d["decision_id"], "allow", None)
    rails = {c["rule"]: c for c in latest["rails"]}
    assert "high-volatility-flatten" in rails, latest["rails"]


def test_a_halt_is_resumed_only_by_a_person_once_the_rule_stops_firing(api: Api) -> None:
    api.call("tim", "POST", "/v1/decide", snap("AAA", drift_score=0.95))
    assert api.call("tim", "GET", "/v1/state").json()["trading_state"]["state"] == "HALTED"
    refused = api.call("rita", "POST", "/v1/resume", {"reason": "checked"})
    assert "resume refused: a halting rule still fires" in error(refused, 409, "conflict")
    error(api.call("rita", "POST", "/v1/resume", {}), 400, "invalid", "reason")
    api.call("tim", "POST", "/v1/decide", snap("AAA"))
    r = api.call("rita", "POST", "/v1/resume", {"reason": "drift back to normal"})
    assert r.json()["trading_state"]["state"] == "ACTIVE"
    [*_, change] = api.records("trading_state")
    assert (change["state"], change["by"], change["via"]) == ("ACTIVE", "rita", "api")


def test_an_alert_is_acknowledged_once_under_the_persons_name(api: Api) -> None:
    api.call("tim", "POST", "/v1/resume", {"reason": "x"})  # refused: raises an alert
    [alert] = api.call("ann", "GET", "/v1/alerts").json()["alerts"]
    assert alert["acknowledged"] is None
    aid = alert["alert_id"]
    bad = api.call("ann", "POST", f"/v1/alerts/{aid}/ack", {"note": 5})
    assert error(bad, 400, "invalid", "note") == "note must be text"
    ok = api.call("ann", "POST", f"/v1/alerts/{aid}/ack", {"note": "seen"})
    assert (ok.json()["by"], ok.json()["note"]) == ("ann", "seen")
    again = api.call("bob", "POST", f"/v1/alerts/{aid}/ack", [])
    assert "already acknowledged by ann" in error(again, 409, "conflict")
    assert error(api.call("bob", "POST", "/v1/alerts/nope/ack", {}), 404, "not_found") == \
        "no alert 'nope'"
    [seen] = api.call("bob", "GET", "/v1/alerts").json()["alerts"]
    assert seen["acknowledged"]["by"] == "ann"
    assert api.call("bob", "GET", "/v1/alerts?limit=0").json()["alerts"] == [seen]


def test_policies_show_the_active_set_its_history_and_the_diff_of_two(tmp_path: Path) -> None:
    policies = write_frozen_policies(tmp_path / "policies")
    for api in start(tmp_path / "home", policies):
        first = api.call("ann", "GET", "/v1/policies").json()
        old = first["active"]["hash"]
        assert sorted(p["name"] for p in first["active"]["policies"]) == [
            "core-safety", "human-approval"]
        assert [(h["hash"], h["scope"]) for h in first["history"]] == [(old, "live")]
        safety = policies / "safety.yaml"
        safety.write_text(safety.read_text(encoding="utf-8").replace("0.35", "0.3"),
                          encoding="utf-8")
        os.utime(safety, (1, 2_000_000_000))
        api.call("tim", "POST", "/v1/decide", snap())
        second = api.call("ann", "GET", "/v1/policies").json()
        new = second["active"]["hash"]
        assert new != old and [h["hash"] for h in second["history"]] == [old, new]
        assert any(e["kind"] == "activated" for e in second["events"])
        diff = api.call("ann", "GET", f"/v1/policies/diff?old={old}&new={new}")
        assert diff.status_code == 200 and "high-volatility-flatten" in diff.text
        missing = api.call("ann", "GET", f"/v1/policies/diff?old={old}&new=nothing")
        assert error(missing, 404, "not_found") == (
            "no activation of policy set 'nothing' with valid policy text (new)")
        missing = api.call("ann", "GET", f"/v1/policies/diff?old=nothing&new={new}")
        assert "(old)" in error(missing, 404, "not_found")


def test_health_and_metrics_need_no_token(api: Api) -> None:
    assert api.client.get("/v1/health").json() == {"status": "ok", "reason": "ok"}
    held(api)
    metrics = api.client.get("/metrics").text
    assert 'fugger_trading_state{state="ACTIVE"} 1.0' in metrics
    assert "fugger_approvals_waiting 1.0" in metrics
    assert 'fugger_gate_outcomes_total{status="pending_approval"} 1.0' in metrics
    assert 'fugger_decisions_total{action="allow",rule=""} 1.0' in metrics
    assert 'fugger_trading_state{state="HALTED"} 0.0' in metrics
    assert 'fugger_request_seconds_count{method="POST",route="/v1/orders"} 1.0' in metrics
    oldest = next(line for line in metrics.splitlines()
                  if line.startswith("fugger_approval_oldest_age_seconds "))
    assert float(oldest.split()[1]) >= 0.0


def test_health_is_503_and_decisions_are_refused_without_a_valid_policy_set(
        tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "safety.yaml").write_text("kind: SafetyPolicy\nspec: [\n", encoding="utf-8")
    for api in start(tmp_path / "home", broken):
        health = api.client.get("/v1/health")
        assert (health.status_code, health.json()) == (
            503, {"status": "unavailable", "reason": "no valid policy set is active"})
        r = api.call("tim", "POST", "/v1/decide", snap())
        assert "no valid policy set is active" in error(r, 409, "conflict")
        assert api.call("ann", "GET", "/v1/policies").json()["active"] is None


def test_unknown_routes_and_methods_answer_in_the_error_shape(api: Api) -> None:
    error(api.call("ann", "GET", "/v1/nothing"), 404, "not_found")
    error(api.call("ann", "DELETE", "/v1/state"), 405, "method_not_allowed")
    r = api.call("ann", "GET", "/v1/orders?limit=many")
    assert r.status_code == 400 and r.json()["error"]["field"] == "limit"


# -- the dashboard's sessions ----------------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture
def page_api(tmp_path: Path) -> Iterator[Api]:
    """The service with an access policy in which ann and tim have dashboard passwords."""
    access = tmp_path / "access.yaml"
    access.write_text(access_text(), encoding="utf-8")
    for name in ("ann", "tim"):
        set_password(str(access), name, PASSWORD + name)
    yield from start(tmp_path / "home", access_path=access)


def log_in(api: Api, name: str, password: str | None = None, **headers: str) -> Any:
    return api.client.post("/ui/login", content=json.dumps(
        {"name": name, "password": password or PASSWORD + name}),
        headers={"content-type": "application/json", **headers})


def test_a_person_logs_in_and_acts_with_the_cookie_and_its_csrf_token(page_api: Api) -> None:
    r = log_in(page_api, "ann")
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf"]
    assert r.json()["name"] == "ann"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain http in the tests: a secure cookie would be dropped
    assert page_api.client.get("/ui/session").json() == {"name": "ann", "csrf": csrf}
    me = page_api.client.get("/v1/me").json()
    assert (me["name"], me["via"]) == ("ann", "dashboard session")
    # A request that changes anything needs the CSRF token as well as the cookie.
    held_by_tim = page_api.call("tim", "POST", "/v1/decide", snap())
    assert held_by_tim.status_code == 200
    no_csrf = page_api.client.post("/v1/alerts/x/ack", content="{}")
    assert error(no_csrf, 403, "csrf").endswith("(header x-csrf-token)")
    other = csrf[:-1] + ("B" if csrf.endswith("A") else "A")  # one character off
    wrong = page_api.client.post("/v1/alerts/x/ack", content="{}",
                                 headers={"x-csrf-token": other})
    error(wrong, 403, "csrf")
    ok = page_api.client.post("/v1/alerts/x/ack", content="{}", headers={"x-csrf-token": csrf})
    error(ok, 404, "not_found")  # past the session check: there is no such alert
    logins = [b for b in page_api.records("access") if b["action"] == "login"]
    assert [(b["by"], b["allowed"], b["target"]) for b in logins] == [("ann", True, "dashboard")]


def test_logging_out_ends_the_session(page_api: Api) -> None:
    assert log_in(page_api, "ann").status_code == 200
    out = page_api.client.post("/ui/logout")
    assert out.json() == {"ok": True}
    assert error(page_api.client.get("/ui/session"), 401, "unauthenticated") == "not logged in"
    error(page_api.client.get("/v1/state"), 401, "unauthenticated")


@pytest.mark.parametrize(("name", "password"), [("ann", "wrong password!"),
                                                ("nobody", "any password at all"),
                                                ("bob", "bob has no password")])
def test_a_wrong_name_or_password_is_one_answer_and_recorded(
        page_api: Api, name: str, password: str) -> None:
    r = log_in(page_api, name, password)
    assert error(r, 401, "unauthenticated") == "unknown name or wrong password"
    assert refusals(page_api) == [(name, "login", "dashboard")]
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize(("body", "field"), [({"password": "x" * 20}, "name"),
                                             ({"name": "", "password": "x" * 20}, "name"),
                                             ({"name": "ann"}, "password"),
                                             ({"name": "ann", "password": 5}, "password"),
                                             ([], "name")])
def test_a_login_without_a_name_or_password_is_400(page_api: Api, body: Any,
                                                   field: str) -> None:
    r = page_api.client.post("/ui/login", content=json.dumps(body))
    assert error(r, 400, "invalid", field) == f"{field} is required"


def test_logging_in_or_out_from_another_site_is_refused(page_api: Api) -> None:
    r = log_in(page_api, "ann", origin="https://evil.example")
    assert error(r, 403, "forbidden") == "a request from another site"
    assert log_in(page_api, "ann", origin="http://testserver").status_code == 200
    out = page_api.client.post("/ui/logout", headers={"origin": "https://evil.example"})
    error(out, 403, "forbidden")
    assert page_api.client.get("/ui/session").status_code == 200


def test_the_page_and_its_files_ship_with_the_service(page_api: Api) -> None:
    page = page_api.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    js = page_api.client.get("/static/app.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert page_api.client.get("/static/app.css").headers["content-type"].startswith(
        "text/css")
    assert error(page_api.client.get("/static/secret.py"), 404, "not_found") == \
        "no file 'secret.py'"
