//! Server-sent events: every job event as `data: <json>`, a comment heartbeat, and a final
//! `event: error` when the job fails or the service goes away.
//!
//! One events subscription per job feeds every SSE client (the reference opened a new
//! trickle subscription per client).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::job::Job;
use crate::service::AppState;

/// Counts a job's open connections while alive, so an observed job is never reaped as idle.
pub(crate) struct ViewerGuard(pub(crate) Arc<Job>);

impl ViewerGuard {
    pub(crate) fn new(job: Arc<Job>) -> Self {
        job.viewers.fetch_add(1, Relaxed);
        job.touch();
        Self(job)
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.0.viewers.fetch_sub(1, Relaxed);
        self.0.touch();
    }
}

struct St {
    guard: ViewerGuard,
    rx: broadcast::Receiver<Value>,
    shutdown: CancellationToken,
    done: bool,
}

fn error_event(msg: &str) -> Event {
    Event::default()
        .event("error")
        .data(json!({ "error": msg }).to_string())
}

/// The SSE response for one job.
pub(crate) fn events(s: &AppState, job: Arc<Job>) -> Response {
    let st = St {
        rx: job.events.subscribe(),
        guard: ViewerGuard::new(job),
        shutdown: s.0.shutdown.clone(),
        done: false,
    };
    let stream = futures::stream::unfold(st, next);
    let mut resp = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(s.0.config.sse_heartbeat())
                .text("heartbeat"),
        )
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}

async fn next(mut st: St) -> Option<(Result<Event, Infallible>, St)> {
    if st.done {
        return None;
    }
    let job = st.guard.0.clone();
    loop {
        let got = tokio::select! {
            biased;
            r = st.rx.recv() => r,
            () = job.cancel.cancelled() => Err(RecvError::Closed),
            () = st.shutdown.cancelled() => {
                st.done = true;
                return Some((Ok(error_event("service shutting down")), st));
            }
        };
        match got {
            Ok(v) => return Some((Ok(Event::default().data(v.to_string())), st)),
            Err(RecvError::Lagged(n)) => {
                tracing::debug!(skipped = n, "SSE client lagging; events skipped");
            }
            Err(RecvError::Closed) => {
                st.done = true;
                // Give the watcher a moment to record why the job ended.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                return match job.error() {
                    Some(e) => Some((Ok(error_event(&e)), st)),
                    None if job.phase().is_terminal() => None,
                    None => Some((Ok(error_event("job ended")), st)),
                };
            }
        }
    }
}
