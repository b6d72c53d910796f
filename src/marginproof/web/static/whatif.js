// What-if simulator: edit or paste a portfolio (or add trades to an account), pick models and
// exchange presets, compare IM/MM side by side and see the risk matrix as a heat map.
// Nothing is stored: every run is a POST /console/api/whatif computed and thrown away.

import { api } from "./api.js";
import { h, replace, table, fmtUsd, announce } from "./dom.js";
import { bindingPanel, componentsPanel, greeksPanel, riskMatrixPanel } from "./explain.js";

let store = null;
let models = [];
let instruments = [];
let results = [];
let selected = 0;
const PRESETS = /^(deribit|derive)-/;

function rowEditor(instrument = "", quantity = "") {
  const n = document.querySelectorAll("#wi-rows tr").length + 1;
  const tr = h("tr", {},
    h("td", {}, h("label", { class: "visually-hidden", for: `wi-inst-${n}` }, `Instrument ${n}`),
      h("input", { id: `wi-inst-${n}`, class: "wi-inst", list: "wi-instruments", value: instrument, autocomplete: "off",
                   spellcheck: "false", placeholder: "e.g. BTC-PERPETUAL" })),
    h("td", {}, h("label", { class: "visually-hidden", for: `wi-qty-${n}` }, `Quantity ${n}`),
      h("input", { id: `wi-qty-${n}`, class: "wi-qty", type: "number", step: "any", value: String(quantity), inputmode: "decimal" })),
    h("td", {}, h("button", { type: "button", class: "secondary small", "aria-label": `Remove row ${n}`,
                              onclick: (e) => { const row = e.target.closest("tr"); const next = row.nextElementSibling || row.previousElementSibling; row.remove(); if (next) next.querySelector("input").focus(); else document.getElementById("wi-add").focus(); } }, "Remove")));
  document.getElementById("wi-rows").append(tr);
  return tr;
}

function readRows() {
  const out = [];
  for (const tr of document.querySelectorAll("#wi-rows tr")) {
    const name = tr.querySelector(".wi-inst").value.trim();
    const q = tr.querySelector(".wi-qty").value.trim();
    if (!name && !q) continue;
    const qty = Number(q);
    if (!name || !Number.isFinite(qty)) throw new Error(`row "${name || "?"}": give an instrument and a numeric quantity`);
    out.push([name, qty]);
  }
  return out;
}

function loadPasted() {
  const text = document.getElementById("wi-paste").value.trim();
  const msg = document.getElementById("wi-paste-msg");
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    msg.textContent = `Not JSON: ${e.message}`;
    return;
  }
  let pairs = [];
  const pos = obj && !Array.isArray(obj) && obj.positions !== undefined ? obj.positions : obj;
  if (Array.isArray(pos)) pairs = pos.map((p) => [p.instrument, p.quantity]);
  else if (pos && typeof pos === "object") pairs = Object.entries(pos);
  if (!pairs.length || pairs.some(([n, q]) => typeof n !== "string" || !Number.isFinite(Number(q)))) {
    msg.textContent = 'Expected {"INSTRUMENT": quantity, ...}, a list of {instrument, quantity} or a portfolio file with "positions".';
    return;
  }
  document.getElementById("wi-rows").replaceChildren();
  for (const [n, q] of pairs) rowEditor(n, q);
  msg.textContent = `Loaded ${pairs.length} positions.`;
}

function form(accountArg) {
  const me = store.me;
  const own = me.scope === "account";
  const startAccount = accountArg || (own ? me.account_id : "");
  const modelBoxes = models.map((m, i) => h("li", {},
    h("input", { type: "checkbox", id: `wi-m-${i}`, name: "wi-model", value: m, checked: m === "grid" || m === "standard" }),
    h("label", { for: `wi-m-${i}` }, m)));
  const presetsFirst = modelBoxes.filter((_, i) => !PRESETS.test(models[i]));
  const presetBoxes = modelBoxes.filter((_, i) => PRESETS.test(models[i]));
  return h("form", { id: "wi-form", class: "card", novalidate: true, onsubmit: run },
    h("fieldset", {}, h("legend", {}, "Start from"),
      h("div", { class: "radio-row" },
        h("input", { type: "radio", id: "wi-start-empty", name: "wi-start", value: "empty", checked: !startAccount }),
        h("label", { for: "wi-start-empty" }, "An empty portfolio (the rows below are the portfolio)")),
      h("div", { class: "radio-row" },
        h("input", { type: "radio", id: "wi-start-acct", name: "wi-start", value: "account", checked: !!startAccount }),
        h("label", { for: "wi-start-acct" }, "An account's current positions (the rows below are trades added to it)")),
      h("label", { for: "wi-account" }, "Account"),
      h("input", { id: "wi-account", value: startAccount, readonly: own, autocomplete: "off", spellcheck: "false",
                   "aria-describedby": own ? "wi-account-hint" : null }),
      own ? h("p", { class: "hint", id: "wi-account-hint" }, "An account key can start from its own account only.") : null),
    h("fieldset", {}, h("legend", {}, "Positions or trades"),
      h("table", { class: "editor" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Instrument"), h("th", { scope: "col" }, "Quantity"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
        h("tbody", { id: "wi-rows" })),
      h("datalist", { id: "wi-instruments" }, instruments.map((n) => h("option", { value: n }))),
      h("p", {}, h("button", { type: "button", id: "wi-add", class: "secondary", onclick: () => rowEditor().querySelector("input").focus() }, "Add a row")),
      h("details", {}, h("summary", {}, "Paste a portfolio (JSON)"),
        h("label", { for: "wi-paste" }, 'Positions as {"BTC-PERPETUAL": 10000, ...}, a list of {instrument, quantity}, or a portfolio file'),
        h("textarea", { id: "wi-paste", rows: "5", spellcheck: "false" }),
        h("p", {}, h("button", { type: "button", class: "secondary", onclick: loadPasted }, "Load into the rows"),
          h("span", { id: "wi-paste-msg", role: "status" })))),
    h("fieldset", {}, h("legend", {}, "Models and exchange presets"),
      h("ul", { class: "checks" }, presetsFirst), presetBoxes.length ? h("p", { class: "sub" }, "Exchange presets") : null,
      h("ul", { class: "checks" }, presetBoxes),
      h("details", {}, h("summary", {}, "Override parameters (JSON, applies to every checked model)"),
        h("label", { for: "wi-params" }, "Parameters; leave empty for each model's shipped set"),
        h("textarea", { id: "wi-params", rows: "4", spellcheck: "false" }))),
    h("p", {}, h("button", { type: "submit", id: "wi-run" }, "Run what-if"), " ",
      h("button", { type: "button", id: "wi-hedge-btn", class: "secondary", onclick: suggestHedge }, "Suggest a hedge"),
      h("span", { class: "hint" }, " Nothing is stored: results exist only in this page.")),
    h("div", { id: "wi-hedge", role: "status" }),
    h("p", { id: "wi-error", class: "error", role: "alert" }));
}

async function run(ev) {
  ev.preventDefault();
  const err = document.getElementById("wi-error");
  err.textContent = "";
  let rows;
  try {
    rows = readRows();
  } catch (e) {
    err.textContent = e.message;
    return;
  }
  const fromAccount = document.getElementById("wi-start-acct").checked;
  const account = document.getElementById("wi-account").value.trim();
  const chosen = [...document.querySelectorAll('input[name="wi-model"]:checked')].map((x) => x.value);
  if (!chosen.length) { err.textContent = "Pick at least one model."; return; }
  if (fromAccount && !account) { err.textContent = "Name the account to start from."; document.getElementById("wi-account").focus(); return; }
  if (!fromAccount && !rows.length) { err.textContent = "Add at least one position."; return; }
  let params = null;
  const ptext = document.getElementById("wi-params").value.trim();
  if (ptext) {
    try { params = JSON.parse(ptext); } catch (e) { err.textContent = `Parameters are not JSON: ${e.message}`; return; }
  }
  const body = { model: "", params };
  if (fromAccount) { body.account_id = account; body.trades = rows.map(([instrument, quantity]) => ({ instrument, quantity })); }
  else {
    body.positions = {};
    for (const [n, q] of rows) body.positions[n] = (body.positions[n] || 0) + q;
  }
  const btn = document.getElementById("wi-run");
  btn.disabled = true;
  btn.textContent = "Running…";
  replace(document.getElementById("wi-results"), h("p", { role: "status" }, `Computing ${chosen.length} model(s)…`));
  results = await Promise.all(chosen.map(async (m) => {
    try {
      return { model: m, ex: await api("/console/api/whatif", { method: "POST", body: { ...body, model: m } }) };
    } catch (e) {
      return { model: m, error: e.message };
    }
  }));
  btn.disabled = false;
  btn.textContent = "Run what-if";
  // show a scenario model first (it has a risk matrix), else the first that ran
  const withMatrix = results.findIndex((r) => r.ex && r.ex.heatmaps.length);
  const firstOk = results.findIndex((r) => r.ex);
  selected = withMatrix >= 0 ? withMatrix : Math.max(firstOk, 0);
  renderResults();
  announce(`What-if done: ` + results.map((r) => r.ex ? `${r.model} IM ${fmtUsd(r.ex.initial_margin)} USD` : `${r.model} failed`).join("; "));
  document.getElementById("wi-results-title").focus();
}

// "Suggest a hedge": POST /whatif/hedge with the form's book under the first checked scenario model; the
// verified suggestion is added to the rows (as trades, or into the portfolio) for a what-if run.
async function suggestHedge() {
  const out = document.getElementById("wi-hedge");
  const err = document.getElementById("wi-error");
  err.textContent = "";
  let rows;
  try { rows = readRows(); } catch (e) { err.textContent = e.message; return; }
  const fromAccount = document.getElementById("wi-start-acct").checked;
  const account = document.getElementById("wi-account").value.trim();
  const scenario = ["grid", "fhs", "mc", "dynamic", "deribit-pm", "derive-pmrm"];  // hedgeable models
  const model = ([...document.querySelectorAll('input[name="wi-model"]:checked')].map((x) => x.value)
    .find((m) => scenario.includes(m))) || "grid";
  const body = { model };
  if (fromAccount) { body.account_id = account; body.trades = rows.map(([instrument, quantity]) => ({ instrument, quantity })); }
  else { body.positions = {}; for (const [n, q] of rows) body.positions[n] = (body.positions[n] || 0) + q; }
  const btn = document.getElementById("wi-hedge-btn");
  btn.disabled = true;
  replace(out, h("p", {}, `Searching the cheapest hedge under ${model}…`));
  try {
    const r = await api("/whatif/hedge", { method: "POST", body });
    const summary = h("p", {}, `${model}: ${r.reason}.`);
    if (!r.whatif_trades.length) { replace(out, summary); return; }
    const qty = new Map(readRows());
    document.getElementById("wi-rows").replaceChildren();
    for (const t of r.whatif_trades) qty.set(t.instrument, (qty.get(t.instrument) || 0) + t.quantity);
    for (const [n, q] of qty) if (q !== 0) rowEditor(n, +q.toPrecision(12));
    replace(out, summary, table("Suggested hedge (verified with the real model)", [
      { key: "instrument", label: "Instrument" },
      { key: "quantity", label: "Quantity", num: true, render: (t) => String(t.quantity) },
      { key: "price", label: "Price", num: true, render: (t) => String(+t.price.toPrecision(6)) },
      { key: "cost", label: "Cost (USD)", num: true, render: (t) => fmtUsd(t.cost_usd) },
    ], r.trades, { rowHeader: true, class: "data hedge" }),
    h("p", { class: "hint" }, `IM ${fmtUsd(r.im_before_usd)} → ${fmtUsd(r.im_after_usd)} USD for ${fmtUsd(r.cost_usd)} USD of spread and fees. The trades are in the rows above: run the what-if to compare models.`));
    announce(`Hedge suggested: ${r.trades.length} trade(s) added to the form.`);
  } catch (e) {
    replace(out, h("p", { class: "error" }, `No hedge: ${e.message}`));
  } finally {
    btn.disabled = false;
  }
}

function renderResults() {
  const out = document.getElementById("wi-results");
  const cmp = table("IM and MM side by side (USD)", [
    { key: "model", label: "Model" },
    { key: "im", label: "Initial margin", num: true, render: (r) => r.ex ? fmtUsd(r.ex.initial_margin) : "–" },
    { key: "mm", label: "Maintenance margin", num: true, render: (r) => r.ex ? fmtUsd(r.ex.maintenance_margin) : "–" },
    { key: "binding", label: "Binding scenario / note", render: (r) => r.ex ? (r.ex.binding ? r.ex.binding.label : "–") : h("span", { class: "error" }, r.error) },
    { key: "hash", label: "Params hash", render: (r) => r.ex ? h("code", {}, r.ex.params_hash.slice(0, 12)) : "" },
    { key: "show", label: "Details", render: (r, i) => r.ex ? h("button", { type: "button", class: "secondary small", "aria-pressed": String(i === selected),
      onclick: () => { selected = i; renderResults(); document.getElementById("wi-detail-title").focus(); } }, `Show ${r.model}`) : "" },
  ], results, { rowHeader: true, class: "data compare" });
  const sel = results[selected];
  const max = Math.max(...results.filter((r) => r.ex).map((r) => r.ex.initial_margin), 1);
  const bars = h("div", { class: "side-bars", "aria-hidden": "true" }, results.filter((r) => r.ex).map((r) => {
    const im = h("span", { class: "b im" }), mm = h("span", { class: "b mm" });
    im.style.width = `${(100 * r.ex.initial_margin / max).toFixed(1)}%`;
    mm.style.width = `${(100 * r.ex.maintenance_margin / max).toFixed(1)}%`;
    return h("div", { class: "side-bar" }, h("span", { class: "name" }, r.model), h("span", { class: "track" }, im, mm));
  }));
  replace(out,
    h("h2", { id: "wi-results-title", tabindex: "-1" }, "Results"),
    h("div", { class: "card" }, cmp, bars, h("p", { class: "legend-line" }, h("span", { class: "swatch s-im" }), " IM ", h("span", { class: "swatch s-mm" }), " MM")),
    sel && sel.ex ? h("div", { id: "wi-detail" },
      h("h2", { id: "wi-detail-title", tabindex: "-1" }, `${sel.model}: ${fmtUsd(sel.ex.initial_margin)} USD initial margin`),
      h("div", { class: "grid-2" }, componentsPanel(sel.ex, "wi"), bindingPanel(sel.ex, "wi")),
      riskMatrixPanel(sel.ex, "wi"),
      greeksPanel(sel.ex, "wi")) : null);
}

export async function show(arg, s) {
  store = s;
  const body = document.getElementById("whatif-body");
  replace(body, h("p", {}, "Loading…"));
  const [params, market] = await Promise.all([api("/parameters"), api("/console/api/market")]);
  models = params.available_models;
  instruments = market.instruments;
  replace(body,
    h("p", {}, market.timestamp ? `Priced on the market of ${market.timestamp.replace("T", " ")}.` : "No market data yet: what-ifs need one market snapshot."),
    form(arg),
    h("div", { id: "wi-results" }));
  if (arg || s.me.scope === "account") rowEditor();
  else { rowEditor("BTC-PERPETUAL", 100000); rowEditor(); }
  if (results.length) renderResults();
}

export function leave() {}
