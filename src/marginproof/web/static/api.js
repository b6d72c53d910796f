// The console's only door to the service: the API key (kept in sessionStorage, never in a URL)
// goes in the X-API-Key header, and in the WebSocket sub-protocol "mp.key.<key>".

const KEY = "marginproof.apiKey";

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(k) {
  if (k) sessionStorage.setItem(KEY, k);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function describe(body, status) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).filter((x) => x !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return `HTTP ${status}`;
}

export async function api(path, { method = "GET", body = null, raw = false } = {}) {
  const headers = { "X-API-Key": getKey() || "" };
  if (body !== null) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === null ? null : JSON.stringify(body),
                                cache: "no-store" });
  if (!r.ok) {
    let detail = null;
    try { detail = await r.json(); } catch (e) { detail = null; }
    throw new ApiError(r.status, describe(detail, r.status));
  }
  if (raw) return r;
  return r.json();
}

// Live stream with reconnection; onMessage(msg), onState("open"|"closed"|"denied").
export function connectStream(onMessage, onState) {
  let ws = null;
  let stopped = false;
  let delay = 500;
  function open() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/console/api/stream`, ["mp.v1", `mp.key.${getKey()}`]);
    ws.onopen = () => { delay = 500; onState("open"); };
    ws.onmessage = (ev) => {
      try { onMessage(JSON.parse(ev.data)); } catch (e) { console.error(e); }
    };
    ws.onclose = (ev) => {
      if (stopped) return;
      if (ev.code === 4401) { onState("denied"); return; }
      onState("closed");
      setTimeout(() => { if (!stopped) open(); }, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  open();
  return { close() { stopped = true; if (ws) ws.close(); } };
}
