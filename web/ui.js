// Shared page state and the small DOM helpers every module uses.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** Canvas size of the input and output pictures. */
export const W = 512, H = 512;

/**
 * Everything the page knows about the running stream. Exposed as `window.lpgwStats` for
 * tests and curious people; `timers` counts the intervals currently running and `polls` the
 * status polls made so far, so a test can see that Stop/Start does not pile up timers.
 */
export const app = {
  jobId: null, urls: null, ws: null, events: null, stream: null,
  encoding: false, nextId: 0, sentAt: new Map(), pendingMeta: null,
  sent: 0, received: 0, skipped: 0, serverDrops: 0, polls: 0, promptsSent: 0,
  sendTimes: [], recvTimes: [], latencies: [], state: 'idle', lastEvent: null, timers: 0,
};
window.lpgwStats = app;

/** Appends a timestamped line to the event log (the newest 200 lines are kept). */
export function log(msg) {
  const el = $('log');
  const line = `${new Date().toISOString().slice(11, 23)} ${msg}\n`;
  el.textContent = (el.textContent + line).split('\n').slice(-200).join('\n');
  el.scrollTop = el.scrollHeight;
}

/** Shows `state` (idle, connecting, running, error) in the header and on `<body>`. */
export function setState(state, text) {
  app.state = state;
  $('status').className = `dot ${state}`;
  $('status-text').textContent = text || state;
  document.body.dataset.state = state;
}

// Every interval the page runs goes through here, so Stop (and a new Start) can clear them
// all: a timer that is never cleared keeps running, and each Start would add another.
const running = new Set();

/** Starts an interval that `clearTimers` will stop. */
export function every(ms, fn) {
  const handle = setInterval(fn, ms);
  running.add(handle);
  app.timers = running.size;
  return handle;
}

/** Stops every interval started with `every`. */
export function clearTimers() {
  for (const handle of running) clearInterval(handle);
  running.clear();
  app.timers = 0;
}
