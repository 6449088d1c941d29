//! The built-in Scope runners and the Scope control protocol (spec scope-protocol.md).
//!
//! - A persistent `live-video-to-video/scope` live runner: a small HTTP app on loopback whose
//!   `POST /scope` (reached through the session's `app_url`) creates the session's `control`
//!   and `events` channels through the session-channels API and answers the job JSON.
//! - The serverless `POST /scope` (server/ai_http.go:1188-1355): payment when priced, then
//!   `<mid>-control` and `<mid>-events`, media channels `<mid>-<n>-in/out` made on request.
//!
//! Both run the same job: read control messages; `start_stream` creates `in`/`out` channels
//! and answers `stream_started`, `parameters` updates the video effect and answers
//! `parameters_ack`, `stop_stream` ends the media (`stream_stopped`), `ping` gets `pong`.
//! Video goes through the devnet's LV2V runner (decode → prompt effect → encode).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use lpgw_trickle::client::SubscriberConfig;
use lpgw_trickle::json::{
    JsonReader, JsonReaderConfig, JsonWriter, JsonWriterConfig, is_keepalive,
};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Live;
use super::advert::{Advert, Mode};
use super::price::UsdPrice;
use super::registry::Kind;
use crate::DevnetError;
use crate::respond::{json_ok, plain_error};
use crate::runner::{self, RunnerSpec};

/// The app string of Scope runners.
pub(crate) const SCOPE_APP: &str = "live-video-to-video/scope";

/// Largest `POST /scope` body (1 MiB).
const MAX_BODY: usize = 1 << 20;

const MIME_TS: &str = "video/MP2T";

/// How a job makes its media channels.
#[derive(Debug, Clone)]
enum Channels {
    /// Through the session-channels API of a live-runner session.
    Session { control: String, token: String },
    /// Directly on the trickle server, `<mid>-<n>-in/out` (serverless).
    Direct { mid: String },
}

/// One pair of media channels: (public in, internal in, public out, internal out, names).
struct Media {
    in_url: String,
    in_internal: String,
    out_url: String,
    out_internal: String,
    names: Vec<String>,
}

async fn make_media(live: &Live, how: &Channels, n: u32) -> Result<Media, String> {
    match how {
        Channels::Direct { mid } => {
            let i = format!("{mid}-{n}-in");
            let o = format!("{mid}-{n}-out");
            live.orch.trickle.create_channel(&i, MIME_TS);
            live.orch.trickle.create_channel(&o, MIME_TS);
            Ok(Media {
                in_url: live.public_trickle(&i),
                in_internal: live.internal_trickle(&i),
                out_url: live.public_trickle(&o),
                out_internal: live.internal_trickle(&o),
                names: vec![i, o],
            })
        }
        Channels::Session { control, token } => {
            let body = json!({"channels": [
                {"name": format!("in-{n}"), "mime_type": MIME_TS},
                {"name": format!("out-{n}"), "mime_type": MIME_TS},
            ]});
            let r = live
                .client
                .post(format!("{control}/channels"))
                .header("Livepeer-Session-Token", token)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let v: Value = r.json().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("channels: {status}: {v}"));
            }
            let ch = |i: usize, k: &str| {
                v["channels"][i][k]
                    .as_str()
                    .map(str::to_string)
                    .ok_or("channels response")
            };
            Ok(Media {
                in_url: ch(0, "url")?,
                in_internal: ch(0, "internal_url")?,
                out_url: ch(1, "url")?,
                out_internal: ch(1, "internal_url")?,
                names: Vec::new(),
            })
        }
    }
}

/// A running media stream of a job.
struct Stream {
    cancel: CancellationToken,
    /// Forwards parameter updates to the effect runner's control channel.
    params: JsonWriter,
    names: Vec<String>,
}

/// The reply to one control message, if any (pure).
pub(crate) fn reply_to(msg: &Value) -> Option<Value> {
    let rid = msg.get("request_id").cloned();
    let with_rid = |mut v: Value| {
        if let Some(r) = &rid {
            v["request_id"] = r.clone();
        }
        v
    };
    match msg.get("type").and_then(Value::as_str)? {
        "ping" => Some(with_rid(
            json!({"type": "pong", "timestamp": msg.get("timestamp").cloned().unwrap_or(Value::Null)}),
        )),
        "parameters" => Some(with_rid(json!({"type": "parameters_ack", "status": "ok"}))),
        "api" => Some(with_rid(json!({
            "type": "api_response",
            "status": 404,
            "body": {"error": format!("no such API: {} {}",
                msg.get("method").and_then(Value::as_str).unwrap_or("GET"),
                msg.get("path").and_then(Value::as_str).unwrap_or(""))},
        }))),
        _ => None,
    }
}

/// Runs one job's control protocol until `cancel` or the control channel ends.
async fn run_job(
    live: Arc<Live>,
    control_internal: String,
    events_internal: String,
    how: Channels,
    initial: Option<Value>,
    cancel: CancellationToken,
) {
    let cfg = JsonWriterConfig {
        keepalive: None,
        ..JsonWriterConfig::default()
    };
    let Ok(events) = JsonWriter::new(&events_internal, cfg) else {
        tracing::warn!("scope job cannot open events");
        return;
    };
    let rcfg = JsonReaderConfig {
        subscriber: SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
        ..JsonReaderConfig::default()
    };
    let Ok(mut control) = JsonReader::new(&control_internal, rcfg) else {
        tracing::warn!("scope job cannot open control");
        return;
    };
    let mut stream: Option<Stream> = None;
    let mut n = 0u32;
    // Periodic status keeps event-liveness watchdogs of gateways satisfied.
    let mut status =
        tokio::time::interval(live.orch.status_interval.max(Duration::from_millis(10)));
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            () = cancel.cancelled() => break,
            () = live.orch.shutdown.cancelled() => break,
            _ = status.tick() => {
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let state = if stream.is_some() { "ONLINE" } else { "IDLE" };
                let _ = events
                    .send(&json!({"type": "status", "pipeline": "scope", "state": state, "timestamp": ms}))
                    .await;
                continue;
            }
            m = control.next() => match m {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => break,
            },
        };
        if is_keepalive(&msg) {
            continue;
        }
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        let rid = msg.get("request_id").cloned().unwrap_or(Value::Null);
        match kind {
            "start_stream" => {
                if let Some(s) = stream.take() {
                    stop_stream(&live, s);
                }
                match start_stream(
                    &live,
                    &how,
                    n,
                    msg.get("params").cloned().or_else(|| initial.clone()),
                    &cancel,
                )
                .await
                {
                    Ok((s, media)) => {
                        n += 1;
                        stream = Some(s);
                        let _ = events
                            .send(&json!({
                                "type": "stream_started",
                                "request_id": rid,
                                "channels": [
                                    {"url": media.0, "direction": "in", "mime_type": MIME_TS, "input_track_index": 0},
                                    {"url": media.1, "direction": "out", "mime_type": MIME_TS, "output_track_index": 0, "output_media_kind": "video"},
                                ],
                            }))
                            .await;
                    }
                    Err(e) => {
                        let _ = events
                            .send(&json!({"type": "error", "request_id": rid, "message": e}))
                            .await;
                    }
                }
            }
            "stop_stream" => {
                if let Some(s) = stream.take() {
                    stop_stream(&live, s);
                }
                let _ = events
                    .send(&json!({"type": "stream_stopped", "request_id": rid}))
                    .await;
            }
            "parameters" => {
                if let Some(s) = &stream {
                    let _ = s.params.send(&msg).await;
                }
                if let Some(r) = reply_to(&msg) {
                    let _ = events.send(&r).await;
                }
            }
            _ => {
                if let Some(r) = reply_to(&msg) {
                    let _ = events.send(&r).await;
                }
            }
        }
    }
    if let Some(s) = stream.take() {
        stop_stream(&live, s);
    }
    let _ = events.close().await;
}

/// Creates the media channels and starts the effect runner between them.
async fn start_stream(
    live: &Arc<Live>,
    how: &Channels,
    n: u32,
    params: Option<Value>,
    job: &CancellationToken,
) -> Result<(Stream, (String, String)), String> {
    let media = make_media(live, how, n).await?;
    // The effect runner takes its parameters from a private control channel.
    let tag = super::ids::random_str(5);
    let fx_control = format!("_scope-{tag}-control");
    let fx_events = format!("_scope-{tag}-events");
    live.orch
        .trickle
        .create_channel(&fx_control, "application/json");
    live.orch
        .trickle
        .create_channel(&fx_events, "application/json");
    let wcfg = JsonWriterConfig {
        keepalive: None,
        ..JsonWriterConfig::default()
    };
    let params_writer =
        JsonWriter::new(&live.internal_trickle(&fx_control), wcfg).map_err(|e| e.to_string())?;
    let spec = RunnerSpec {
        model: "scope".into(),
        params,
        input: media.in_internal.clone(),
        output: media.out_internal.clone(),
        control: live.internal_trickle(&fx_control),
        events: live.internal_trickle(&fx_events),
        status_interval: Duration::from_secs(10),
    };
    let cancel = job.child_token();
    let (seg_tx, mut seg_rx) = tokio::sync::mpsc::channel::<()>(8);
    let c = cancel.clone();
    live.orch.tracker.spawn(async move {
        let drain = async { while seg_rx.recv().await.is_some() {} };
        tokio::join!(runner::run(spec, c, seg_tx), drain);
    });
    let mut names = media.names.clone();
    names.push(fx_control);
    names.push(fx_events);
    Ok((
        Stream {
            cancel,
            params: params_writer,
            names,
        },
        (media.in_url, media.out_url),
    ))
}

fn stop_stream(live: &Live, s: Stream) {
    s.cancel.cancel();
    for n in &s.names {
        live.orch.trickle.delete_channel(n);
    }
    drop(s.params);
}

// ---- persistent runner app --------------------------------------------------------------

#[derive(Clone)]
struct App {
    live: Arc<Live>,
}

fn hdr<'a>(h: &'a HeaderMap, k: &str) -> &'a str {
    h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn app_scope(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let live = app.live;
    let params = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("params").cloned())
        .filter(|p| !p.is_null());
    if live.orch.faults.get().live_stale_session {
        return plain_error(StatusCode::CONFLICT, "runner already has an active session");
    }
    let route = hdr(&headers, "Livepeer-Runner-Route").to_string();
    let sid = hdr(&headers, "Livepeer-Session-Id").to_string();
    let token = hdr(&headers, "Livepeer-Session-Token").to_string();
    let control = hdr(&headers, "Livepeer-Session-Control").to_string();
    if sid.is_empty() || token.is_empty() || control.is_empty() {
        return plain_error(StatusCode::BAD_REQUEST, "missing Livepeer session headers");
    }
    let cancel = match live.reg().session(&route, &sid, Instant::now()) {
        Ok((_, s)) => s.cancel.clone(),
        Err(_) => return plain_error(StatusCode::NOT_FOUND, "session not found"),
    };
    let r = live
        .client
        .post(format!("{control}/channels"))
        .header("Livepeer-Session-Token", &token)
        .json(&json!({"channels": [
            {"name": "control", "mime_type": "application/json"},
            {"name": "events", "mime_type": "application/json"},
        ]}))
        .send()
        .await;
    let v: Value = match r {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        Ok(r) => {
            let s = r.status();
            return plain_error(StatusCode::BAD_GATEWAY, &format!("channels: {s}"));
        }
        Err(e) => return plain_error(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let get = |i: usize, k: &str| v["channels"][i][k].as_str().unwrap_or("").to_string();
    let (ctl_url, ctl_int, evt_url, evt_int) = (
        get(0, "url"),
        get(0, "internal_url"),
        get(1, "url"),
        get(1, "internal_url"),
    );
    if ctl_int.is_empty() || evt_int.is_empty() {
        return plain_error(StatusCode::BAD_GATEWAY, "channels response incomplete");
    }
    let job = run_job(
        live.clone(),
        ctl_int,
        evt_int,
        Channels::Session { control, token },
        params,
        cancel,
    );
    live.orch.tracker.spawn(job);
    json_ok(&json!({
        "manifest_id": sid,
        "control_url": ctl_url,
        "events_url": evt_url,
        "publish_url": "",
        "subscribe_url": "",
    }))
}

/// Starts the persistent Scope runner's app and registers it; sets up nothing when the
/// configuration asks for none.
pub(crate) async fn register_builtin(live: &Arc<Live>) -> Result<(), DevnetError> {
    let Some(cfg) = live.cfg.scope.clone().filter(|s| s.persistent) else {
        return Ok(());
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DevnetError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| DevnetError::Bind { addr, source })?
        .port();
    let router = Router::new()
        .route("/scope", post(app_scope))
        .route("/health", get(|| async { StatusCode::OK }))
        .with_state(App { live: live.clone() });
    crate::serve::spawn(
        listener,
        router,
        None,
        live.orch.shutdown.clone(),
        &live.orch.tracker,
    );
    let price = if live.priced() {
        Some(
            UsdPrice::normalize(&cfg.price.price, "usd", &cfg.price.unit)
                .map_err(|e| DevnetError::Config(format!("scope runner price: {e}")))?,
        )
    } else {
        None
    };
    let route = cfg.label.clone().unwrap_or_else(super::ids::runner_id);
    let advert = Advert {
        label: cfg.label.clone().unwrap_or_default(),
        proxy: false,
        runner_url: format!("http://127.0.0.1:{port}"),
        version: "devnet".into(),
        metadata: String::new(),
        status: String::new(),
        mode: Mode::Persistent,
        gpu: Some(super::advert::Gpu {
            id: "0".into(),
            name: "devnet".into(),
            vram_mb: 0,
        }),
        app: SCOPE_APP.into(),
        capacity: cfg.capacity.max(1),
        price,
    };
    live.reg()
        .upsert_fixed(route.clone(), Kind::Builtin, advert);
    *super::lock(&live.scope_route) = Some(route);
    Ok(())
}

pub(super) mod serverless;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(
            reply_to(&json!({"type":"ping","timestamp":5,"request_id":"r"})),
            Some(json!({"type":"pong","timestamp":5,"request_id":"r"}))
        );
        assert_eq!(
            reply_to(&json!({"type":"parameters","params":{"prompt":"x"}})),
            Some(json!({"type":"parameters_ack","status":"ok"}))
        );
        assert_eq!(reply_to(&json!({"type":"start_stream"})), None);
        assert_eq!(reply_to(&json!({"keep":"alive"})), None);
        let api =
            reply_to(&json!({"type":"api","request_id":"q","method":"GET","path":"/x"})).unwrap();
        assert_eq!(
            (api["type"].as_str(), api["status"].as_i64()),
            (Some("api_response"), Some(404))
        );
    }
}
