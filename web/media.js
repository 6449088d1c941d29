// Pictures in and out: the camera (or a test pattern) drawn to the input canvas, JPEG frames
// sent over the WebSocket, processed frames drawn to the output canvas.

import { $, app, log, setState, W, H } from './ui.js';
import { withKey } from './api.js';

// Skip a frame rather than queue it when this much is still waiting in the socket.
const MAX_BUFFERED = 256 * 1024;

/** Opens the camera and plays it into the hidden `<video>`. */
export async function openCamera() {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 640, height: 480 }, audio: false,
  });
  const video = $('video');
  video.srcObject = stream;
  await video.play();
  return stream;
}

/** Stops the camera, if it is on. */
export function stopCamera() {
  if (app.stream) { app.stream.getTracks().forEach((t) => t.stop()); app.stream = null; }
}

/** Draws the moving test pattern at time `t` (ms). */
export function drawPattern(ctx, t) {
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

/** One frame: draw the input, and send it unless the socket or the encoder is busy. */
export function tick() {
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

/** Opens the WebSocket at the start answer's `subscribe_url`, with frame matching on. */
export function openSocket(subscribeUrl) {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const path = `${subscribeUrl}${subscribeUrl.includes('?') ? '&' : '?'}meta=1`;
  const ws = new WebSocket(`${proto}://${location.host}${withKey(path)}`);
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

/** Closes the WebSocket, if open. */
export function closeSocket() {
  if (app.ws) { app.ws.close(1000, 'stop'); app.ws = null; }
}
