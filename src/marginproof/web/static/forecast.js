// Margin forecast panel of the account page: runs GET /accounts/{id}/forecast on request (it
// takes seconds; the rest of the page stays usable), then shows the probability of a margin
// call and of liquidation within the horizon, fan charts of equity and IM and of the excess over
// MM against time, today's figures, the model and seed, and the call levels per underlying.

import { api } from "./api.js";
import { h, replace, table, fmtUsd, fmtTime, statusBadge } from "./dom.js";
import { fanChart } from "./charts.js";

export const HORIZON_HOURS = 24;
export const N_PATHS = 1000;

// a probability in [0, 1] as a percentage; 1 000 paths resolve 0.1 %
export function fmtProb(p) {
  if (p === null || p === undefined || !Number.isFinite(p)) return "–";
  return `${(100 * p).toFixed(p > 0 && p < 0.001 ? 2 : 1)} %`;
}

function fmtMove(x) {
  if (x === null || x === undefined) return "none in range";
  return `${x > 0 ? "+" : x < 0 ? "−" : ""}${Math.abs(100 * x).toFixed(1)} %`;
}

function levelCell(move, price) {
  if (move === null || move === undefined) return h("span", { class: "hint" }, "none in range");
  if (move === 0) return h("span", {}, "already (now)");  // the account is in that status today
  return [fmtMove(move), h("span", { class: "stat-sub" }, ` at ${fmtUsd(price)} USD`)];
}

export function errorText(e) {
  const s = e && e.status;
  const msg = e && e.message ? e.message : String(e);
  if (s === 403) return "Forecast refused (403): this key may not see this account.";
  if (s === 404) return "No forecast (404): unknown account, or not margined yet.";
  if (s === 409) return `Nothing to forecast (409): ${msg}.`;
  if (s === 429) return "Too many forecasts running (429): try again in a few seconds.";
  if (s === 503) return `Forecast unavailable (503): ${msg}.`;
  return s ? `Forecast failed (HTTP ${s}): ${msg}` : `Forecast failed: ${msg}`;
}

function q(res, what, level) {
  return res.quantiles[what][level];
}

function probStat(label, p, id, cls) {
  return h("div", { class: `stat ${cls}` }, h("span", { class: "stat-label" }, label),
    h("span", { class: "stat-value", id, dataset: { p: String(p) } }, fmtProb(p)));
}

function charts(res) {
  const times = res.times;
  const end = times.length - 1;
  const eqMed = q(res, "equity", "0.5"), imMed = q(res, "initial_margin", "0.5");
  const fan1 = fanChart({
    id: "fc-fan",
    title: `Forecast of equity and initial margin, next ${res.hours[end]} h`,
    desc: `Median and 5–95 % / 25–75 % bands of equity and IM in USD, hourly from ${times[0]} to ${times[end]}; median equity at the horizon ${fmtUsd(eqMed[end])} USD, median IM ${fmtUsd(imMed[end])} USD. A margin call is equity below IM.`,
    times,
    bands: [
      { name: "Equity 5–95 %", cls: "b-eq outer", lo: q(res, "equity", "0.05"), hi: q(res, "equity", "0.95") },
      { name: "Equity 25–75 %", cls: "b-eq inner", lo: q(res, "equity", "0.25"), hi: q(res, "equity", "0.75") },
      { name: "IM 5–95 %", cls: "b-im outer", lo: q(res, "initial_margin", "0.05"), hi: q(res, "initial_margin", "0.95") },
      { name: "IM 25–75 %", cls: "b-im inner", lo: q(res, "initial_margin", "0.25"), hi: q(res, "initial_margin", "0.75") },
    ],
    lines: [{ name: "Median equity", cls: "s-eq", values: eqMed }, { name: "Median IM", cls: "s-im", values: imMed }],
    legend: [{ name: "Equity: median, 25–75 %, 5–95 %", cls: "s-eq" },
             { name: "Initial margin (the call level: equity below IM is a margin call)", cls: "s-im" }],
  });
  const exMed = q(res, "excess", "0.5");
  const fan2 = fanChart({
    id: "fc-fan-excess",
    title: `Forecast of the excess over maintenance margin, next ${res.hours[end]} h`,
    desc: `Excess = equity − MM in USD: median and 1–99 % / 5–95 % / 25–75 % bands; below 0 is liquidation. Median at the horizon ${fmtUsd(exMed[end])} USD.`,
    times,
    height: 220,
    bands: [
      { name: "Excess 1–99 %", cls: "b-ex outer2", lo: q(res, "excess", "0.01"), hi: q(res, "excess", "0.99") },
      { name: "Excess 5–95 %", cls: "b-ex outer", lo: q(res, "excess", "0.05"), hi: q(res, "excess", "0.95") },
      { name: "Excess 25–75 %", cls: "b-ex inner", lo: q(res, "excess", "0.25"), hi: q(res, "excess", "0.75") },
    ],
    lines: [{ name: "Median excess", cls: "s-ex", values: exMed }],
    refs: [{ y: 0, label: "0 = equity at MM: liquidation", cls: "ref-liq" }],
    legend: [{ name: "Excess (equity − MM): median, 25–75 %, 5–95 %, 1–99 %", cls: "s-ex" },
             { name: "0: liquidation level", cls: "ref-liq" }],
  });
  return [fan1, fan2];
}

function levelsTable(res) {
  const rows = res.call_levels || [];
  if (!rows.length) return h("p", { class: "hint" }, "No call levels (not computed).");
  return table("Call levels: the move of one underlying alone (others follow their correlation) at which the status changes", [
    { key: "underlying", label: "Underlying" },
    { key: "index", label: "Index now (USD)", num: true, render: (r) => fmtUsd(r.index) },
    { key: "call_down", label: "Call, down", num: true, render: (r) => levelCell(r.call_down, r.call_down_price) },
    { key: "call_up", label: "Call, up", num: true, render: (r) => levelCell(r.call_up, r.call_up_price) },
    { key: "liquidation_down", label: "Liquidation, down", num: true, render: (r) => levelCell(r.liquidation_down, r.liquidation_down_price) },
    { key: "liquidation_up", label: "Liquidation, up", num: true, render: (r) => levelCell(r.liquidation_up, r.liquidation_up_price) },
  ], rows, { rowHeader: true, class: "data levels" });
}

function stepsTable(res) {
  const rows = res.times.map((t, k) => ({ k, t }));
  return h("details", {}, h("summary", {}, "Forecast as a table"),
    h("div", { class: "table-scroll" }, table("Forecast by hour (medians, USD) and P(call) so far", [
      { key: "t", label: "Time (UTC)", render: (r) => fmtTime(Date.parse(r.t)) },
      { key: "h", label: "Hours", num: true, render: (r) => String(res.hours[r.k]) },
      { key: "eq", label: "Equity (median)", num: true, render: (r) => fmtUsd(q(res, "equity", "0.5")[r.k]) },
      { key: "im", label: "IM (median)", num: true, render: (r) => fmtUsd(q(res, "initial_margin", "0.5")[r.k]) },
      { key: "ex", label: "Excess 5 %", num: true, render: (r) => fmtUsd(q(res, "excess", "0.05")[r.k]) },
      { key: "pc", label: "P(call by then)", num: true, render: (r) => fmtProb(res.p_call_by_step[r.k]) },
    ], rows)));
}

export function resultView(res) {
  const now = res.now;
  const stat = (label, value) => h("div", { class: "stat" }, h("span", { class: "stat-label" }, label),
    h("span", { class: "stat-value" }, value));
  const hz = res.hours[res.hours.length - 1];
  const cfg = res.config || {};
  return h("div", { id: "fc-result" },
    h("div", { class: "stats", id: "fc-probs" },
      probStat(`P(margin call within ${hz} h)`, res.p_call_within_horizon, "fc-p-call",
        res.p_call_within_horizon >= 0.05 ? "warn" : "ok"),
      probStat(`P(liquidation within ${hz} h)`, res.p_liquidation_within_horizon, "fc-p-liq",
        res.p_liquidation_within_horizon >= 0.01 ? "bad" : "ok"),
      stat("IM now", `${fmtUsd(now.initial_margin)} USD`),
      stat("MM now", `${fmtUsd(now.maintenance_margin)} USD`),
      stat("Equity now", `${fmtUsd(now.equity)} USD`),
      stat("Excess now (equity − MM)", `${fmtUsd(now.excess)} USD`),
      stat("Status now", statusBadge(now.status, false))),
    charts(res),
    levelsTable(res),
    stepsTable(res),
    h("p", { class: "hint", id: "fc-meta" },
      `Model ${res.model} · params `, h("span", { class: "hash", title: res.params_hash }, `${res.params_hash.slice(0, 16)}…`),
      ` · seed ${res.seed} · ${fmtUsd(cfg.n_paths)} paths · method ${res.method} · market ${res.market_timestamp}`,
      ` · forecast `, h("span", { class: "hash", title: res.forecast_hash }, `${res.forecast_hash.slice(0, 12)}…`)));
}

// The panel; onResult(res) is told about every successful forecast (warning state).
export function forecastPanel(accountId, onResult) {
  const out = h("div", { id: "fc-out" });
  const status = h("p", { id: "fc-status", class: "hint", role: "status" },
    `Monte Carlo forecast of this account's margin over the next ${HORIZON_HOURS} hours (${fmtUsd(N_PATHS)} paths, a few seconds).`);
  const btn = h("button", { type: "button", id: "fc-run" }, "Run forecast");
  let token = 0;
  btn.addEventListener("click", async () => {
    const mine = ++token;
    btn.disabled = true;
    status.textContent = "Forecasting…";
    try {
      const res = await api(`/accounts/${encodeURIComponent(accountId)}/forecast?horizon_hours=${HORIZON_HOURS}&n_paths=${N_PATHS}`);
      if (mine !== token || !sec.isConnected) return;
      replace(out, resultView(res));
      status.textContent = `Forecast of ${fmtTime(Date.now())}.`;
      if (onResult) onResult(res);
    } catch (e) {
      if (mine !== token || !sec.isConnected) return;
      replace(out, h("p", { class: "error", role: "alert", id: "fc-error" }, errorText(e)));
      status.textContent = "";
    } finally {
      btn.disabled = false;
      btn.textContent = "Run forecast again";
    }
  });
  const sec = h("section", { class: "card", "aria-labelledby": "fc-title", id: "acct-forecast" },
    h("h2", { id: "fc-title" }, `Forecast (next ${HORIZON_HOURS} h)`),
    h("p", { class: "toolbar" }, btn), status, out);
  return sec;
}
