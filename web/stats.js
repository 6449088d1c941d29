// The figures under the pictures: frame counts, rates, latency percentiles, drops.

import { $, app } from './ui.js';
import { streamStatus } from './api.js';

function pct(arr, p) {
  if (!arr.length) return null;
  const s = [...arr].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

function fps(times, now) {
  while (times.length && now - times[0] > 2000) times.shift();
  return times.length / 2;
}

/** Writes the current figures into the page. */
export function renderStats() {
  const now = performance.now();
  $('s-sent').textContent = app.sent;
  $('s-recv').textContent = app.received;
  $('s-fps-in').textContent = fps(app.sendTimes, now).toFixed(1);
  $('s-fps-out').textContent = fps(app.recvTimes, now).toFixed(1);
  const p50 = pct(app.latencies, 0.5), p95 = pct(app.latencies, 0.95);
  $('s-lat50').textContent = p50 === null ? '–' : p50.toFixed(0);
  $('s-lat95').textContent = p95 === null ? '–' : p95.toFixed(0);
  $('s-skipped').textContent = app.skipped;
  $('s-drops').textContent = app.serverDrops;
}

/** Reads the service's counters for the running stream (`GET /stream/{id}/status`). */
export async function pollStatus() {
  const id = app.jobId;
  if (!id) return;
  app.polls++;
  try {
    const s = await streamStatus(id);
    if (app.jobId === id) app.serverDrops = s.frames_dropped || 0;
  } catch (_) { /* the stream may be gone */ }
}
