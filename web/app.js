// lpgw browser app: camera (or a test pattern) -> JPEG frames over a WebSocket -> the
// gateway -> processed frames back, drawn beside the input. No build step, no framework.
'use strict';

const $ = (id) => document.getElementById(id);
const W = 512, H = 512;
// Skip a frame rather than queue it when this much is still waiting in the socket.
const MAX_BUFFERED = 256 * 1024;

const app = {
  jobId: null, ws: null, events: null, stream: null, timer: null, pollTimer: null,
  encoding: false, nextId: 0, sentAt: new Map(), pendingMeta: null,
  sent: 0, received: 0, skipped: 0, serverDrops: 0,
  sendTimes: [], recvTimes: [], latencies: [], state: 'idle', lastEvent: null,
};
window.lpgwStats = app; // read by tests and curious people

function log(msg) {
  const el = $('log');
  const line = `${new Date().toISOString().slice(11, 23)} ${msg}\n`;
  el.textContent = (el.textContent + line).split('\n').slice(-200).join('\n');
  el.scrollTop = el.scrollHeight;
}

function setState(state, text) {
  app.state = state;
  $('status').className = `dot ${state}`;
  $('status-text').textContent = text || state;
  document.body.dataset.state = state;
}

function headers(json) {
  const h = {};
  const key = $('apikey').value.trim();
  if (key) h['X-API-Key'] = key;
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

function keyQuery() {
  const key = $('apikey').value.trim();
  return key ? `&api_key=${encodeURIComponent(key)}` : '';
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
  if (!res.ok) {
    const err = new Error((data && data.error) || `HTTP ${res.status}`);
    err.data = data;
    throw err;
  }
  return data;
}

// ---- sources -------------------------------------------------------------------------

async function openCamera() {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 640, height: 480 }, audio: false,
  });
  const video = $('video');
  video.srcObject = stream;
  await video.play();
  return stream;
}

function drawPattern(ctx, t) {
  const hue = (t / 20) % 360;
  const g = ctx.createLinearGradient(0, 0, W, H);
  g.addColorStop(0, `hsl(${hue}, 80%, 50%)`);
  g.addColorStop(1, `hsl(${(hue + 120) % 360}, 80%, 40%)`);
  ctx.fillStyle = g;
  ctx.fillRect(0, 0, W, H);
  const x = W / 2 + Math.cos(t / 500) * 160, y = H / 2 + Math.sin(t / 700) * 160;
  ctx.fillStyle = '#fff';
  ctx.beginPath(); ctx.arc(x, y, 40, 0, Math.PI * 2); ctx.fill();
  ctx.fillStyle = '#000';
  ctx.font = 'bold 28px monospace';
  ctx.fillText(`lpgw test pattern ${app.nextId}`, 20, 40);
}

function drawInput(t) {
  const ctx = $('input').getContext('2d');
  if (app.stream) {
    const v = $('video');
    // Centre-crop the camera picture to a square.
    const s = Math.min(v.videoWidth, v.videoHeight) || 1;
    ctx.drawImage(v, (v.videoWidth - s) / 2, (v.videoHeight - s) / 2, s, s, 0, 0, W, H);
  } else {
    drawPattern(ctx, t);
  }
}

// ---- sending -------------------------------------------------------------------------

function tick() {
  const ws = app.ws;
  drawInput(performance.now());
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  // Respect the socket: never queue frames behind a slow link, and one encode at a time.
  if (app.encoding || ws.bufferedAmount > MAX_BUFFERED) { app.skipped++; return; }
  app.encoding = true;
  $('input').toBlob((blob) => {
    app.encoding = false;
    if (!blob || ws.readyState !== WebSocket.OPEN) return;
    const id = app.nextId++;
    ws.send(JSON.stringify({ id }));
    ws.send(blob);
    const now = performance.now();
    app.sentAt.set(id, now);
    if (app.sentAt.size > 600) app.sentAt.delete(app.sentAt.keys().next().value);
    app.sent++;
    app.sendTimes.push(now);
  }, 'image/jpeg', 0.8);
}

// ---- receiving -----------------------------------------------------------------------

async function onMessage(ev) {
  if (typeof ev.data === 'string') {
    try {
      const m = JSON.parse(ev.data);
      if (m.type === 'frame') app.pendingMeta = m.id;
    } catch (_) { /* not ours */ }
    return;
  }
  const id = app.pendingMeta;
  app.pendingMeta = null;
  const now = performance.now();
  if (id !== null && id !== undefined && app.sentAt.has(id)) {
    app.latencies.push(now - app.sentAt.get(id));
    if (app.latencies.length > 200) app.latencies.shift();
  }
  app.received++;
  app.recvTimes.push(now);
  if (app.state !== 'running') setState('running');
  try {
    const bmp = await createImageBitmap(ev.data);
    $('output').getContext('2d').drawImage(bmp, 0, 0, W, H);
    bmp.close();
  } catch (e) {
    log(`undecodable output frame: ${e}`);
  }
}

function pct(arr, p) {
  if (!arr.length) return null;
  const s = [...arr].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

function fps(times, now) {
  while (times.length && now - times[0] > 2000) times.shift();
  return times.length / 2;
}

function renderStats() {
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

async function pollJob() {
  if (!app.jobId) return;
  try {
    const j = await api('GET', `/job/${app.jobId}`);
    app.serverDrops = j.frames_dropped || 0;
  } catch (_) { /* the job may be gone */ }
}

// ---- lifecycle -----------------------------------------------------------------------

async function start() {
  $('start').disabled = true;
  setState('connecting', 'starting job…');
  try {
    const source = $('source').value;
    if (source !== 'pattern') {
      try {
        app.stream = await openCamera();
        log('camera on');
      } catch (e) {
        if (source === 'camera') throw e;
        log(`no camera (${e.name || e}); using the test pattern`);
      }
    }
    const model = $('model').value.trim() || undefined;
    const job = await api('POST', '/start-job', { model_id: model });
    app.jobId = job.job_id;
    $('s-job').textContent = `${job.job_id.slice(0, 8)}… (${job.model_id}, ${job.flow})`;
    log(`job ${job.job_id} started (${job.model_id}, ${job.flow})`);
    openEvents();
    openSocket();
    const rate = Math.max(1, Math.min(60, Number($('fps').value) || 24));
    app.timer = setInterval(tick, 1000 / rate);
    app.pollTimer = setInterval(() => { renderStats(); }, 500);
    setInterval(pollJob, 2000);
    $('stop').disabled = false;
    $('send').disabled = false;
  } catch (e) {
    const rej = e.data && e.data.rejections;
    log(`start failed: ${e.message}${rej ? ' ' + JSON.stringify(rej) : ''}`);
    setState('error', 'start failed');
    stopSource();
    $('start').disabled = false;
  }
}

function openSocket() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/ws/stream?job_id=${app.jobId}&meta=1${keyQuery()}`);
  ws.binaryType = 'blob';
  ws.onopen = () => { log('socket open'); setState('connecting', 'waiting for output…'); };
  ws.onmessage = onMessage;
  ws.onclose = (ev) => {
    log(`socket closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`);
    if (app.ws === ws) app.ws = null;
    if (ev.code >= 4000) setState('error', `closed: ${ev.reason || ev.code}`);
  };
  app.ws = ws;
}

function openEvents() {
  const es = new EventSource(`/job/${app.jobId}/events?x=1${keyQuery()}`);
  es.onmessage = (ev) => {
    app.lastEvent = ev.data;
    log(`event ${ev.data.length > 300 ? ev.data.slice(0, 300) + '…' : ev.data}`);
  };
  es.addEventListener('error', (ev) => {
    if (ev.data) log(`event error ${ev.data}`);
  });
  app.events = es;
}

async function sendPrompt() {
  const prompt = $('prompt').value.trim();
  if (!app.jobId || !prompt) return;
  try {
    await api('POST', `/stream/${app.jobId}/control`, { prompt });
    log(`prompt sent: ${prompt}`);
    app.promptsSent = (app.promptsSent || 0) + 1;
  } catch (e) {
    log(`prompt failed: ${e.message}`);
  }
}

function stopSource() {
  if (app.stream) { app.stream.getTracks().forEach((t) => t.stop()); app.stream = null; }
}

async function stop() {
  clearInterval(app.timer);
  if (app.ws) { app.ws.close(1000, 'stop'); app.ws = null; }
  if (app.events) { app.events.close(); app.events = null; }
  if (app.jobId) {
    try { await api('DELETE', `/stop-job/${app.jobId}`); log('job stopped'); }
    catch (e) { log(`stop failed: ${e.message}`); }
  }
  app.jobId = null;
  stopSource();
  renderStats();
  setState('idle', 'stopped');
  $('start').disabled = false;
  $('stop').disabled = true;
  $('send').disabled = true;
}

$('start').onclick = start;
$('stop').onclick = stop;
$('send').onclick = sendPrompt;
$('prompt').addEventListener('keydown', (e) => { if (e.key === 'Enter') sendPrompt(); });
const params = new URLSearchParams(location.search);
if (params.get('model')) $('model').value = params.get('model');
if (params.get('source')) $('source').value = params.get('source');
if (params.get('api_key')) $('apikey').value = params.get('api_key');
drawPattern($('input').getContext('2d'), 0);
setState('idle');
