// The FuggerBot dashboard: reads and acts only through the /v1 API of the service that serves
// it. Everything that came from input (symbols, reasons, rule ids, messages) is set as text,
// never as HTML.
"use strict";

const POLL_MS = 2000;
let me = null;          // {name, actions}
let csrf = null;
let timer = null;

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c == null ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function fill(tbodyId, rows) {
  $(tbodyId).replaceChildren(...rows);
}

function may(action) {
  return me !== null && me.actions.includes(action);
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, {method, headers, credentials: "same-origin",
                               body: body === undefined ? undefined : JSON.stringify(body)});
  let doc = null;
  try { doc = await r.json(); } catch (e) { doc = null; }
  if (r.status === 401 && !path.startsWith("/ui/")) { showLogin(); throw new Error("log in"); }
  if (!r.ok) {
    const err = doc && doc.error ? doc.error : {message: r.statusText};
    throw new Error(err.message + (err.field ? " (" + err.field + ")" : ""));
  }
  return doc;
}

function showError(e) {
  $("error").textContent = e ? String(e.message || e) : "";
}

function age(fromIso, toMs) {
  const s = Math.max(0, Math.round(((toMs || Date.now()) - Date.parse(fromIso)) / 1000));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

// --- pages --------------------------------------------------------------------------------

async function overview() {
  const [st, pol] = await Promise.all([api("GET", "/v1/state"), api("GET", "/v1/policies")]);
  const ts = st.trading_state;
  $("state").textContent = ts.state;
  $("state-box").dataset.state = ts.state;
  $("state-since").textContent = ts.since || "";
  $("state-reason").textContent = (ts.rule ? ts.rule + ": " : "") + (ts.reason || "");
  $("resume-form").hidden = !(ts.state !== "ACTIVE" && may("resume"));
  $("kill-form").hidden = !may("kill");
  const latest = Object.entries(st.latest).sort((a, b) => a[0].localeCompare(b[0]));
  fill("latest-rows", latest.map(([sym, d]) => row([sym, el("span", d.action, "action " + d.action),
                                               d.rule || "", d.ts, whyLink(d.decision_id),
                                               railsList(d.rails || [])])));
  const active = pol.active;
  $("policy-hash").textContent = active ? "set " + active.hash.slice(0, 12) : "no valid set";
  $("policy-list").replaceChildren(...(active ? active.policies : []).map(
    (p) => el("li", p.kind + " " + p.name + " " + p.version)));
}

// Every comparison of every rail with its margin (computed by the engine), nearest first; a
// comparison of a fact that is unknown or not a number shows its observed value only.
function railsList(rails) {
  const items = [];
  for (const r of rails) {
    for (const c of r.comparisons) items.push([r, c]);
  }
  items.sort((a, b) => (a[1].margin ?? Infinity) - (b[1].margin ?? Infinity));
  const ul = el("ul", null, "rails");
  for (const [r, c] of items) {
    const seen = c.observed === null ? "unknown" : c.observed;
    const tripped = r.matched || (c.margin !== null && c.margin <= 0);
    const room = c.margin === null ? "" : tripped ? " (tripped)" : " (" + fmt(c.margin) + " to go)";
    ul.appendChild(el("li", c.fact + " " + seen + " vs " + c.op + " " + c.threshold + room +
                      ": " + r.rule + " → " + r.action, tripped ? "tripped" : "clear"));
  }
  return ul;
}

function fmt(x) {
  return Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(3)).toString();
}

async function approvals() {
  const {approvals: items} = await api("GET", "/v1/approvals");
  $("approvals-count").textContent = items.length ? String(items.length) : "";
  $("approvals-empty").hidden = items.length > 0;
  const now = Date.now();
  fill("approvals-rows", items.map((i) => row([
    i.item_id, i.side + " " + i.shares + " " + i.symbol + " @ " + i.price, i.rule,
    i.requested_by, age(i.requested_at, now),
    age(new Date(now).toISOString(), Date.parse(i.expires_at)),
    el("span", i.approvals.length + " of " + i.approvers_required +
       (i.approvals.length ? ": " + i.approvals.map((a) => a.by).join(", ") : ""), "progress"),
    may("approve") || may("reject") ? decideForm(i) : el("span", "approver role needed", "hint"),
  ])));
}

function decideForm(item) {
  const form = el("form", null, "decide");
  const reason = el("input");
  reason.placeholder = "reason (required)";
  reason.required = true;
  reason.className = "reason";
  form.appendChild(reason);
  for (const [label, verb, action] of [["Approve", "approve", "approve"],
                                        ["Reject", "reject", "reject"]]) {
    if (!may(action)) continue;
    const b = el("button", label);
    b.type = "button";
    b.className = verb;
    b.addEventListener("click", async () => {
      if (!reason.value.trim()) { reason.reportValidity(); return; }
      try {
        await api("POST", "/v1/approvals/" + encodeURIComponent(item.item_id) + "/" + verb,
                  {reason: reason.value});
        showError(null);
        await approvals();
      } catch (e) { showError(e); }
    });
    form.appendChild(b);
  }
  return form;
}

function whyLink(id) {
  const a = el("a", id ? id.slice(-8) : "");
  a.href = "#decisions";
  a.className = "why-link";
  a.dataset.id = id || "";
  a.addEventListener("click", () => { showWhy(id); });
  return a;
}

async function showWhy(id) {
  const doc = await api("GET", "/v1/decisions/" + encodeURIComponent(id) + "/why");
  $("why").hidden = false;
  $("why-id").textContent = id;
  $("why-text").textContent = JSON.stringify(doc, null, 2);
}

async function decisions() {
  const q = new URLSearchParams();
  for (const [k, id] of [["symbol", "f-symbol"], ["action", "f-action"], ["rule", "f-rule"],
                         ["since", "f-since"], ["until", "f-until"]]) {
    if ($(id).value) q.set(k, $(id).value);
  }
  q.set("limit", "200");
  const {decisions: ds} = await api("GET", "/v1/decisions?" + q.toString());
  fill("decisions-rows", ds.map((d) => row([d.ts, d.symbol, el("span", d.action, "action " + d.action),
                                       d.rule || "", whyLink(d.decision_id)])));
}

async function orders() {
  const {orders: os} = await api("GET", "/v1/orders?limit=200");
  fill("orders-rows", os.map((o) => row([o.client_id, o.ts,
    o.side + " " + o.shares + " " + o.symbol + " @ " + o.price,
    el("span", o.status, "status " + o.status), o.rule || "", o.reason || ""])));
}

const RANK = {critical: 0, error: 1, warning: 2, info: 3};

async function alerts() {
  const {alerts: as} = await api("GET", "/v1/alerts?limit=500");
  as.reverse();
  as.sort((a, b) => (RANK[a.severity] ?? 9) - (RANK[b.severity] ?? 9));
  fill("alerts-rows", as.map((a) => row([el("span", a.severity, "sev " + a.severity), a.ts, a.kind,
                                    a.title + (a.message ? ": " + a.message : ""),
                                    a.acknowledged ? a.acknowledged.by + " at " + a.acknowledged.at
                                                   : ackButton(a)])));
}

function ackButton(alert) {
  const b = el("button", "Acknowledge", "ack");
  b.type = "button";
  b.addEventListener("click", async () => {
    try {
      await api("POST", "/v1/alerts/" + encodeURIComponent(alert.alert_id) + "/ack", {});
      showError(null);
      await alerts();
    } catch (e) { showError(e); }
  });
  return b;
}

async function policies() {
  const doc = await api("GET", "/v1/policies");
  $("policies-hash").textContent = doc.active ? "set " + doc.active.hash : "no valid set";
  fill("policies-active", (doc.active ? doc.active.policies : []).map(
    (p) => row([p.kind, p.name, p.version, p.path])));
  fill("policies-history", doc.history.slice().reverse().map((h) => row([
    h.at, h.actor || "", (h.hash || "").slice(0, 12),
    (h.policies || []).map((p) => (p.name || "") + " " + (p.version || "")).join(", ")])));
  $("policies-events").replaceChildren(...doc.events.map((e) => el("li", e.kind + ": " + e.message)));
  for (const [id, pick] of [["diff-old", 1], ["diff-new", 0]]) {
    const select = $(id);
    const chosen = select.value;
    const sets = doc.history.slice().reverse();
    select.replaceChildren(...sets.map((h) => {
      const o = el("option", h.at + " " + (h.hash || "").slice(0, 12));
      o.value = h.hash;
      return o;
    }));
    if (chosen) select.value = chosen;
    else if (sets.length > pick) select.value = sets[pick].hash;
  }
}

async function policyDiff(ev) {
  ev.preventDefault();
  try {
    const q = new URLSearchParams({old: $("diff-old").value, new: $("diff-new").value});
    const doc = await api("GET", "/v1/policies/diff?" + q.toString());
    const rows = [];
    for (const p of doc.policies) {
      const name = p.kind + " " + p.name + " " + (p.old_version || "") + " → " + (p.new_version || "");
      if (!p.rules.length && !p.settings.length) rows.push(row([name, p.status, "", "", ""]));
      for (const r of p.rules) {
        rows.push(row([name, r.status, r.rule,
                       r.old ? r.old.when + " → " + r.old.action : "",
                       r.new ? r.new.when + " → " + r.new.action : ""]));
      }
      for (const st of p.settings) {
        rows.push(row([name, "setting", st.path, JSON.stringify(st.old), JSON.stringify(st.new)]));
      }
    }
    fill("diff-rows", rows);
    $("diff-empty").hidden = rows.length > 0;
    showError(null);
  } catch (e) { showError(e); }
}

const PAGES = {overview, approvals, decisions, orders, alerts, policies};

function page() {
  const name = (location.hash || "#overview").slice(1);
  return PAGES[name] ? name : "overview";
}

async function render() {
  const name = page();
  for (const p of Object.keys(PAGES)) $("page-" + p).hidden = p !== name;
  try {
    await PAGES[name]();
    if (name !== "approvals") await approvals();  // keeps the nav count current
    showError(null);
  } catch (e) { if (me) showError(e); }
}

function poll() {
  clearInterval(timer);
  timer = setInterval(() => {
    // Leave the page alone while someone types a reason or a filter.
    const active = document.activeElement;
    if (active && active.tagName === "INPUT") return;
    render();
  }, POLL_MS);
}

// --- session ------------------------------------------------------------------------------

function showLogin() {
  me = null;
  csrf = null;
  clearInterval(timer);
  $("login").hidden = false;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  for (const p of Object.keys(PAGES)) $("page-" + p).hidden = true;
}

async function start() {
  const who = await api("GET", "/v1/me");
  me = who;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = who.name;
  await render();
  poll();
}

async function resume(ev) {
  ev.preventDefault();
  try {
    await api("POST", "/v1/resume", {reason: $("resume-reason").value});
    $("resume-reason").value = "";
    await render();
  } catch (e) { showError(e); }
}

async function kill(ev) {
  ev.preventDefault();
  // The kill withdraws everything at once: the person confirms before it is sent.
  if (!window.confirm("Cancel every open order and pending approval and halt the whole book?")) {
    return;
  }
  try {
    await api("POST", "/v1/kill", {all: true, reason: $("kill-reason").value});
    $("kill-reason").value = "";
    await render();
  } catch (e) { showError(e); }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const s = await api("POST", "/ui/login", {name: $("login-name").value,
                                                password: $("login-password").value});
      csrf = s.csrf;
      $("login-password").value = "";
      $("login-error").textContent = "";
      await start();
    } catch (e) { $("login-error").textContent = String(e.message || e); }
  });
  $("logout").addEventListener("click", async () => {
    try { await api("POST", "/ui/logout"); } finally { showLogin(); }
  });
  $("resume-form").addEventListener("submit", resume);
  $("kill-form").addEventListener("submit", kill);
  $("decision-filter").addEventListener("submit", (ev) => { ev.preventDefault(); render(); });
  $("diff-form").addEventListener("submit", policyDiff);
  window.addEventListener("hashchange", render);
  try {
    const s = await api("GET", "/ui/session");
    csrf = s.csrf;
    await start();
  } catch (e) { showLogin(); }
});
