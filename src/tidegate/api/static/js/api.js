// The REST routes, with the API key from this browser session (never in a URL).
const KEY = "tidegate.api_key";
const ME = "tidegate.me";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  // Who the key is (GET /v1/me): {tenant, scope}. Admin keys see every tenant's jobs.
  get me() { return JSON.parse(sessionStorage.getItem(ME) || "null"); },
  get admin() { return (this.me || {}).scope === "admin"; },
  set(key, me) { sessionStorage.setItem(KEY, key); sessionStorage.setItem(ME, JSON.stringify(me)); },
  clear() { sessionStorage.removeItem(KEY); sessionStorage.removeItem(ME); },
};

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${session.key}`, ...extra };
}

export async function api(path, { method = "GET", body, key, headers = {} } = {}) {
  const init = { method, headers: { ...authHeaders(headers) } };
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    const err = (data && data.error) || {};
    if (res.status === 401 && !key) window.dispatchEvent(new Event("tidegate:unauthorized"));
    throw new ApiError(res.status, err.code || String(res.status), err.message || res.statusText);
  }
  return data;
}

export const qs = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
};
