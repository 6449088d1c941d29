//! The built-in Scope runners, faithful to daydreamlive/scope's live runner
//! (`livepeer_app.py` inside `livepeer_scope_app.py`):
//!
//! - persistent `live-video-to-video/scope` live runners (capacity 1 each, several by
//!   default): a small HTTP app on loopback whose `POST /scope` (reached through the
//!   session's `app_url`) creates the session's `control` and `events` channels through the
//!   session-channels API and answers the job JSON; a second `/scope` for a session that is
//!   still active answers 409;
//! - the serverless `POST /scope` (server/ai_http.go:1188-1355): payment when priced, then
//!   `<mid>-control` and `<mid>-events`, media channels `<mid>-<n>-in/out` made on request.
//!
//! Both run the same job ([`job`]): `runner_ready` first, then the control messages of
//! [`protocol`] — `ping`, `api` (pipeline load/status/schemas, restart: [`api`],
//! [`pipelines`]), `start_stream` (graph checks that fail silently: [`graph`]),
//! `parameters`, `stop_stream` — and batched `logs`. Media ([`media`]): decode → pipeline
//! stages (copy, gray, the prompt-driven effect) → encode, or generated frames in text mode.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::Live;
use super::advert::{Advert, Mode};
use super::price::UsdPrice;
use super::registry::Kind;
use crate::DevnetError;
use crate::respond::{json_encoded, json_ok, plain_error};

mod api;
mod control;
mod graph;
mod job;
mod media;
mod pipelines;
mod protocol;
pub(super) mod serverless;
mod wire;

/// The app string of Scope runners.
pub(crate) const SCOPE_APP: &str = "live-video-to-video/scope";

/// Largest `POST /scope` body (1 MiB).
const MAX_BODY: usize = 1 << 20;

const MIME_TS: &str = "video/MP2T";
const MIME_AUDIO: &str = "audio/MP2T";
/// The control and events channels' MIME type (the wrapper's `CHANNEL_MIME_JSONL`).
const MIME_JSONL: &str = "application/jsonl";

/// How a job makes its media channels.
#[derive(Debug, Clone)]
pub(crate) enum Channels {
    /// Through the session-channels API of a live-runner session.
    Session { control: String, token: String },
    /// Directly on the trickle server, `<mid>-<n>-in/out` (serverless).
    Direct { mid: String },
}

/// A fresh runner process's pipelines.
fn new_pipelines() -> pipelines::SharedPipelines {
    Arc::new(Mutex::new(pipelines::Pipelines::default()))
}

// ---- persistent runner app --------------------------------------------------------------

/// One persistent runner: its pipelines outlive sessions (one runner process).
#[derive(Clone)]
struct App {
    live: Arc<Live>,
    pipelines: pipelines::SharedPipelines,
    /// Session ids with a job running now.
    active: Arc<Mutex<HashSet<String>>>,
    load_delay: Duration,
    events_rotate: Duration,
}

fn hdr<'a>(h: &'a HeaderMap, k: &str) -> &'a str {
    h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn detail(status: StatusCode, text: &str) -> Response {
    json_encoded(status, &json!({ "detail": text }))
}

/// Removes a session from the active set when its job ends.
struct Active(Arc<Mutex<HashSet<String>>>, String);

impl Drop for Active {
    fn drop(&mut self) {
        super::lock(&self.0).remove(&self.1);
    }
}

/// `POST /scope` of the wrapper (`scope_endpoint`).
async fn app_scope(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let live = app.live.clone();
    if live.orch.faults.get().live_stale_session {
        return plain_error(StatusCode::CONFLICT, "runner already has an active session");
    }
    let route = hdr(&headers, "Livepeer-Runner-Route").to_string();
    let sid = hdr(&headers, "Livepeer-Session-Id").to_string();
    let token = hdr(&headers, "Livepeer-Session-Token").to_string();
    let control = hdr(&headers, "Livepeer-Session-Control").to_string();
    if sid.is_empty() {
        return detail(StatusCode::BAD_REQUEST, "missing Livepeer-Session-Id");
    }
    if super::lock(&app.active).contains(&sid) {
        return detail(StatusCode::CONFLICT, "session already active");
    }
    if !serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_object()) {
        return detail(StatusCode::BAD_REQUEST, "request body must be an object");
    }
    if token.is_empty() || control.is_empty() {
        return detail(StatusCode::BAD_REQUEST, "missing Livepeer session headers");
    }
    let cancel = match live.reg().session(&route, &sid, Instant::now()) {
        Ok((_, s)) => s.cancel.clone(),
        Err(_) => return plain_error(StatusCode::NOT_FOUND, "session not found"),
    };
    if !super::lock(&app.active).insert(sid.clone()) {
        return detail(StatusCode::CONFLICT, "session already active");
    }
    let guard = Active(app.active.clone(), sid.clone());
    let r = live
        .client
        .post(format!("{control}/channels"))
        .header("Livepeer-Session-Token", &token)
        .json(&json!({"channels": [
            {"name": "control", "mime_type": MIME_JSONL},
            {"name": "events", "mime_type": MIME_JSONL},
        ]}))
        .send()
        .await;
    let v: Value = match r {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        _ => {
            return detail(
                StatusCode::BAD_GATEWAY,
                "orchestrator did not return control/events channels",
            );
        }
    };
    let find = |name: &str, k: &str| {
        v["channels"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == name))
            .and_then(|c| c[k].as_str().or_else(|| c["url"].as_str()))
            .unwrap_or("")
            .to_string()
    };
    let (ctl_url, ctl_int) = (find("control", "url"), find("control", "internal_url"));
    let (evt_url, evt_int) = (find("events", "url"), find("events", "internal_url"));
    if ctl_int.is_empty() || evt_int.is_empty() {
        return detail(
            StatusCode::BAD_GATEWAY,
            "orchestrator did not return control/events channels",
        );
    }
    let job = job::Job {
        live: live.clone(),
        how: Channels::Session { control, token },
        pipelines: app.pipelines.clone(),
        load_delay: app.load_delay,
        manifest_id: sid.clone(),
        events_rotate: app.events_rotate,
    };
    live.orch.tracker.spawn(async move {
        let _active = guard;
        job::run(job, ctl_int, evt_int, cancel).await;
    });
    json_ok(&json!({
        "manifest_id": sid,
        "session_id": sid,
        "control_url": ctl_url,
        "events_url": evt_url,
    }))
}

/// The route of the `k`-th built-in runner (0-based): the label, then `<label>-2`, ...
fn route_of(label: Option<&str>, k: u32) -> String {
    match label {
        Some(l) if k == 0 => l.to_string(),
        Some(l) => format!("{l}-{}", k + 1),
        None => super::ids::runner_id(),
    }
}

/// Starts the persistent Scope runners' apps and registers them; sets up nothing when the
/// configuration asks for none.
pub(crate) async fn register_builtin(live: &Arc<Live>) -> Result<(), DevnetError> {
    let Some(cfg) = live.cfg.scope.clone().filter(|s| s.persistent) else {
        return Ok(());
    };
    let price = if live.priced() {
        Some(
            UsdPrice::normalize(&cfg.price.price, "usd", &cfg.price.unit)
                .map_err(|e| DevnetError::Config(format!("scope runner price: {e}")))?,
        )
    } else {
        None
    };
    let mut routes = Vec::new();
    for k in 0..cfg.runners {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DevnetError::Bind { addr, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| DevnetError::Bind { addr, source })?
            .port();
        let app = App {
            live: live.clone(),
            pipelines: new_pipelines(),
            active: Arc::default(),
            load_delay: cfg.load_delay,
            events_rotate: cfg.events_rotate,
        };
        let router = Router::new()
            .route("/scope", post(app_scope))
            .route("/health", get(|| async { StatusCode::OK }))
            .with_state(app);
        crate::serve::spawn(
            listener,
            router,
            None,
            live.orch.shutdown.clone(),
            &live.orch.tracker,
        );
        let route = route_of(cfg.label.as_deref(), k);
        let advert = Advert {
            label: cfg
                .label
                .as_ref()
                .map(|_| route.clone())
                .unwrap_or_default(),
            proxy: false,
            runner_url: format!("http://127.0.0.1:{port}"),
            version: "devnet".into(),
            metadata: String::new(),
            status: String::new(),
            mode: Mode::Persistent,
            gpu: Some(super::advert::Gpu {
                id: k.to_string(),
                name: "devnet".into(),
                vram_mb: 0,
            }),
            app: SCOPE_APP.into(),
            capacity: cfg.capacity.max(1),
            price: price.clone(),
        };
        live.reg()
            .upsert_fixed(route.clone(), Kind::Builtin, advert);
        routes.push(route);
    }
    *super::lock(&live.scope_routes) = routes;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_label_then_numbered() {
        assert_eq!(route_of(Some("scope"), 0), "scope");
        assert_eq!(route_of(Some("scope"), 3), "scope-4");
        assert_ne!(route_of(None, 0), route_of(None, 0));
    }
}
