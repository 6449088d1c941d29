//! The live-runner flow against a small orchestrator written from the spec (§1.6-§1.11,
//! §5.7): discovery answers (hostile ones too), the 402 challenge, signer 480 on a
//! reservation and mid-session, a runner whose session disappears, failed stops, an app call
//! failing after payment, and a challenge priced above the ceiling.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use common::{Signer, lock, signer, within};
use lpgw_gateway::proto::{OrchestratorInfo, PaymentResult, PriceInfo, TicketParams};
use lpgw_gateway::{
    Ceiling, Error, Fallback, FundingEnd, Gateway, RejectReason, RunnerFilter, RunnerSession,
    Settings, StartRequest,
};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const APP: &str = "live-video-to-video/scope";

#[derive(Default)]
struct Live {
    base: Mutex<String>,
    discovery: Mutex<Value>,
    /// Price in the challenge (wei per second).
    challenge_price: Mutex<i64>,
    challenges: AtomicU32,
    reservations: AtomicU32,
    payments: AtomicU32,
    refreshes: AtomicU32,
    stops: AtomicU32,
    /// Stops answered 500 before one succeeds.
    stop_failures: AtomicU32,
    /// Sessions the orchestrator no longer knows (released, runner expired).
    gone: Mutex<HashSet<String>>,
    full: Mutex<bool>,
    /// Status of the app's `POST /scope` (200 answers a job).
    app_status: Mutex<u16>,
}

fn info(l: &Live) -> OrchestratorInfo {
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

fn plain(status: u16, msg: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), format!("{msg}\n")).into_response()
}

async fn discovery(State(l): State<Arc<Live>>) -> Response {
    axum::Json(lock(&l.discovery).clone()).into_response()
}

async fn reserve(
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
        return (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(
                json!({"payment_params": params, "orchestrator": base, "manifest_id": mid,
                "payment_url": format!("{base}/apps/{rid}/session/{mid}/payment")}),
            ),
        )
            .into_response();
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

async fn payment(
    State(l): State<Arc<Live>>,
    Path((_rid, sid)): Path<(String, String)>,
) -> Response {
    if lock(&l.gone).contains(&sid) {
        return plain(404, "runner session not found");
    }
    l.payments.fetch_add(1, Ordering::SeqCst);
    PaymentResult {
        info: Some(info(&l)),
    }
    .encode_to_vec()
    .into_response()
}

async fn stop(State(l): State<Arc<Live>>, Path((_rid, sid)): Path<(String, String)>) -> Response {
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

async fn refresh(State(l): State<Arc<Live>>, body: axum::body::Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let base = lock(&l.base).clone();
    l.refreshes.fetch_add(1, Ordering::SeqCst);
    let params = base64::engine::general_purpose::STANDARD.encode(info(&l).encode_to_vec());
    axum::Json(json!({"payment_params": params, "orchestrator": base,
        "manifest_id": v["manifest_id"], "payment_url": format!("{base}/payment")}))
    .into_response()
}

/// A single-shot app: paid like a reservation, then streams three SSE events slowly.
async fn single_shot(
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

async fn app_scope(State(l): State<Arc<Live>>) -> Response {
    let status = *lock(&l.app_status);
    if status == 200 {
        return axum::Json(json!({"manifest_id": "m"})).into_response();
    }
    plain(status, "runner already has an active session")
}

struct Fixture {
    url: String,
    state: Arc<Live>,
}

async fn live_orch() -> Fixture {
    let state = Arc::new(Live {
        challenge_price: Mutex::new(10),
        app_status: Mutex::new(409),
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

fn runner(base: &str, rid: &str, price: i64) -> Value {
    json!({"url": format!("{base}/apps/{rid}/session"), "app": APP, "mode": "persistent",
        "capacity": 1, "capacity_used": 0, "capacity_available": 1,
        "price_info": {"price": price, "currency": "wei", "unit": "seconds"}})
}

fn settings(f: &Fixture, signer_url: Option<&str>) -> Settings {
    let mut s = Settings {
        orchestrators: vec![f.url.clone()],
        signer_url: signer_url.map(str::to_owned),
        ..Settings::default()
    };
    s.live.fallback = Fallback::none();
    s.live.payment_interval = Duration::from_millis(100);
    s
}

async fn offer(gw: &Gateway) -> lpgw_gateway::RunnerOffer {
    let found = within(10, gw.discover_runners(&RunnerFilter::app(APP)))
        .await
        .unwrap();
    found.offers[0].clone()
}

/// A signer and a gateway paying through it to `f`.
async fn paid_gateway(f: &Fixture) -> (Signer, Gateway) {
    let s = signer().await;
    let gw = Gateway::new(settings(f, Some(&s.url))).unwrap();
    (s, gw)
}

/// Reserves a session on the first runner `gw` discovers.
async fn reserve_first(gw: &Gateway) -> Result<RunnerSession, Error> {
    within(10, gw.reserve_session(&offer(gw).await)).await
}

#[tokio::test]
async fn reservation_pays_the_challenge_with_typed_capped_max_price() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    assert_eq!(session.session_id(), "00000000");
    assert!(session.control_url().ends_with("/apps/r1/session/00000000"));
    let req = lock(&s.state.requests)[0].clone();
    assert_eq!(req["type"], "live");
    assert_eq!(req["ManifestID"], "00000000");
    assert_eq!(req["app"], APP);
    // 10 wei padded by 1.2 % and rounded up.
    assert_eq!(
        req["maxPrice"],
        json!({"price": 11, "currency": "wei", "unit": "seconds"})
    );
    assert!(req.get("state").is_none());
    // The payment loop keeps paying, sending the signer's state back.
    let t0 = std::time::Instant::now();
    while f.state.payments.load(Ordering::SeqCst) < 2 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lock(&s.state.requests)[1]["state"].is_object());
    within(10, session.close()).await;
    assert_eq!(f.state.stops.load(Ordering::SeqCst), 1);
    // No payment after the stop.
    let paid = f.state.payments.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.state.payments.load(Ordering::SeqCst), paid);
}

#[tokio::test]
async fn signer_480_on_reservation_takes_a_fresh_challenge() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    lock(&s.state.script).push_back(480);
    let session = reserve_first(&gw).await.unwrap();
    assert_eq!(f.state.challenges.load(Ordering::SeqCst), 2);
    assert_eq!(f.state.reservations.load(Ordering::SeqCst), 1);
    assert_eq!(session.session_id(), "00000001");
    within(10, session.close()).await;
}

#[tokio::test]
async fn signer_480_mid_session_refreshes_payment_params() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    lock(&s.state.script).push_back(480);
    let t0 = std::time::Instant::now();
    while session.payment_stats().refreshes < 1 || session.payment_stats().paid < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{:?}",
            session.payment_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.state.refreshes.load(Ordering::SeqCst), 1);
    assert!(session.funding_end().is_none());
    within(10, session.close()).await;
}

#[tokio::test]
async fn a_session_that_disappears_is_noticed_as_released() {
    let f = live_orch().await;
    let (_s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    // The runner expired: the orchestrator forgot the session.
    lock(&f.state.gone).insert(session.session_id().to_owned());
    within(5, session.ended()).await;
    assert_eq!(session.funding_end(), Some(FundingEnd::Released));
    within(10, session.close()).await;
}

#[tokio::test]
async fn a_failed_stop_is_retried() {
    let f = live_orch().await;
    f.state.stop_failures.store(2, Ordering::SeqCst);
    // Without a signer a challenge cannot be answered.
    let gw = Gateway::new(settings(&f, None)).unwrap();
    let err = reserve_first(&gw).await.unwrap_err();
    assert_eq!(err.rejections()[0].reason, RejectReason::PaymentRequired);
    let (_s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    within(10, session.close()).await;
    assert_eq!(f.state.stops.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn paid_app_failure_stops_at_once_and_is_never_paid_again() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    let req = StartRequest::new("scope");
    // Run the start on another task: the future must be Send (HTTP handlers need it).
    let g = gw.clone();
    let r = req.clone();
    let err = within(10, tokio::spawn(async move { g.start(&r).await }))
        .await
        .unwrap()
        .unwrap_err();
    let Error::StartFailed { rejections, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(&rejections[0].reason, RejectReason::AppCallFailed { status: 409, body } if body.contains("active session")),
        "{err}"
    );
    assert_eq!(lock(&s.state.requests).len(), 1, "paid once");
    assert_eq!(f.state.stops.load(Ordering::SeqCst), 1, "stopped at once");
    for _ in 0..3 {
        let err = within(10, gw.start(&req)).await.unwrap_err();
        assert!(
            matches!(err.rejections()[0].reason, RejectReason::CoolingDown(_)),
            "{err}"
        );
    }
    assert_eq!(lock(&s.state.requests).len(), 1, "never paid again");
    assert_eq!(f.state.reservations.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_challenge_above_the_ceiling_is_never_paid() {
    let f = live_orch().await;
    // Discovery says 10 wei/s, the challenge asks 1000.
    *lock(&f.state.challenge_price) = 1000;
    let s = signer().await;
    let mut set = settings(&f, Some(&s.url));
    set.ceiling = Ceiling {
        wei_per_second: Some(100),
        ..Ceiling::default()
    };
    let gw = Gateway::new(set).unwrap();
    let err = reserve_first(&gw).await.unwrap_err();
    assert!(
        matches!(&err.rejections()[0].reason, RejectReason::OverRunnerCeiling(t) if t.contains("1000 wei/seconds") && t.contains("100 wei/seconds")),
        "{err}"
    );
    assert!(lock(&s.state.requests).is_empty());
}

#[tokio::test]
async fn a_paid_reservation_refused_is_not_paid_again() {
    let f = live_orch().await;
    *lock(&f.state.full) = true;
    let (s, gw) = paid_gateway(&f).await;
    let offer = offer(&gw).await;
    // The orchestrator took the payment headers and answered 503.
    let err = within(10, gw.reserve_session(&offer)).await.unwrap_err();
    assert_eq!(err.rejections()[0].reason, RejectReason::RunnerFull);
    assert_eq!(lock(&s.state.requests).len(), 1);
    // A start skips the runner on cool-down instead of paying it again.
    *lock(&f.state.full) = false;
    let err = within(10, gw.start(&StartRequest::new("scope")))
        .await
        .unwrap_err();
    assert!(
        matches!(err.rejections()[0].reason, RejectReason::CoolingDown(_)),
        "{err}"
    );
    assert_eq!(lock(&s.state.requests).len(), 1);
}

#[tokio::test]
async fn a_full_runner_is_a_rejection() {
    let f = live_orch().await;
    *lock(&f.state.full) = true;
    let (_s, gw) = paid_gateway(&f).await;
    let err = reserve_first(&gw).await.unwrap_err();
    assert_eq!(err.rejections()[0].reason, RejectReason::RunnerFull);
}

#[tokio::test]
async fn hostile_discovery_is_survived() {
    let f = live_orch().await;
    let good = runner(&f.url, "ok", 5);
    let mut runners = vec![
        json!({"url": "x", "app": APP}),
        json!({"url": format!("{}/apps/neg/session", f.url), "app": APP,
            "price_info": {"price": -5, "currency": "wei", "unit": "seconds"}}),
        json!({"app": APP}),
        json!([1, 2, 3]),
        good,
    ];
    // A huge array of junk after the good entry.
    runners.extend(std::iter::repeat_n(
        json!({"url": "http://o/apps/j/session", "app": "other"}),
        20_000,
    ));
    *lock(&f.state.discovery) =
        json!([{"address": f.url, "runners": runners}, 7, {"runners": "no"}]);
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut s = settings(&f, None);
    s.orchestrators.push(dead_url.clone());
    let gw = Gateway::new(s).unwrap();
    let found = within(10, gw.discover_runners(&RunnerFilter::app(APP)))
        .await
        .unwrap();
    assert_eq!(found.offers.len(), 1);
    assert!(found.offers[0].url.ends_with("/apps/ok/session"));
    let reasons: Vec<String> = found.rejections.iter().map(|r| r.to_string()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("negative price")),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("runners ignored (limit 256)")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with(&dead_url)),
        "{reasons:#?}"
    );
    // Garbage instead of a list is a rejection of that orchestrator, not a crash.
    *lock(&f.state.discovery) = json!({"not": "a list"});
    let found = within(10, gw.discover_runners(&RunnerFilter::app(APP)))
        .await
        .unwrap();
    assert!(found.offers.is_empty());
    assert!(found.rejections.iter().any(|r| r.url == f.url));
}

#[tokio::test]
async fn challenge_retries_are_bounded_and_481_is_final() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    lock(&s.state.script).extend([480; 50]);
    let offer = offer(&gw).await;
    let err = within(10, gw.reserve_session(&offer)).await.unwrap_err();
    // The first challenge and three fresh ones, then give up.
    assert_eq!(
        err.rejections()[0].reason,
        RejectReason::ChallengeRetries(4)
    );
    assert_eq!(f.state.challenges.load(Ordering::SeqCst), 4);
    assert_eq!(lock(&s.state.requests).len(), 4);
    assert_eq!(f.state.reservations.load(Ordering::SeqCst), 0);

    lock(&s.state.script).clear();
    lock(&s.state.script).push_back(481);
    let err = within(10, gw.reserve_session(&offer)).await.unwrap_err();
    assert!(
        matches!(
            err.rejections()[0].reason,
            RejectReason::SignerPriceExceeded(_)
        ),
        "{err}"
    );
    assert_eq!(f.state.reservations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn single_shot_call_streams_and_is_funded_while_it_runs() {
    let f = live_orch().await;
    let s = signer().await;
    let mut shot = runner(&f.url, "r2", 10);
    shot["url"] = json!(format!("{}/apps/r2/app", f.url));
    shot["mode"] = json!("single-shot");
    *lock(&f.state.discovery) = json!([{"address": f.url, "runners": [shot]}]);
    let gw = Gateway::new(settings(&f, Some(&s.url))).unwrap();
    let offer = offer(&gw).await;
    assert_eq!(offer.mode, lpgw_gateway::RunnerMode::SingleShot);
    let mut reply = within(
        10,
        gw.call_runner(
            &offer,
            &lpgw_gateway::RunnerRequest::json("v1/generate", &json!({"prompt": "x"})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.content_type(), "text/event-stream");
    assert!(!reply.is_json());
    let mut got = Vec::new();
    while let Some(c) = within(5, reply.chunk()).await.unwrap() {
        got.extend_from_slice(&c);
    }
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    );
    // The 450 ms stream outlived the 100 ms payment interval: the loop paid meanwhile.
    assert!(
        reply.payment_stats().unwrap().paid >= 2,
        "{:?}",
        reply.payment_stats()
    );
    drop(reply);
    // A payment in flight at the drop may still land; none may start afterwards.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let paid = f.state.payments.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        f.state.payments.load(Ordering::SeqCst),
        paid,
        "no payment after the reply"
    );
}
