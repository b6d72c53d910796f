// Dashboard: accounts ranked by margin utilisation (IM / equity), live over the WebSocket, and
// the alerts (margin calls, stale feeds, scheduled parameter changes).

import { h, replace, fmtUsd, fmtPct, fmtTime, statusBadge, statusText } from "./dom.js";
import { utilBar } from "./charts.js";
import { api } from "./api.js";

let store = null;
let listener = null;
let pending = false;
let filter = "";
const MAX_ROWS = 200;

export function utilisation(im, equity) {
  if (im <= 0) return 0;
  if (equity <= 0) return null; // infinite: ranks first
  return im / equity;
}

function ranked() {
  const rows = [...store.rows.values()].map((r) => ({
    ...r, utilisation: utilisation(r.initial_margin, r.equity),
    mm_utilisation: utilisation(r.maintenance_margin, r.equity) }));
  const key = (u) => (u === null ? Infinity : u);
  rows.sort((a, b) => key(b.utilisation) - key(a.utilisation) || (a.account_id < b.account_id ? -1 : 1));
  return rows;
}

function summary(rows) {
  const ov = store.overview || {};
  const counts = { ok: 0, margin_call: 0, liquidation: 0 };
  for (const r of rows) counts[r.status] = (counts[r.status] || 0) + 1;
  const n = store.me.scope === "operator" ? Math.max(ov.n_accounts || 0, rows.length) : rows.length;
  const card = (label, value, cls) => h("div", { class: `stat ${cls || ""}` },
    h("span", { class: "stat-label" }, label), h("span", { class: "stat-value" }, value));
  return h("section", { class: "stats", "aria-label": "Summary" },
    card("Accounts", String(n)),
    card("OK", String(counts.ok), "ok"),
    card("Margin calls", String(counts.margin_call), counts.margin_call ? "warn" : ""),
    card("Liquidation", String(counts.liquidation), counts.liquidation ? "bad" : ""),
    card("Market time", ov.market_timestamp ? ov.market_timestamp.replace("T", " ").replace("+00:00", "Z") : "no market data"),
    card("Engine model", ov.engine_model ? `${ov.engine_model} · ${ov.engine_params_hash.slice(0, 10)}` : "–"),
    card("Stream", store.conn === "open" ? "live" : store.conn, store.conn === "open" ? "ok" : "warn"));
}

function alertItems(rows) {
  const items = [];
  const ov = store.overview || { alerts: { stale_streams: [], degraded_underlyings: [], scheduled: [] }, events: [] };
  for (const r of rows.filter((x) => x.status !== "ok").slice(0, 20)) {
    items.push({ cls: r.status === "liquidation" ? "bad" : "warn",
      node: [h("strong", {}, statusText(r.status)), " on ", h("a", { href: `#account/${encodeURIComponent(r.account_id)}` }, r.account_id),
        `: equity ${fmtUsd(r.equity)} USD, IM ${fmtUsd(r.initial_margin)} USD, shortfall ${fmtUsd(Math.max(0, r.initial_margin - r.equity))} USD`] });
  }
  for (const s of ov.alerts.stale_streams) items.push({ cls: "bad", node: [h("strong", {}, "Stale feed"), ` ${s}: margins on it are held`] });
  for (const u of ov.alerts.degraded_underlyings) items.push({ cls: "bad", node: [h("strong", {}, "Degraded underlying"), ` ${u}: margins held at their previous level or higher`] });
  for (const c of ov.alerts.scheduled) {
    items.push({ cls: "info", node: [h("strong", {}, "Parameter change scheduled"),
      ` for ${c.model} (${c.params_hash.slice(0, 10)}…) by ${c.changed_by}, effective ${fmtTime(c.effective_at_ms)}`] });
  }
  for (const ev of store.liveEvents.slice(0, 15)) {
    const when = fmtTime(ev.received_ms);
    if (ev.type === "feed_alert") items.push({ cls: "bad", node: [h("strong", {}, "Feed alert"), ` ${ev.stream} (${ev.underlying}): ${ev.problem} ${ev.detail || ""} · ${when}`] });
    else if (ev.type === "params_scheduled") items.push({ cls: "info", node: [h("strong", {}, "Parameters scheduled"), ` ${ev.model} effective ${fmtTime(ev.effective_at_ms)} · ${when}`] });
    else if (ev.type === "params_activated") items.push({ cls: "info", node: [h("strong", {}, "Parameters now in force"), ` ${ev.model} ${ev.params_hash.slice(0, 10)}… · ${when}`] });
    else if (ev.account_id) items.push({ cls: ev.type === "margin_restored" ? "ok" : ev.type === "liquidation" ? "bad" : "warn",
      node: [h("strong", {}, { margin_call: "Margin call", liquidation: "Liquidation signal", margin_restored: "Margin restored" }[ev.type] || ev.type),
        " on ", h("a", { href: `#account/${encodeURIComponent(ev.account_id)}` }, ev.account_id), ` (log seq ${ev.seq}) · ${when}`] });
  }
  if (store.me.scope !== "operator") {
    for (const ev of ov.events.slice(0, 5)) {
      items.push({ cls: ev.type === "margin_restored" ? "ok" : "warn", node: [h("strong", {}, ev.type.replace("_", " ")), ` at log seq ${ev.seq}`] });
    }
  }
  return items;
}

function render() {
  pending = false;
  const body = document.getElementById("dash-body");
  if (!body || !store.me) return;
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focusKey : null;
  const rows = ranked();
  const items = alertItems(rows);
  const shown = rows.filter((r) => !filter || r.account_id.toLowerCase().includes(filter.toLowerCase()));
  const now = Date.now();
  const tableRows = shown.slice(0, MAX_ROWS).map((r, i) => {
    const fresh = now - (store.updatedAt.get(r.account_id) || 0) < 2000;
    return h("tr", { class: fresh ? "updated" : null, dataset: { account: r.account_id, seq: String(r.seq) } },
      h("td", { class: "num" }, String(i + 1)),
      h("th", { scope: "row" }, h("a", { href: `#account/${encodeURIComponent(r.account_id)}`, dataset: { focusKey: `acct:${r.account_id}` } }, r.account_id)),
      h("td", { class: "num util" }, utilBar(r.utilisation), fmtPct(r.utilisation)),
      h("td", { class: "num" }, fmtUsd(r.initial_margin)),
      h("td", { class: "num" }, fmtUsd(r.maintenance_margin)),
      h("td", { class: "num" }, fmtUsd(r.equity)),
      h("td", {}, statusBadge(r.status, r.held, r.held_reason)),
      h("td", {}, r.binding_label || "–"),
      h("td", { class: "num" }, String(r.seq)));
  });
  const table = h("table", { class: "data ranking", id: "ranking" },
    h("caption", {}, "Accounts ranked by margin utilisation (initial margin / equity), highest first",
      shown.length > MAX_ROWS ? ` — showing ${MAX_ROWS} of ${shown.length}` : ""),
    h("thead", {}, h("tr", {},
      ["Rank", "Account", "Utilisation", "IM (USD)", "MM (USD)", "Equity (USD)", "Status", "Binding scenario", "Log seq"].map((c, j) =>
        h("th", { scope: "col", class: [0, 2, 3, 4, 5, 8].includes(j) ? "num" : null }, c)))),
    h("tbody", {}, tableRows.length ? tableRows : h("tr", {}, h("td", { colspan: "9" }, "No margins yet."))));
  const filterInput = h("input", { id: "acct-filter", type: "search", value: filter, autocomplete: "off",
    oninput: (ev) => { filter = ev.target.value; schedule(); }, dataset: { focusKey: "filter" } });
  replace(body,
    summary(rows),
    h("section", { class: "card", "aria-labelledby": "alerts-title" },
      h("h2", { id: "alerts-title" }, "Alerts"),
      items.length ? h("ul", { class: "alerts", id: "alerts" }, items.map((it) => h("li", { class: `alert ${it.cls}` }, it.node)))
        : h("p", { id: "alerts" }, "No alerts: no margin calls, every feed fresh, no parameter change scheduled.")),
    h("section", { class: "card", "aria-labelledby": "rank-title" },
      h("h2", { id: "rank-title" }, store.me.scope === "operator" ? "Accounts" : "Your account"),
      store.me.scope === "operator" ? h("div", { class: "toolbar" },
        h("label", { for: "acct-filter" }, "Filter accounts"), filterInput) : null,
      h("div", { class: "table-scroll" }, table)));
  if (focused) {
    const el = body.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
    if (el) {
      el.focus();
      if (el.tagName === "INPUT") el.setSelectionRange(el.value.length, el.value.length);
    }
  }
}

function schedule() {
  if (pending) return;
  pending = true;
  setTimeout(() => requestAnimationFrame(render), 150);
}

export function mergeOverview(s, ov) {
  s.overview = ov;
  for (const r of ov.accounts) {
    const old = s.rows.get(r.account_id);
    if (!old || old.seq <= r.seq) s.rows.set(r.account_id, r);
  }
}

export async function show(_arg, s) {
  store = s;
  render();
  api("/console/api/overview").then((ov) => { mergeOverview(store, ov); schedule(); })
    .catch((e) => console.error(e));
  listener = (kind) => { if (kind === "update" || kind === "overview" || kind === "conn") schedule(); };
  store.listeners.add(listener);
}

export function leave() {
  if (listener) store.listeners.delete(listener);
  listener = null;
}
