//! A small live-runner orchestrator written from the spec (§1.6-§1.11, §5.7), with knobs
//! for what real orchestrators do now (§10): JSON payment answers, challenges without
//! `payment_url` or with `payment_interval_ms`, and payment statuses.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use lpgw_gateway::proto::{OrchestratorInfo, PaymentResult, PriceInfo, TicketParams};
use lpgw_gateway::{Error, Fallback, Gateway, RunnerFilter, RunnerSession, Settings};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{Signer, lock, signer, within};

/// The app every runner of the fixture serves.
pub const APP: &str = "live-video-to-video/scope";

/// The orchestrator's state and knobs.
#[derive(Default)]
pub struct Live {
    pub base: Mutex<String>,
    pub discovery: Mutex<Value>,
    /// Price in the challenge (wei per second).
    pub challenge_price: Mutex<i64>,
    pub challenges: AtomicU32,
    pub reservations: AtomicU32,
    pub payments: AtomicU32,
    pub refreshes: AtomicU32,
    pub stops: AtomicU32,
    /// Stops answered 500 before one succeeds.
    pub stop_failures: AtomicU32,
    /// Sessions the orchestrator no longer knows (released, runner expired).
    pub gone: Mutex<HashSet<String>>,
    pub full: Mutex<bool>,
    /// Status of the app's `POST /scope` (200 answers a job).
    pub app_status: Mutex<u16>,
    /// Session payments answered in JSON (go-livepeer PR #4029) instead of protobuf.
    pub payment_json: AtomicBool,
    /// Challenges without `payment_url` (v0.9.0 orchestrators).
    pub no_payment_url: AtomicBool,
    /// `payment_interval_ms` in challenges.
    pub payment_interval_ms: Mutex<Option<u64>>,
    /// Status of session payments (200: accepted).
    pub payment_status: Mutex<u16>,
    /// When each accepted session payment arrived.
    pub payment_times: Mutex<Vec<Instant>>,
}

pub fn info(l: &Live) -> OrchestratorInfo {
    OrchestratorInfo {
        transcoder: lock(&l.base).clone(),
        price_info: Some(PriceInfo {
            price_per_unit: *lock(&l.challenge_price),
            pixels_per_unit: 1,
            ..PriceInfo::default()
        }),
        ticket_params: Some(TicketParams {
            recipient: vec![0xaa; 20],
            face_value: vec![1],
            win_prob: vec![1],
            ..TicketParams::default()
        }),
        ..OrchestratorInfo::default()
    }
}

pub fn plain(status: u16, msg: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), format!("{msg}\n")).into_response()
}

pub async fn discovery(State(l): State<Arc<Live>>) -> Response {
    axum::Json(lock(&l.discovery).clone()).into_response()
}

pub async fn reserve(
    State(l): State<Arc<Live>>,
    Path(rid): Path<String>,
    headers: HeaderMap,
) -> Response {
    let base = lock(&l.base).clone();
    let paid = headers
        .get("Livepeer-Payment")
        .is_some_and(|v| !v.is_empty());
    if !paid {
        if headers
            .get("Livepeer-Payer-Address")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|a| a.len() != 42 || !a.starts_with("0x"))
        {
            return (
                StatusCode::PAYMENT_REQUIRED,
                axum::Json(
                    json!({"error":{"message":"invalid live runner payment signer address"}}),
                ),
            )
                .into_response();
        }
        let n = l.challenges.fetch_add(1, Ordering::SeqCst);
        let mid = format!("{n:08x}");
        let params = base64::engine::general_purpose::STANDARD.encode(info(&l).encode_to_vec());
        let mut challenge = json!({"payment_params": params, "orchestrator": base,
            "manifest_id": mid, "payment_url": format!("{base}/apps/{rid}/session/{mid}/payment")});
        if l.no_payment_url.load(Ordering::SeqCst) {
            challenge.as_object_mut().unwrap().remove("payment_url");
        }
        if let Some(ms) = *lock(&l.payment_interval_ms) {
            challenge["payment_interval_ms"] = ms.into();
        }
        return (StatusCode::PAYMENT_REQUIRED, axum::Json(challenge)).into_response();
    }
    if *lock(&l.full) {
        return plain(503, "no capacity available for runner");
    }
    let seg = headers
        .get("Livepeer-Segment")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| lpgw_gateway::proto::decode_seg_data(s).ok());
    let Some(seg) = seg else {
        return plain(403, "ErrorSegEncoding");
    };
    let sid = String::from_utf8_lossy(&seg.manifest_id).into_owned();
    l.reservations.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"session_id": sid,
        "app_url": format!("{base}/apps/{rid}/session/{sid}/app"),
        "control_url": format!("{base}/apps/{rid}/session/{sid}")}))
    .into_response()
}

pub async fn payment(
    State(l): State<Arc<Live>>,
    Path((_rid, sid)): Path<(String, String)>,
) -> Response {
    if lock(&l.gone).contains(&sid) {
        return plain(404, "runner session not found");
    }
    let status = *lock(&l.payment_status);
    if status != 200 {
        return plain(status, "fixed price session");
    }
    l.payments.fetch_add(1, Ordering::SeqCst);
    lock(&l.payment_times).push(Instant::now());
    if l.payment_json.load(Ordering::SeqCst) {
        let base = lock(&l.base).clone();
        let params = base64::engine::general_purpose::STANDARD.encode(info(&l).encode_to_vec());
        return axum::Json(json!({"payment_params": params, "orchestrator": base,
            "manifest_id": sid, "payment_url": format!("{base}/apps/r1/session/{sid}/payment")}))
        .into_response();
    }
    PaymentResult {
        info: Some(info(&l)),
    }
    .encode_to_vec()
    .into_response()
}

pub async fn stop(
    State(l): State<Arc<Live>>,
    Path((_rid, sid)): Path<(String, String)>,
) -> Response {
    l.stops.fetch_add(1, Ordering::SeqCst);
    if l.stop_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return plain(500, "Internal Server Error");
    }
    lock(&l.gone).insert(sid);
    StatusCode::NO_CONTENT.into_response()
}

pub async fn refresh(State(l): State<Arc<Live>>, body: axum::body::Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let base = lock(&l.base).clone();
    l.refreshes.fetch_add(1, Ordering::SeqCst);
    let params = base64::engine::general_purpose::STANDARD.encode(info(&l).encode_to_vec());
    axum::Json(json!({"payment_params": params, "orchestrator": base,
        "manifest_id": v["manifest_id"], "payment_url": format!("{base}/payment")}))
    .into_response()
}

/// A single-shot app: paid like a reservation, then streams three SSE events slowly.
pub async fn single_shot(
    State(l): State<Arc<Live>>,
    Path((rid, _path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if headers.get("Livepeer-Payment").is_none_or(|v| v.is_empty()) {
        return reserve(State(l), Path(rid), headers).await;
    }
    let chunks = futures::stream::unfold(0u32, |i| async move {
        if i == 3 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        Some((
            Ok::<_, std::io::Error>(axum::body::Bytes::from(format!("data: {i}\n\n"))),
            i + 1,
        ))
    });
    (
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

pub async fn app_scope(State(l): State<Arc<Live>>) -> Response {
    let status = *lock(&l.app_status);
    if status == 200 {
        return axum::Json(json!({"manifest_id": "m"})).into_response();
    }
    plain(status, "runner already has an active session")
}

pub struct Fixture {
    pub url: String,
    pub state: Arc<Live>,
}

pub async fn live_orch() -> Fixture {
    let state = Arc::new(Live {
        challenge_price: Mutex::new(10),
        app_status: Mutex::new(409),
        payment_status: Mutex::new(200),
        ..Live::default()
    });
    let app = Router::new()
        .route("/discovery", get(discovery))
        .route("/apps/{rid}/session", post(reserve))
        .route("/apps/{rid}/session/{sid}/payment", post(payment))
        .route("/apps/{rid}/session/{sid}/stop", post(stop))
        .route("/apps/{rid}/session/{sid}/app/scope", post(app_scope))
        .route("/refresh-payment", post(refresh))
        .route("/apps/{rid}/app/{*path}", post(single_shot))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    *lock(&state.base) = url.clone();
    *lock(&state.discovery) = json!([{"address": url, "runners": [runner(&url, "r1", 10)]}]);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture { url, state }
}

pub fn runner(base: &str, rid: &str, price: i64) -> Value {
    json!({"url": format!("{base}/apps/{rid}/session"), "app": APP, "mode": "persistent",
        "capacity": 1, "capacity_used": 0, "capacity_available": 1,
        "price_info": {"price": price, "currency": "wei", "unit": "seconds"}})
}

pub fn settings(f: &Fixture, signer_url: Option<&str>) -> Settings {
    let mut s = Settings {
        orchestrators: vec![f.url.clone()],
        signer_url: signer_url.map(str::to_owned),
        ..Settings::default()
    };
    s.live.fallback = Fallback::none();
    s.live.payment_interval = Duration::from_millis(100);
    s
}

pub async fn offer(gw: &Gateway) -> lpgw_gateway::RunnerOffer {
    let found = within(10, gw.discover_runners(&RunnerFilter::app(APP)))
        .await
        .unwrap();
    found.offers[0].clone()
}

/// A signer and a gateway paying through it to `f`.
pub async fn paid_gateway(f: &Fixture) -> (Signer, Gateway) {
    let s = signer().await;
    let gw = Gateway::new(settings(f, Some(&s.url))).unwrap();
    (s, gw)
}

/// Reserves a session on the first runner `gw` discovers.
pub async fn reserve_first(gw: &Gateway) -> Result<RunnerSession, Error> {
    within(10, gw.reserve_session(&offer(gw).await)).await
}
