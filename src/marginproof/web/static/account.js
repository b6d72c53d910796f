// Account drill-down: margin now, positions, collateral, components, binding scenario, greeks,
// risk matrix, margin forecast (on request), margin history chart and events; refreshed when the
// stream brings an update; a margin_warning on the stream raises a badge under the headline.

import { api } from "./api.js";
import { h, replace, table, fmtUsd, fmtNum, fmtPct, fmtTime, statusBadge, announce } from "./dom.js";
import { lineChart } from "./charts.js";
import { bindingPanel, componentsPanel, greeksPanel, riskMatrixPanel } from "./explain.js";
import { utilisation } from "./dashboard.js";
import { forecastPanel, fmtProb } from "./forecast.js";

let store = null;
let accountId = null;
let listener = null;
let detailTimer = null;
let history = [];
let detail = null;
let events = [];
let warning = null; // the latest margin_warning / margin_warning_cleared of this account

function headline(m) {
  if (!m) return h("p", { id: "acct-margin" }, "No margin computed for this account yet.");
  const u = utilisation(m.initial_margin, m.equity);
  const stat = (label, value, extra) => h("div", { class: "stat" }, h("span", { class: "stat-label" }, label),
    h("span", { class: "stat-value" }, value), extra || null);
  return h("section", { class: "stats", id: "acct-margin", "aria-label": "Margin now", dataset: { seq: String(m.seq) } },
    stat("Initial margin", `${fmtUsd(m.initial_margin)} USD`),
    stat("Maintenance margin", `${fmtUsd(m.maintenance_margin)} USD`),
    stat("Equity", `${fmtUsd(m.equity)} USD`),
    stat("Utilisation", fmtPct(u)),
    stat("Status", statusBadge(m.status, m.held, m.held_reason),
      m.held && m.held_reason ? h("span", { class: "stat-sub held-reason" }, `held: ${m.held_reason}`) : null),
    stat("Log seq", String(m.seq), h("span", { class: "stat-sub" }, `market ${fmtTime(m.market_ts_ms)}`)));
}

function historyPanel() {
  const rows = [...history].sort((a, b) => a.seq - b.seq);
  const sec = h("section", { class: "card", "aria-labelledby": "acct-hist" }, h("h2", { id: "acct-hist" }, "Margin history"));
  if (rows.length < 1) {
    sec.append(h("p", {}, "No history yet."));
    return sec;
  }
  sec.append(lineChart({
    title: `Margin history of ${accountId}`,
    desc: `Initial margin, maintenance margin and equity in USD over ${rows.length} updates (by input-log sequence number); latest IM ${fmtUsd(rows[rows.length - 1].initial_margin)} USD.`,
    xLabel: "input-log seq",
    series: [
      { name: "Initial margin", cls: "s-im", points: rows.map((r) => [r.seq, r.initial_margin]) },
      { name: "Maintenance margin", cls: "s-mm", points: rows.map((r) => [r.seq, r.maintenance_margin]) },
      { name: "Equity", cls: "s-eq", points: rows.map((r) => [r.seq, r.equity]) },
    ],
  }));
  sec.append(h("details", {}, h("summary", {}, "Margin history as a table"),
    h("div", { class: "table-scroll" }, table("Margin history, newest first", [
      { key: "seq", label: "Log seq", num: true },
      { key: "market_ts_ms", label: "Market time", render: (r) => fmtTime(r.market_ts_ms) },
      { key: "cause", label: "Cause" },
      { key: "initial_margin", label: "IM (USD)", num: true, render: (r) => fmtUsd(r.initial_margin) },
      { key: "maintenance_margin", label: "MM (USD)", num: true, render: (r) => fmtUsd(r.maintenance_margin) },
      { key: "equity", label: "Equity (USD)", num: true, render: (r) => fmtUsd(r.equity) },
      { key: "status", label: "Status", render: (r) => statusBadge(r.status, r.held, r.held_reason) },
    ], rows.slice().reverse().slice(0, 200)))));
  return sec;
}

function positionsPanel() {
  const ex = detail.explanation;
  const contrib = ex ? ex.contributions : {};
  const pos = Object.entries(detail.positions).map(([k, v]) => ({ instrument: k, quantity: v, contribution: contrib[k] }));
  return h("section", { class: "card", "aria-labelledby": "acct-pos" },
    h("h2", { id: "acct-pos" }, "Positions and collateral"),
    h("div", { class: "two-col" },
      pos.length ? table("Positions", [
        { key: "instrument", label: "Instrument" },
        { key: "quantity", label: "Quantity", num: true, render: (r) => fmtNum(r.quantity) },
        { key: "contribution", label: "Loss in binding scenario (USD)", num: true, render: (r) => (r.contribution === undefined ? "–" : fmtUsd(r.contribution)) },
      ], pos, { rowHeader: true }) : h("p", {}, "No open positions."),
      table("Collateral", [
        { key: "asset", label: "Asset" }, { key: "amount", label: "Amount", num: true, render: (r) => fmtNum(r.amount) },
      ], Object.entries(detail.collateral).map(([asset, amount]) => ({ asset, amount })), { rowHeader: true })));
}

function warningText(ev) {
  const within = ev.horizon_hours ? ` within ${ev.horizon_hours} h` : "";
  const thr = ev.threshold ? ` (threshold ${fmtProb(ev.threshold)})` : "";
  return `P(margin call${within}) ${fmtProb(ev.p_call)}${thr}, P(liquidation) ${fmtProb(ev.p_liquidation)}`;
}

function eventItem(ev) {
  if (ev.type === "margin_warning" || ev.type === "margin_warning_cleared") {
    return h("li", { class: `alert ${ev.type === "margin_warning" ? "warn" : "ok"}` },
      h("strong", {}, ev.type === "margin_warning" ? "margin warning" : "margin warning cleared"),
      ` at ${fmtTime(ev.evaluated_at_ms)}: ${warningText(ev)}`);
  }
  return h("li", { class: `alert ${ev.type === "margin_restored" ? "ok" : ev.type === "liquidation" ? "bad" : "warn"}` },
    h("strong", {}, ev.type.replace("_", " ")), ` at log seq ${ev.seq}: equity ${fmtUsd(ev.equity)} USD, IM ${fmtUsd(ev.initial_margin)} USD`,
    ev.binding ? ` — binding ${ev.binding.scenario_label}` : "");
}

function eventsPanel() {
  return h("section", { class: "card", "aria-labelledby": "acct-ev" }, h("h2", { id: "acct-ev" }, "Events"),
    events.length ? h("ul", { class: "alerts" }, events.slice(0, 30).map(eventItem)) : h("p", {}, "No margin calls or liquidation signals."));
}

function renderWarning() {
  const el = slot("acct-warning");
  if (!el) return;
  if (!warning || warning.type !== "margin_warning") {
    replace(el);
    el.hidden = true;
    return;
  }
  el.hidden = false;
  replace(el, h("span", { class: "badge warn-badge", id: "acct-warning-badge" }, "⚠ Margin warning"),
    ` ${warningText(warning)}; forecast at ${fmtTime(warning.evaluated_at_ms)} (${warning.model}).`);
}

// the forecast endpoint reports the evaluator's state: a warning active there shows too
function onForecast(res) {
  const st = res.warning_state;
  if (st && st.active && (!warning || warning.type !== "margin_warning")) {
    warning = { type: "margin_warning", p_call: st.p_call, p_liquidation: st.p_liquidation,
                threshold: null, horizon_hours: null,
                evaluated_at_ms: st.evaluated_at_ms, model: res.model };
    renderWarning();
  }
}

function slot(id) {
  return document.getElementById(id);
}

// Full render on open; live updates redraw only the parts they change (focus stays put).
function render() {
  const body = document.getElementById("acct-body");
  if (!body || !detail) return;
  replace(body,
    h("div", { id: "acct-head" }),
    h("p", { id: "acct-warning", class: "warning-line", role: "alert", hidden: true }),
    h("p", { class: "toolbar" }, h("a", { class: "button", href: `#whatif/${encodeURIComponent(accountId)}` }, "What-if from this account")),
    h("div", { id: "acct-explain" }),
    forecastPanel(accountId, onForecast),
    h("div", { id: "acct-hist-wrap" }),
    h("div", { id: "acct-ev-wrap" }));
  renderHead();
  renderWarning();
  renderExplain();
  renderLive();
}

function renderHead() {
  replace(slot("acct-head"), headline(store.rows.get(accountId) || detail.margin));
}

function renderExplain() {
  const ex = detail.explanation;
  replace(slot("acct-explain"),
    detail.explanation_error ? h("p", { class: "error" }, `Explanation unavailable: ${detail.explanation_error}`) : null,
    ex ? h("div", { class: "grid-2" }, componentsPanel(ex, "acct"), bindingPanel(ex, "acct")) : null,
    positionsPanel(),
    ex ? greeksPanel(ex, "acct") : null,
    ex ? riskMatrixPanel(ex, "acct") : null);
}

function renderLive() {
  const open = slot("acct-hist-wrap").querySelector("details[open]") !== null;
  replace(slot("acct-hist-wrap"), historyPanel());
  if (open) slot("acct-hist-wrap").querySelector("details").open = true;
  replace(slot("acct-ev-wrap"), eventsPanel());
}

async function loadAll() {
  const enc = encodeURIComponent(accountId);
  const [d, hist, ev] = await Promise.all([
    api(`/console/api/accounts/${enc}/detail`),
    api(`/accounts/${enc}/history?limit=500`),
    api(`/accounts/${enc}/events?limit=50`),
  ]);
  detail = d;
  history = hist.margins;
  events = ev.events;
  if (d.margin) {
    const old = store.rows.get(accountId);
    if (!old || old.seq <= d.margin.seq) store.rows.set(accountId, d.margin);
  }
}

export async function show(arg, s) {
  store = s;
  accountId = arg || s.me.account_id;
  document.getElementById("acct-title").textContent = `Account ${accountId}`;
  const body = document.getElementById("acct-body");
  replace(body, h("p", {}, "Loading…"));
  try {
    await loadAll();
  } catch (e) {
    replace(body, h("p", { class: "error", role: "alert" }, e.status === 403 ? "This key may not see that account." : e.status === 404 ? "Unknown account." : `Error: ${e.message}`));
    return;
  }
  render();
  listener = (kind, msg) => {
    if (kind !== "update") return;
    const row = msg.margins.find((r) => r.account_id === accountId);
    const evs = msg.events.filter((e) => e.account_id === accountId);
    if (!row && !evs.length) return;
    if (row && !history.some((x) => x.seq === row.seq)) history.push(row);
    events = [...evs.slice().reverse(), ...events];
    if (row) announce(`Margin updated: initial margin ${fmtUsd(row.initial_margin)} USD, status ${row.status.replace("_", " ")}`);
    const warn = evs.filter((e) => e.type === "margin_warning" || e.type === "margin_warning_cleared");
    if (warn.length) {
      warning = warn[warn.length - 1];
      renderWarning();
    }
    renderHead();
    renderLive();
    // positions may have changed (fill, transfer): refresh the explanation, at most every 2 s
    if (!detailTimer) {
      detailTimer = setTimeout(async () => {
        detailTimer = null;
        try {
          const d = await api(`/console/api/accounts/${encodeURIComponent(accountId)}/detail`);
          const changed = JSON.stringify([d.positions, d.collateral, d.explanation && d.explanation.initial_margin]) !==
            JSON.stringify([detail.positions, detail.collateral, detail.explanation && detail.explanation.initial_margin]);
          detail = d;
          if (changed) renderExplain();
        } catch (e) { console.error(e); }
      }, 2000);
    }
  };
  store.listeners.add(listener);
}

export function leave() {
  if (listener) store.listeners.delete(listener);
  listener = null;
  if (detailTimer) clearTimeout(detailTimer);
  detailTimer = null;
  detail = null;
  history = [];
  events = [];
  warning = null;
  // nothing of the account stays in the page once the view is left
  document.getElementById("acct-title").textContent = "Account";
  replace(document.getElementById("acct-body"));
}
