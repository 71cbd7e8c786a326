// Talking to the server: the console's own read routes and shoal's control API, with the key the user gave
// (kept for this tab only, in sessionStorage). Errors come back with the server's own words.

const KEY = "shoal-console-key";

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (secret) => sessionStorage.setItem(KEY, secret),
  forget: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// The message a refusal carries, in whichever door's shape it came.
export function message(body, status) {
  if (body && typeof body === "object") {
    if (typeof body.error === "string") return body.error;
    if (body.error && typeof body.error.message === "string") return body.error.message;
    if (typeof body.message === "string") return body.message;
  }
  return typeof body === "string" && body ? body : `HTTP ${status}`;
}

export async function call(method, path, body) {
  const headers = {};
  const secret = key.get();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                      cache: "no-store"});
  const text = await response.text();
  let data = text;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the text */ }
  if (!response.ok) throw new ApiError(response.status, message(data, response.status), data);
  return data;
}

export const get = (path) => call("GET", path);
const q = encodeURIComponent;

export const api = {
  session: () => get("/console/api/session"),
  state: () => get("/console/api/state"),
  history: (since) => get(`/console/api/history?since=${since}`),
  copyLog: (id) => get(`/console/api/copies/${q(id)}/log`),
  benchList: () => get("/console/api/bench"),
  bench: (id) => get(`/console/api/bench/${q(id)}`),
  models: () => get("/v1/models"),
  scale: (name, copies) => call("PATCH", `/api/inference-components/${q(name)}`, {CopyCount: copies}),
  createEndpoint: (spec) => call("POST", "/api/endpoints", spec),
  deleteEndpoint: (name, cascade) => call("DELETE", `/api/endpoints/${q(name)}${cascade ? "?cascade=true" : ""}`),
  deploy: (spec) => call("POST", "/api/inference-components", spec),
  deleteComponent: (name) => call("DELETE", `/api/inference-components/${q(name)}`),
  autoscaling: (name) => get(`/api/inference-components/${q(name)}/autoscaling`),
  putAutoscaling: (name, spec) => call("PUT", `/api/inference-components/${q(name)}/autoscaling`, spec),
  deleteAutoscaling: (name) => call("DELETE", `/api/inference-components/${q(name)}/autoscaling`),
};
