// Shared panels of a margin explanation (drill-down and what-if): components, binding scenario,
// greeks by underlying and expiry, and the risk matrix heat map.

import { h, table, fmtUsd, fmtNum } from "./dom.js";
import { barChart, heatmap } from "./charts.js";

const COMPONENT_NAMES = {
  scenario_loss: "Scenario loss", short_option_minimum: "Short-option minimum",
  core: "Core scenario risk", apc_adjustment: "APC adjustment", stress_floor: "Stress floor",
  liquidity: "Liquidity add-on", concentration: "Concentration add-on", funding: "Funding add-on",
  scenario_risk: "Scenario risk", futures: "Futures", short_options: "Short options",
};

export function componentLabel(c) {
  const base = COMPONENT_NAMES[c.name] || c.name.replace(/_/g, " ");
  return c.group ? `${base} (${c.group})` : base;
}

export function componentsPanel(ex, idPrefix) {
  const items = ex.components.map((c) => ({ label: componentLabel(c), value: c.value }));
  return h("section", { class: "card", "aria-labelledby": `${idPrefix}-comp` },
    h("h2", { id: `${idPrefix}-comp` }, "Margin by component"),
    items.length ? barChart({ title: "Margin by component (USD)", items }) : null,
    table("Components of the requirement (USD)", [
      { key: "label", label: "Component" },
      { key: "value", label: "USD", num: true, render: (r) => fmtUsd(r.value) },
    ], items, { hideCaption: true }),
    h("p", { class: "hint" }, `${ex.model} · params ${ex.params_hash.slice(0, 16)}… · market ${ex.market_timestamp}`));
}

export function bindingPanel(ex, idPrefix) {
  const ws = ex.worst_scenarios || [];
  return h("section", { class: "card", "aria-labelledby": `${idPrefix}-bind` },
    h("h2", { id: `${idPrefix}-bind` }, "Binding scenario"),
    ex.binding ? h("p", { class: "binding-line" }, h("strong", {}, ex.binding.label),
      ` — loss ${fmtUsd(ex.binding.loss)} USD (group ${ex.binding.group})`) : h("p", {}, "No scenario binds (no requirement, or a table model)."),
    ws.length > 1 ? table("Worst scenario per margin group", [
      { key: "group", label: "Group" }, { key: "label", label: "Scenario" },
      { key: "loss", label: "Loss (USD)", num: true, render: (r) => fmtUsd(r.loss) },
    ], ws) : null);
}

export function greeksPanel(ex, idPrefix) {
  const rows = ex.greeks || [];
  return h("section", { class: "card", "aria-labelledby": `${idPrefix}-greeks` },
    h("h2", { id: `${idPrefix}-greeks` }, "Greeks by underlying and expiry"),
    rows.length ? h("div", { class: "table-scroll" }, table("Greeks by underlying and expiry (USD terms; delta also in coin)", [
      { key: "underlying", label: "Underlying" }, { key: "expiry", label: "Expiry" },
      { key: "delta_coin", label: "Delta (coin)", num: true, render: (r) => fmtNum(r.delta_coin) },
      { key: "delta_usd", label: "Delta (USD)", num: true, render: (r) => fmtUsd(r.delta_usd) },
      { key: "gamma_coin_per_usd", label: "Gamma (coin/USD)", num: true, render: (r) => (r.gamma_coin_per_usd === 0 ? "0" : r.gamma_coin_per_usd.toExponential(2)) },
      { key: "vega_usd_per_vol_point", label: "Vega (USD/vol pt)", num: true, render: (r) => fmtNum(r.vega_usd_per_vol_point) },
      { key: "theta_usd_per_day", label: "Theta (USD/day)", num: true, render: (r) => fmtNum(r.theta_usd_per_day) },
    ], rows, { rowHeader: true })) : h("p", {}, "No positions."));
}

export function riskMatrixPanel(ex, idPrefix) {
  const maps = ex.heatmaps || [];
  const holder = h("div", { class: "heatmap-holder" });
  const sec = h("section", { class: "card", "aria-labelledby": `${idPrefix}-rm` },
    h("h2", { id: `${idPrefix}-rm` }, "Risk matrix"));
  if (!maps.length) {
    sec.append(h("p", {}, "This model has no scenario matrix to show."));
    return sec;
  }
  let pick = Math.max(0, maps.findIndex((m) => ex.binding && m.group === ex.binding.group));
  const draw = () => holder.replaceChildren(heatmap(maps[pick]));
  if (maps.length > 1) {
    const sel = h("select", { id: `${idPrefix}-rm-group`, onchange: (e) => { pick = Number(e.target.value); draw(); } },
      maps.map((m, i) => h("option", { value: String(i), selected: i === pick }, m.group)));
    sec.append(h("div", { class: "toolbar" }, h("label", { for: `${idPrefix}-rm-group` }, "Margin group"), sel));
  }
  sec.append(holder);
  draw();
  return sec;
}
