// HTTP helpers and the API key.
//
// The page speaks one API family, Family B (the stream API): `POST /stream/start`, then the
// URLs its answer names — `control_url` (`/stream/{id}/control`, plain parameters such as
// `{"prompt": ...}` that the service shapes for the runner), `events_url`
// (`/stream/{id}/events`, SSE), `subscribe_url` (`/ws/stream?job_id=..`, the WebSocket) —
// plus `/stream/{id}/status` for counters and `POST /stream/{id}/stop`. Family A would need
// runner-shaped control messages, which the page should not have to know.
//
// The key lives in the password field (and this tab's sessionStorage), never in the page's
// URL, where it would land in history and referrers. Requests send it as `X-API-Key`; only the
// WebSocket and EventSource, which cannot set headers, carry it as `api_key` in their own
// request URL, the one place the service accepts it from the query.

import { $ } from './ui.js';

const STORE = 'lpgw.apiKey';

/** The API key typed into the page, or an empty string. */
export function apiKey() {
  return $('apikey').value.trim();
}

/** Restores the key from this tab's sessionStorage and keeps it there as it is edited. */
export function rememberKey() {
  const field = $('apikey');
  try {
    const saved = sessionStorage.getItem(STORE);
    if (saved && !field.value) field.value = saved;
    field.addEventListener('input', () => {
      const key = apiKey();
      if (key) sessionStorage.setItem(STORE, key); else sessionStorage.removeItem(STORE);
    });
  } catch (_) { /* storage disabled: the field alone holds the key */ }
}

/** Removes a stale `api_key` from the address bar without reading it. */
export function scrubKeyFromUrl() {
  const url = new URL(location.href);
  if (!url.searchParams.has('api_key')) return false;
  url.searchParams.delete('api_key');
  history.replaceState(null, '', url.pathname + url.search + url.hash);
  return true;
}

function headers(json) {
  const h = {};
  const key = apiKey();
  if (key) h['X-API-Key'] = key;
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

/**
 * `url` with `api_key` added when a key is set: for the WebSocket and EventSource only.
 */
export function withKey(url) {
  const key = apiKey();
  if (!key) return url;
  return `${url}${url.includes('?') ? '&' : '?'}api_key=${encodeURIComponent(key)}`;
}

/** A JSON request; resolves to the parsed answer, rejects with the service's error. */
export async function api(method, path, body) {
  const res = await fetch(path, {
    method, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
  if (!res.ok) {
    const err = new Error((data && data.error) || `HTTP ${res.status}`);
    err.status = res.status;
    err.data = data;
    throw err;
  }
  return data;
}

/** `POST /stream/start`: `{stream_id, model_id, flow, control_url, events_url, ...}`. */
export const startStream = (modelId) => api('POST', '/stream/start', { model_id: modelId });

/** `GET /stream/{id}/status`. */
export const streamStatus = (id) => api('GET', `/stream/${encodeURIComponent(id)}/status`);

/** `POST /stream/{id}/stop`. */
export const stopStream = (id) => api('POST', `/stream/${encodeURIComponent(id)}/stop`, {});

/** `POST {control_url}` with plain parameters. */
export const sendParams = (controlUrl, params) => api('POST', controlUrl, params);
