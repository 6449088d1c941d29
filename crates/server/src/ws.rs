//! `WS /ws/stream?job_id=..`: binary JPEG frames in, processed JPEG frames out.
//!
//! The socket is accepted before any check so browsers can read the close code (4001 bad
//! key, 4004 unknown job, 4008 job ended, 1009 message too large). Input frames go to the
//! job's encoder queue without blocking; output frames come from the job's broadcast ring,
//! and a client that reads slowly loses frames (counted) instead of growing a buffer.
//! Closing the socket does not close the job.
//!
//! Optional frame matching (`?meta=1`): a text message `{"id": N}` before a binary frame
//! tags that frame; each output frame is then preceded by a text message
//! `{"type":"frame","id":N,"latency_ms":..}` naming the input it came from, when known.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tracing::{Instrument as _, debug, info_span};

use crate::arbiter::{Claim, InputSource};
use crate::auth::presented_key;
use crate::media::{JobMedia, OutFrame, looks_like_jpeg};
use crate::metrics::Drop;
use crate::service::AppState;
use crate::sse::ViewerGuard;

/// WebSocket query parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WsQuery {
    job_id: Option<String>,
    api_key: Option<String>,
    #[serde(default)]
    meta: Option<String>,
}

const CLOSE_BAD_KEY: u16 = 4001;
const CLOSE_UNKNOWN_JOB: u16 = 4004;
const CLOSE_JOB_ENDED: u16 = 4008;
const CLOSE_TOO_BIG: u16 = 1009;
/// Another source (HTTP publish, another WebSocket) is feeding the job's input.
const CLOSE_INPUT_BUSY: u16 = 4409;
const CLOSE_GOING_AWAY: u16 = 1001;
/// A viewer that accepts no output for this long is disconnected.
const SEND_STALL: std::time::Duration = std::time::Duration::from_secs(20);

/// Upgrades, then checks the key and the job.
#[utoipa::path(get, path = "/ws/stream", tag = "jobs",
    description = "WebSocket: JPEG frames in (binary messages), processed JPEG frames out. \
        The key and the job are checked after the upgrade, and refusals are close codes: \
        4001 invalid or missing key, 4004 unknown job, 4409 another source holds the input, \
        4008 and 1009 for frames over the limits.",
    params(
        ("job_id" = Option<String>, Query, description = "the job (or stream) id"),
        ("api_key" = Option<String>, Query, description = "the key, when no header carries one"),
        ("meta" = Option<String>, Query, description = "1 or true: a JSON text message before each frame"),
    ),
    security(("apiKey" = []), ("bearer" = []), ("queryKey" = [])),
    responses(
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, description = "not a WebSocket upgrade request", content_type = "text/plain", body = String),
        (status = 426, description = "the connection cannot be upgraded", content_type = "text/plain", body = String),
    ))]
pub(crate) async fn stream(
    State(s): State<AppState>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let owner =
        s.0.keys
            .check(presented_key(&headers, q.api_key.as_deref(), true));
    let job = owner.and_then(|o| q.job_id.as_deref().and_then(|id| s.0.registry.get(id, o)));
    let meta = matches!(q.meta.as_deref(), Some("1" | "true"));
    let hard = s.0.config.ws_hard_limit_bytes;
    ws.max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |mut socket| async move {
            if owner.is_none() {
                close(&mut socket, CLOSE_BAD_KEY, "invalid or missing API key").await;
                return;
            }
            let Some(job) = job else {
                close(&mut socket, CLOSE_UNKNOWN_JOB, "unknown job").await;
                return;
            };
            let media = match s.media(&job) {
                Ok(m) => m,
                Err(e) => {
                    close(&mut socket, CLOSE_JOB_ENDED, &e.message).await;
                    return;
                }
            };
            let span = info_span!("ws", job_id = %job.id);
            let guard = ViewerGuard::new(job);
            run(s, socket, guard, media, meta).instrument(span).await;
        })
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        })))
        .await;
}

fn close_msg(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

async fn run(s: AppState, socket: WebSocket, guard: ViewerGuard, media: Arc<JobMedia>, meta: bool) {
    let job = guard.0.clone();
    let (mut tx, mut rx) = socket.split();
    let mut frames = media.subscribe();
    let metrics = s.0.metrics.clone();
    let max_frame = s.0.config.max_frame_bytes;
    let shutdown = s.0.shutdown.clone();
    let cancel = job.cancel.clone();
    let (close_tx, mut close_rx) = tokio::sync::mpsc::channel::<Message>(1);
    let writer_done = tokio_util::sync::CancellationToken::new();
    let done = writer_done.clone().drop_guard();

    // Output: the broadcast ring to this client, dropping what it cannot keep up with.
    let out_metrics = metrics.clone();
    let writer = tokio::spawn(
        async move {
            let _done = done;
            loop {
                let f: Arc<OutFrame> = tokio::select! {
                    biased;
                    m = close_rx.recv() => {
                        if let Some(m) = m {
                            let _ = tx.send(m).await;
                        }
                        break;
                    }
                    () = shutdown.cancelled() => {
                        let _ = tx.send(close_msg(CLOSE_GOING_AWAY, "service shutting down")).await;
                        break;
                    }
                    () = cancel.cancelled() => {
                        let _ = tx.send(close_msg(CLOSE_JOB_ENDED, "job ended")).await;
                        break;
                    }
                    r = frames.recv() => match r {
                        Ok(f) => f,
                        Err(RecvError::Lagged(n)) => {
                            out_metrics.dropped(Drop::SlowReader, n);
                            continue;
                        }
                        Err(RecvError::Closed) => {
                            let _ = tx.send(close_msg(CLOSE_JOB_ENDED, "job ended")).await;
                            break;
                        }
                    },
                };
                let mut batch = Vec::with_capacity(2);
                if meta {
                    let m = json!({
                        "type": "frame",
                        "id": f.client_id,
                        "latency_ms": f.latency.map(|l| l.as_secs_f64() * 1000.0),
                    });
                    batch.push(Message::Text(m.to_string().into()));
                }
                batch.push(Message::Binary(f.jpeg.clone()));
                // While a send waits for a slow client, newer frames overwrite older ones in
                // the ring (counted as lag on the next receive). A client that takes no
                // data at all for the stall limit is disconnected.
                let sent = tokio::select! {
                    r = tokio::time::timeout(SEND_STALL, async {
                        for m in batch {
                            tx.send(m).await?;
                        }
                        Ok::<(), axum::Error>(())
                    }) => r,
                    () = shutdown.cancelled() => break,
                    () = cancel.cancelled() => break,
                };
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        debug!("viewer stalled; closing");
                        break;
                    }
                }
            }
        }
        .in_current_span(),
    );

    // Input: each binary message is one JPEG; bad ones are counted and skipped. The job
    // takes one input source at a time: a frame while another source holds the input
    // closes this connection with `CLOSE_INPUT_BUSY`.
    let source = InputSource::socket();
    let mut next_id: Option<u64> = None;
    loop {
        let msg = tokio::select! {
            m = rx.next() => m,
            // The writer sent a close (job ended, shutdown): give the peer a moment to answer.
            () = writer_done.cancelled() => {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx.next()).await;
                break;
            }
        };
        let Some(msg) = msg else { break };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "websocket read failed");
                let text = e.to_string().to_ascii_lowercase();
                if text.contains("too long")
                    || text.contains("too big")
                    || text.contains("capacity")
                {
                    metrics.dropped(Drop::Oversized, 1);
                    let _ = close_tx.try_send(close_msg(CLOSE_TOO_BIG, "message too large"));
                }
                break;
            }
        };
        job.touch();
        match msg {
            Message::Binary(b) => {
                let id = next_id.take();
                if b.len() > max_frame {
                    metrics.dropped(Drop::Oversized, 1);
                } else if !looks_like_jpeg(&b) {
                    metrics.dropped(Drop::Invalid, 1);
                } else if let Claim::Busy(holder) = job.claim_input(source) {
                    let why = format!("the stream's input is held by {}", holder.name());
                    let _ = close_tx.try_send(close_msg(CLOSE_INPUT_BUSY, &why));
                    break;
                } else {
                    media.push_jpeg(b, id);
                }
            }
            Message::Text(t) => {
                next_id = serde_json::from_str::<Value>(t.as_str())
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_u64));
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    job.release_input(source);
    let _ = close_tx.try_send(Message::Close(None));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    debug!("websocket closed; the job stays");
    drop(guard);
}
