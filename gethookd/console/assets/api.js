// The JSON API with the session cookie; every state change carries the CSRF token.

let csrf = null;
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function setCsrf(token) { csrf = token; }
export function whenSignedOut(fn) { onSignedOut = fn; }

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "the gateway did not answer; check the connection");
  }
  if (resp.status === 204) return null;
  let payload = null;
  try { payload = await resp.json(); } catch { payload = null; }
  if (!resp.ok) {
    const message = (payload && payload.error) || `${resp.status} ${resp.statusText}`;
    if (resp.status === 401 && !path.startsWith("/v1/console/session")) onSignedOut();
    throw new ApiError(resp.status, message);
  }
  return payload ? payload.data : null;
}

export const get = (path) => api("GET", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
