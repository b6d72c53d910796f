// Console entry point: log-in, navigation (URL fragment), the live stream and shared state.

import { api, ApiError, connectStream, getKey, setKey } from "./api.js";
import { announce } from "./dom.js";
import * as dashboard from "./dashboard.js";
import * as account from "./account.js";
import * as whatif from "./whatif.js";
import * as reports from "./reports.js";
import * as proofs from "./proofs.js";

export const store = {
  me: null,
  rows: new Map(),        // account_id -> latest margin row
  updatedAt: new Map(),   // account_id -> time the row last changed (highlight)
  overview: null,         // counts, alerts, events, market time, engine model
  liveEvents: [],         // events from the stream, newest first
  conn: "offline",
  listeners: new Set(),
  emit(kind, data) { for (const fn of this.listeners) fn(kind, data); },
};

const VIEWS = { dashboard, account, whatif, reports, proofs };
let stream = null;
let current = null;
let refreshTimer = null;

function $(id) { return document.getElementById(id); }

function setConn(state) {
  store.conn = state;
  const el = $("conn");
  el.textContent = { open: "live", closed: "reconnecting…", denied: "key refused", offline: "offline" }[state] || state;
  el.className = `conn conn-${state}`;
  store.emit("conn", state);
  if (state === "denied") logout("Your key was refused (revoked?). Log in again.");
}

export async function loadOverview() {
  const ov = await api("/console/api/overview");
  store.overview = ov;
  store.rows = new Map(ov.accounts.map((r) => [r.account_id, r]));
  store.emit("overview", ov);
  return ov;
}

function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    try { await loadOverview(); } catch (e) { console.error(e); }
  }, 1000);
}

function onStream(msg) {
  if (msg.type === "hello") return;
  if (msg.type !== "update") return;
  const now = Date.now();
  for (const row of msg.margins) {
    const old = store.rows.get(row.account_id);
    if (old && old.seq > row.seq) continue;
    store.rows.set(row.account_id, row);
    store.updatedAt.set(row.account_id, now);
  }
  for (const ev of msg.events) {
    store.liveEvents.unshift({ ...ev, received_ms: now });
    if (ev.type === "margin_call" || ev.type === "liquidation") {
      $("alerts-live").textContent = `${ev.type === "margin_call" ? "Margin call" : "Liquidation signal"} on account ${ev.account_id}`;
    } else if (ev.type === "margin_warning") {
      $("alerts-live").textContent = `Margin warning on account ${ev.account_id}: probability of a margin call ${(100 * ev.p_call).toFixed(1)} %`;
    } else if (ev.type === "feed_alert") {
      $("alerts-live").textContent = `Feed alert: ${ev.stream} ${ev.problem}`;
    } else if (ev.type === "params_scheduled") {
      announce(`Parameter change scheduled for ${ev.model}`);
    }
  }
  store.liveEvents.length = Math.min(store.liveEvents.length, 100);
  if (msg.refresh) scheduleRefresh();
  store.emit("update", msg);
}

function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#/, ""));
  const [name, ...rest] = raw.split("/");
  return { name: VIEWS[name] ? name : "dashboard", arg: rest.join("/") || null };
}

async function route() {
  if (!store.me) return;
  const { name, arg } = parseHash();
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${name}`;
  for (const a of document.querySelectorAll("#nav a")) {
    const active = a.dataset.view === name || (name === "account" && a.dataset.view === "dashboard");
    if (active) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (current && current.leave) current.leave();
  current = VIEWS[name];
  const title = document.querySelector(`#view-${name} h1`);
  try {
    await current.show(arg, store);
  } catch (e) {
    console.error(e);
  }
  document.title = `${title ? title.textContent : name} · marginproof console`;
  if (title) title.focus({ preventScroll: false });
}

async function login(key) {
  setKey(key);
  try {
    store.me = await api("/console/api/me");
  } catch (e) {
    setKey(null);
    store.me = null;
    throw e;
  }
  $("login-form").reset();
  $("view-login").hidden = true;
  $("nav").hidden = false;
  $("session").hidden = false;
  const me = store.me;
  $("who").textContent = me.scope === "operator" ? `operator · ${me.label || me.key_id}` : `account ${me.account_id}`;
  document.body.dataset.scope = me.scope;
  if (!location.hash) location.replace("#dashboard");
  stream = connectStream(onStream, setConn);
  await loadOverview().catch((e) => console.error(e));
  await route();
}

export function logout(message = "") {
  if (stream) stream.close();
  stream = null;
  setKey(null);
  store.me = null;
  store.rows = new Map();
  store.liveEvents = [];
  store.overview = null;
  if (current && current.leave) current.leave();
  current = null;
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-login";
  $("nav").hidden = true;
  $("session").hidden = true;
  setConn("offline");
  $("login-error").textContent = message;
  $("api-key").focus();
}

function boot() {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    const err = $("login-error");
    err.textContent = "";
    if (!key) { err.textContent = "Enter your API key."; $("api-key").focus(); return; }
    try {
      await login(key);
    } catch (e) {
      err.textContent = e instanceof ApiError && e.status === 401 ? "This key is not valid (unknown or revoked)." : `Could not log in: ${e.message}`;
      $("api-key").focus();
    }
  });
  $("logout").addEventListener("click", () => logout("Logged out."));
  window.addEventListener("hashchange", route);
  const saved = getKey();
  if (saved) login(saved).catch(() => logout("Your saved key is no longer valid."));
  else $("api-key").focus();
}

boot();
