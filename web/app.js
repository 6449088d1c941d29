// lpgw browser app: camera (or a test pattern) -> JPEG frames over a WebSocket -> the
// gateway -> processed frames back, drawn beside the input. ES modules, no build step, no
// framework. This module wires the page: Start, Stop, prompts, events.
//
// Modules: ui.js (state, DOM helpers, timers), api.js (HTTP and the key; which API family),
// media.js (camera, pattern, WebSocket), stats.js (figures and status polls).

import { $, app, log, setState, every, clearTimers } from './ui.js';
import {
  rememberKey, scrubKeyFromUrl, withKey, startStream, stopStream, sendParams,
} from './api.js';
import {
  openCamera, stopCamera, drawPattern, tick, openSocket, closeSocket,
} from './media.js';
import { renderStats, pollStatus } from './stats.js';

const POLL_MS = 2000;
const RENDER_MS = 500;

function openEvents(eventsUrl) {
  const es = new EventSource(withKey(eventsUrl));
  es.onmessage = (ev) => {
    app.lastEvent = ev.data;
    log(`event ${ev.data.length > 300 ? ev.data.slice(0, 300) + '…' : ev.data}`);
  };
  es.addEventListener('error', (ev) => {
    if (ev.data) log(`event error ${ev.data}`);
  });
  app.events = es;
}

function closeEvents() {
  if (app.events) { app.events.close(); app.events = null; }
}

function setRunning(on) {
  $('start').disabled = on;
  $('stop').disabled = !on;
  $('send').disabled = !on;
}

async function start() {
  // Whatever a previous run left behind goes first: its timers, socket and events.
  clearTimers();
  closeSocket();
  closeEvents();
  $('start').disabled = true;
  setState('connecting', 'starting stream…');
  try {
    const source = $('source').value;
    if (source !== 'pattern' && !app.stream) {
      try {
        app.stream = await openCamera();
        log('camera on');
      } catch (e) {
        if (source === 'camera') throw e;
        log(`no camera (${e.name || e}); using the test pattern`);
      }
    }
    const model = $('model').value.trim() || undefined;
    const s = await startStream(model);
    app.jobId = s.stream_id;
    app.urls = s;
    $('s-job').textContent = `${s.stream_id.slice(0, 8)}… (${s.model_id}, ${s.flow})`;
    log(`stream ${s.stream_id} started (${s.model_id}, ${s.flow})`);
    openEvents(s.events_url);
    openSocket(s.subscribe_url);
    const rate = Math.max(1, Math.min(60, Number($('fps').value) || 24));
    every(1000 / rate, tick);
    every(RENDER_MS, renderStats);
    every(POLL_MS, pollStatus);
    setRunning(true);
  } catch (e) {
    const rej = e.data && e.data.rejections;
    log(`start failed: ${e.message}${rej ? ' ' + JSON.stringify(rej) : ''}`);
    setState('error', 'start failed');
    stopCamera();
    $('start').disabled = false;
  }
}

async function sendPrompt() {
  const prompt = $('prompt').value.trim();
  if (!app.jobId || !app.urls || !prompt) return;
  try {
    await sendParams(app.urls.control_url, { prompt });
    log(`prompt sent: ${prompt}`);
    app.promptsSent++;
  } catch (e) {
    log(`prompt failed: ${e.message}`);
  }
}

async function stop() {
  clearTimers();
  closeSocket();
  closeEvents();
  const id = app.jobId;
  app.jobId = null;
  app.urls = null;
  if (id) {
    try { await stopStream(id); log('stream stopped'); }
    catch (e) { log(`stop failed: ${e.message}`); }
  }
  stopCamera();
  renderStats();
  setState('idle', 'stopped');
  setRunning(false);
}

$('start').onclick = start;
$('stop').onclick = stop;
$('send').onclick = sendPrompt;
$('prompt').addEventListener('keydown', (e) => { if (e.key === 'Enter') sendPrompt(); });
const params = new URLSearchParams(location.search);
if (params.get('model')) $('model').value = params.get('model');
if (params.get('source')) $('source').value = params.get('source');
if (params.get('fps')) $('fps').value = params.get('fps');
// The key is typed into the field, never taken from the page URL.
if (scrubKeyFromUrl()) log('api_key in the page URL is ignored (and removed): type the key into the field');
rememberKey();
drawPattern($('input').getContext('2d'), 0);
setState('idle');
