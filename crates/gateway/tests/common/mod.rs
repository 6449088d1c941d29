//! Test fixtures: a small orchestrator (hand-written gRPC `GetOrchestrator`, LV2V start,
//! `/payment`, trickle channels) and a remote signer, each on 127.0.0.1:0.
//!
//! The gRPC answer is framed by hand rather than with tonic's server, so the client is
//! checked against the wire format, not against the library it is built on.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use http_body_util::StreamBody;
use lpgw_gateway::proto::{
    self, AuthToken, OrchestratorInfo, OrchestratorRequest, Payment, PaymentResult, PriceInfo,
    SegData, TicketParams,
};
use lpgw_trickle::server::{ServerConfig, TrickleServer};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub mod live;

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Orchestrator behaviour knobs.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Delay before answering GetOrchestrator.
    pub grpc_delay: Duration,
    /// Answer GetOrchestrator with bytes that are not an OrchestratorInfo.
    pub grpc_garbage: bool,
    /// Answer GetOrchestrator with this gRPC error message (status 2).
    pub grpc_error: Option<String>,
    /// 0 means `503 insufficient capacity` on start.
    pub capacity: u32,
    /// Delay before answering the LV2V start.
    pub start_delay: Duration,
    /// `(price_per_unit, pixels_per_unit)`; `None` is offchain.
    pub price: Option<(i64, i64)>,
    /// Auth token lifetime in seconds; zero or negative gives an expired token.
    pub token_ttl: i64,
    /// Status of `POST /payment`.
    pub payment_status: u16,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            grpc_delay: Duration::ZERO,
            grpc_garbage: false,
            grpc_error: None,
            capacity: 4,
            start_delay: Duration::ZERO,
            price: None,
            token_ttl: 1800,
            payment_status: 200,
        }
    }
}

#[derive(Debug, Default)]
pub struct OrchState {
    pub knobs: Mutex<Knobs>,
    pub base: Mutex<String>,
    pub trickle: Mutex<Option<TrickleServer>>,
    pub tokens: Mutex<HashSet<Vec<u8>>>,
    pub info_calls: AtomicU32,
    /// GetOrchestrator calls with `ignoreCapacityCheck` (refreshes).
    pub refresh_calls: AtomicU32,
    pub requests: Mutex<Vec<OrchestratorRequest>>,
    /// `(Livepeer-Payment, Livepeer-Segment)` of each LV2V start that reached payment checks.
    pub starts: Mutex<Vec<(String, String)>>,
    /// `(Livepeer-Payment, Livepeer-Segment)` of each `/payment`.
    pub payments: Mutex<Vec<(String, String)>>,
    pub manifests: Mutex<Vec<String>>,
    counter: AtomicU32,
}

impl OrchState {
    pub fn trickle(&self) -> TrickleServer {
        lock(&self.trickle).clone().expect("trickle server")
    }

    fn info(&self, req: &OrchestratorRequest) -> OrchestratorInfo {
        let knobs = lock(&self.knobs).clone();
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let token = format!("token-{n}-{}", lock(&self.base)).into_bytes();
        lock(&self.tokens).insert(token.clone());
        OrchestratorInfo {
            transcoder: lock(&self.base).clone(),
            address: vec![0xaa; 20],
            price_info: knobs.price.map(|(p, px)| PriceInfo {
                price_per_unit: p,
                pixels_per_unit: px,
                ..PriceInfo::default()
            }),
            ticket_params: knobs.price.map(|_| TicketParams {
                recipient: vec![0xaa; 20],
                face_value: vec![1],
                win_prob: vec![1],
                ..TicketParams::default()
            }),
            capabilities: req.capabilities.clone(),
            auth_token: Some(AuthToken {
                token,
                session_id: format!("{n:08x}"),
                expiration: unix_now() + knobs.token_ttl,
            }),
            ..OrchestratorInfo::default()
        }
    }
}

pub struct Orch {
    pub url: String,
    pub addr: SocketAddr,
    pub state: Arc<OrchState>,
    /// Stops accepting connections (a crash, for restart tests).
    pub accept: tokio::task::AbortHandle,
}

fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(msg.len() + 5);
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out.into()
}

fn grpc_response(body: Bytes) -> Response {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = futures::stream::iter(vec![
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(body)),
        Ok(http_body::Frame::trailers(trailers)),
    ]);
    Response::builder()
        .header("content-type", "application/grpc")
        .body(Body::new(StreamBody::new(frames)))
        .unwrap()
}

async fn get_orchestrator(State(s): State<Arc<OrchState>>, body: Bytes) -> Response {
    let knobs = lock(&s.knobs).clone();
    tokio::time::sleep(knobs.grpc_delay).await;
    s.info_calls.fetch_add(1, Ordering::SeqCst);
    let Some(Ok(req)) = body.get(5..).map(OrchestratorRequest::decode) else {
        return (StatusCode::BAD_REQUEST, "bad grpc request").into_response();
    };
    if req.ignore_capacity_check {
        s.refresh_calls.fetch_add(1, Ordering::SeqCst);
    }
    lock(&s.requests).push(req.clone());
    if let Some(msg) = knobs.grpc_error {
        return Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "2")
            .header("grpc-message", msg)
            .body(Body::empty())
            .unwrap();
    }
    if knobs.grpc_garbage {
        // A well-framed message whose bytes are not an OrchestratorInfo.
        return grpc_response(grpc_frame(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x42]));
    }
    grpc_response(grpc_frame(&s.info(&req).encode_to_vec()))
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn plain(status: u16, msg: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), format!("{msg}\n")).into_response()
}

/// Checks segment credentials the way go-livepeer does for LV2V (spec §5.4): an auth token
/// this orchestrator minted, not expired.
fn check_creds(s: &OrchState, seg: &str) -> Result<(), (u16, &'static str)> {
    let seg = proto::decode_seg_data(seg).map_err(|_| (403, "invalid segment data"))?;
    let Some(t) = seg.auth_token else {
        return Err((403, "missing auth token"));
    };
    if !lock(&s.tokens).contains(&t.token) {
        return Err((403, "invalid auth token"));
    }
    if t.expiration <= unix_now() {
        return Err((403, "auth token expired"));
    }
    Ok(())
}

async fn start(State(s): State<Arc<OrchState>>, headers: HeaderMap, body: Bytes) -> Response {
    let knobs = lock(&s.knobs).clone();
    tokio::time::sleep(knobs.start_delay).await;
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return plain(400, "bad json");
    };
    if knobs.capacity == 0 {
        return plain(503, "insufficient capacity");
    }
    let payment = header(&headers, "Livepeer-Payment");
    let seg = header(&headers, "Livepeer-Segment");
    lock(&s.starts).push((payment.clone(), seg.clone()));
    if !payment.is_empty() && proto::decode_payment(&payment).is_err() {
        return plain(402, "invalid payment");
    }
    if let Err((status, msg)) = check_creds(&s, &seg) {
        return plain(status, msg);
    }
    assert!(req.get("model_id").is_some());
    let mid = format!("{:08x}", s.counter.fetch_add(1, Ordering::SeqCst) + 0x1000);
    let trickle = s.trickle();
    trickle.create_channel(&mid, "video/MP2T");
    trickle.create_channel(&format!("{mid}-out"), "video/MP2T");
    trickle.create_channel(&format!("{mid}-control"), "application/json");
    trickle.create_channel(&format!("{mid}-events"), "application/json");
    lock(&s.manifests).push(mid.clone());
    let base = lock(&s.base).clone();
    axum::Json(json!({
        "publish_url": format!("{base}/ai/trickle/{mid}"),
        "subscribe_url": format!("{base}/ai/trickle/{mid}-out"),
        "control_url": format!("{base}/ai/trickle/{mid}-control"),
        "events_url": format!("{base}/ai/trickle/{mid}-events"),
        "manifest_id": mid,
    }))
    .into_response()
}

async fn payment(State(s): State<Arc<OrchState>>, headers: HeaderMap) -> Response {
    let status = lock(&s.knobs).payment_status;
    let payment = header(&headers, "Livepeer-Payment");
    let seg = header(&headers, "Livepeer-Segment");
    lock(&s.payments).push((payment, seg.clone()));
    if status != 200 {
        return plain(status, "payment refused");
    }
    if let Err((status, msg)) = check_creds(&s, &seg) {
        return plain(status, msg);
    }
    let info = s.info(&OrchestratorRequest::default());
    PaymentResult { info: Some(info) }
        .encode_to_vec()
        .into_response()
}

fn orch_router(state: Arc<OrchState>, trickle: &TrickleServer) -> Router {
    Router::new()
        .route("/net.Orchestrator/GetOrchestrator", post(get_orchestrator))
        .route("/live-video-to-video", post(start))
        .route("/payment", post(payment))
        .with_state(state)
        .nest("/ai/trickle", trickle.router())
}

/// Starts a plain-HTTP orchestrator (h2c for gRPC, HTTP/1.1 for the rest).
pub async fn orch(knobs: Knobs) -> Orch {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(OrchState::default());
    *lock(&state.knobs) = knobs;
    *lock(&state.base) = format!("http://{addr}");
    let trickle = TrickleServer::new(ServerConfig::default());
    *lock(&state.trickle) = Some(trickle.clone());
    let app = orch_router(state.clone(), &trickle);
    // Small gRPC frames would otherwise wait on Nagle plus delayed ACKs (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let accept = tokio::spawn(async move { axum::serve(listener, app).await }).abort_handle();
    Orch {
        url: format!("http://{addr}"),
        addr,
        state,
        accept,
    }
}

/// A self-signed certificate for 127.0.0.1, as orchestrators generate at start.
pub fn self_signed() -> (Vec<u8>, Vec<u8>) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    (cert.cert.der().to_vec(), cert.key_pair.serialize_der())
}

/// Starts a TLS orchestrator on `listener` with the given certificate.
pub async fn orch_tls(listener: TcpListener, knobs: Knobs, cert: (Vec<u8>, Vec<u8>)) -> Orch {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(OrchState::default());
    *lock(&state.knobs) = knobs;
    *lock(&state.base) = format!("https://{addr}");
    let trickle = TrickleServer::new(ServerConfig::default());
    *lock(&state.trickle) = Some(trickle.clone());
    let app = orch_router(state.clone(), &trickle);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.0)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.1)),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let accept = tokio::spawn(async move {
        // Connections live in this task's set: aborting it (a "restart") drops them all,
        // as a real orchestrator process exiting would.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            while connections.try_join_next().is_some() {}
            connections.spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    })
    .abort_handle();
    Orch {
        url: format!("https://{addr}"),
        addr,
        state,
        accept,
    }
}

/// A URL where nothing listens.
pub async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

#[derive(Debug, Default)]
pub struct SignerState {
    /// Statuses for the next generate-live-payment calls; empty means 200.
    pub script: Mutex<VecDeque<u16>>,
    pub requests: Mutex<Vec<Value>>,
    pub sign_calls: AtomicU32,
    pub discover_list: Mutex<Vec<String>>,
    pub discover_queries: Mutex<Vec<String>>,
    counter: AtomicU32,
}

pub struct Signer {
    pub url: String,
    pub state: Arc<SignerState>,
}

fn signer_error(status: u16, msg: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        format!("{}\n", json!({"error": {"message": msg}})),
    )
        .into_response()
}

async fn sign_info(State(s): State<Arc<SignerState>>) -> Response {
    s.sign_calls.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "address": format!("0x{}", "11".repeat(20)),
        "signature": format!("0x{}", "22".repeat(65)),
    }))
    .into_response()
}

async fn generate(State(s): State<Arc<SignerState>>, body: Bytes) -> Response {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return signer_error(400, "bad json");
    };
    lock(&s.requests).push(req.clone());
    let status = lock(&s.script).pop_front().unwrap_or(200);
    let Some(info) = req["orchestrator"]
        .as_str()
        .and_then(|o| b64.decode(o).ok())
        .and_then(|b| OrchestratorInfo::decode(b.as_slice()).ok())
    else {
        return signer_error(400, "missing orchestrator");
    };
    match status {
        200 => {}
        480 => {
            let mut r = signer_error(480, "refresh session");
            r.headers_mut().insert(
                "Livepeer-Orchestrator-URL",
                info.transcoder.parse().unwrap(),
            );
            return r;
        }
        481 => return signer_error(481, "price exceeded"),
        482 => return signer_error(482, "no tickets"),
        other => return signer_error(other, "Internal Server Error"),
    }
    let n = s.counter.fetch_add(1, Ordering::SeqCst);
    let payment = Payment {
        sender: vec![0x11; 20],
        expected_price: info.price_info,
        ticket_params: info.ticket_params.clone(),
        ..Payment::default()
    };
    let seg = SegData {
        manifest_id: req["ManifestID"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
        auth_token: info.auth_token.clone(),
        ..SegData::default()
    };
    axum::Json(json!({
        "payment": proto::encode_payment(&payment),
        "segCreds": proto::encode_seg_data(&seg),
        "state": {"State": b64.encode(format!("state-{n}")), "Sig": b64.encode("sig")},
    }))
    .into_response()
}

async fn discover(
    State(s): State<Arc<SignerState>>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    lock(&s.discover_queries).push(q.unwrap_or_default());
    let list: Vec<Value> = lock(&s.discover_list)
        .iter()
        .map(|a| json!({"address": a, "score": 1}))
        .collect();
    axum::Json(list).into_response()
}

pub async fn signer() -> Signer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(SignerState::default());
    let app = Router::new()
        .route("/sign-orchestrator-info", post(sign_info))
        .route("/generate-live-payment", post(generate))
        .route("/discover-orchestrators", axum::routing::get(discover))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Signer {
        url: format!("http://{addr}"),
        state,
    }
}

/// Bounds a test step so a bug fails instead of hanging.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

/// Starts an LV2V job for the `noop` model, bounded at 10 s.
pub async fn start_noop(
    gw: &lpgw_gateway::Gateway,
) -> Result<lpgw_gateway::Lv2vJob, lpgw_gateway::Error> {
    within(10, gw.start_lv2v(&lpgw_gateway::StartRequest::new("noop"))).await
}
