//! The remote-signer emulator: go-livepeer's signer HTTP API (server/remote_signer.go).
//!
//! - `POST /sign-orchestrator-info` → `{address, signature}`;
//! - `POST /generate-live-payment` → `{payment, segCreds, state}` with the billing rules per
//!   payment type, and the 480/481/482 answers;
//! - `GET /discover-orchestrators[?caps=..]` → the devnet orchestrator(s).

mod billing;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use lpgw_proto::caps::LIVE_VIDEO_TO_VIDEO_NAME;
use lpgw_proto::{Capabilities, OrchestratorInfo, SegData};
use prost::Message as _;
use rand::RngCore as _;
use serde_json::{Map, Value, json};

use crate::config::FaultControl;
use crate::keys::{Address, Keys, checksum_address, ct_eq, hex, hmac, keccak};
use crate::ledger::Price;
use crate::respond::{json_encoded, json_error};
use crate::tickets::{make_payment, params_expiry, seg_preimage, ticket_ev};
use billing::{
    JobType, MAX_TICKETS, PaymentState, billable_units, decimal_price, price_above, tickets_needed,
};

/// Header naming the orchestrator to refresh on a 480.
const ORCHESTRATOR_URL_HEADER: &str = "Livepeer-Orchestrator-URL";

/// Auth-token lifetime the signer assumes when deciding "last 10 %" (30 minutes).
const AUTH_TTL_SECS: i64 = 30 * 60;

/// Signer state and settings.
#[derive(Debug)]
pub(crate) struct Signer {
    keys: Keys,
    address: Address,
    state_key: [u8; 32],
    faults: FaultControl,
    /// Orchestrators listed by discovery, with the models they serve.
    discovery: Vec<(String, Vec<String>)>,
    /// The live runners of the devnet's own orchestrator (the first discovery entry).
    runners: Option<RunnerSource>,
}

/// Reads an orchestrator's `GET /discovery` runner records (in process).
#[derive(Clone)]
pub(crate) struct RunnerSource(pub(crate) Arc<dyn Fn() -> Vec<Value> + Send + Sync>);

impl std::fmt::Debug for RunnerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunnerSource(..)")
    }
}

/// Runner records remote discovery keeps: a URL, an app, and a positive wei price in a
/// billing unit (server/remote_discovery.go:292-329).
fn usable_runner(r: &Value) -> bool {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    let p = &r["price_info"];
    !s("url").is_empty()
        && !s("app").is_empty()
        && p["price"].as_f64().is_some_and(|x| x > 0.0)
        && p["currency"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case("wei"))
        && matches!(
            p["unit"].as_str(),
            Some("seconds" | "720p-pixel-seconds" | "fixed")
        )
}

impl Signer {
    pub(crate) fn new(
        keys: Keys,
        faults: FaultControl,
        discovery: Vec<(String, Vec<String>)>,
    ) -> Self {
        Self {
            address: keys.address("signer"),
            state_key: keys.derive("signer-state"),
            keys,
            faults,
            discovery,
            runners: None,
        }
    }

    /// Lists `source`'s live runners under the first discovery entry.
    pub(crate) fn with_runners(mut self, source: RunnerSource) -> Self {
        self.runners = Some(source);
        self
    }
}

/// The signer's router.
pub(crate) fn router(signer: Arc<Signer>) -> Router {
    Router::new()
        .route("/sign-orchestrator-info", post(sign_orchestrator_info))
        .route("/generate-live-payment", post(generate_live_payment))
        .route("/discover-orchestrators", get(discover))
        .with_state(signer)
}

async fn sign_orchestrator_info(State(s): State<Arc<Signer>>) -> Response {
    let addr = checksum_address(&s.address);
    let sig = s.keys.sign(&s.address, addr.as_bytes());
    json_encoded(
        StatusCode::OK,
        &json!({ "address": addr, "signature": format!("0x{}", hex(&sig)) }),
    )
}

async fn discover(State(s): State<Arc<Signer>>, RawQuery(q): RawQuery) -> Response {
    let wanted: Vec<String> = q
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "caps")
        .map(|(_, v)| v.replace("%2F", "/").replace("%2f", "/"))
        .collect();
    let list: Vec<Value> = s
        .discovery
        .iter()
        .enumerate()
        .map(|(i, (url, models))| {
            let mut caps: Vec<String> = models
                .iter()
                .map(|m| format!("{LIVE_VIDEO_TO_VIDEO_NAME}/{m}"))
                .collect();
            let runners: Vec<Value> = match (&s.runners, i) {
                (Some(src), 0) => (src.0)().into_iter().filter(usable_runner).collect(),
                _ => Vec::new(),
            };
            // Each runner's app is a discovery capability too.
            for r in &runners {
                if let Some(app) = r["app"].as_str()
                    && !caps.iter().any(|c| c == app)
                {
                    caps.push(app.to_string());
                }
            }
            (url, caps, runners)
        })
        .filter(|(_, caps, _)| wanted.iter().all(|w| caps.contains(w)))
        .map(|(url, caps, runners)| {
            if s.faults.get().signer_discovery_without_runners {
                json!({ "address": url, "score": 1.0, "capabilities": caps })
            } else {
                json!({ "address": url, "score": 1.0, "capabilities": caps, "runners": runners })
            }
        })
        .collect();
    json_encoded(StatusCode::OK, &Value::Array(list))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A signer answer that is not a success.
struct Refusal {
    status: StatusCode,
    msg: String,
    refresh_url: Option<String>,
}

impl Refusal {
    fn new(status: u16, msg: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            msg: msg.into(),
            refresh_url: None,
        }
    }

    fn bad(msg: impl Into<String>) -> Self {
        Self::new(400, msg)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = json_error(self.status, &self.msg);
        if let Some(url) = self
            .refresh_url
            .and_then(|u| HeaderValue::from_str(&u).ok())
        {
            r.headers_mut().insert(ORCHESTRATOR_URL_HEADER, url);
        }
        r
    }
}

/// Go's `encoding/json` matches keys case-insensitively.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, Refusal> {
    match field(obj, key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Refusal::bad(format!("invalid {key}"))),
    }
}

fn b64_field(obj: &Map<String, Value>, key: &str) -> Result<Vec<u8>, Refusal> {
    STANDARD
        .decode(str_field(obj, key)?)
        .map_err(|e| Refusal::bad(format!("invalid {key}: {e}")))
}

async fn generate_live_payment(State(s): State<Arc<Signer>>, body: Bytes) -> Response {
    match generate(&s, &body) {
        Ok(v) => json_encoded(StatusCode::OK, &v),
        Err(r) => {
            tracing::debug!(status = r.status.as_u16(), msg = %r.msg, "signer refused payment");
            r.into_response()
        }
    }
}

fn generate(s: &Signer, body: &[u8]) -> Result<Value, Refusal> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Refusal::bad(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Refusal::bad("invalid request"))?;

    let orch_bytes = b64_field(obj, "orchestrator")?;
    if orch_bytes.is_empty() {
        return Err(Refusal::bad("missing orchestrator"));
    }
    let info = OrchestratorInfo::decode(orch_bytes.as_slice())
        .map_err(|e| Refusal::bad(format!("invalid orchestrator: {e}")))?;

    if let Some(status) = s.faults.signer_fault() {
        let mut r = Refusal::new(status, format!("devnet fault {status}"));
        if status == 480 {
            r.refresh_url = Some(info.transcoder.clone());
        }
        return Err(r);
    }

    let price_info = info
        .price_info
        .as_ref()
        .filter(|p| p.price_per_unit > 0)
        .ok_or_else(|| Refusal::bad("missing or zero priceInfo"))?;
    let params = info
        .ticket_params
        .as_ref()
        .ok_or_else(|| Refusal::bad("missing ticketParams in OrchestratorInfo"))?;
    let job =
        JobType::parse(str_field(obj, "type")?).ok_or_else(|| Refusal::bad("invalid job type"))?;
    let in_pixels = field(obj, "inPixels").and_then(Value::as_u64).unwrap_or(0);
    if job == JobType::Untyped && in_pixels == 0 {
        return Err(Refusal::bad("missing billable unit or job type"));
    }
    let max_price = parse_max_price(field(obj, "maxPrice"), job)?;
    let caps = match b64_field(obj, "capabilities")? {
        b if b.is_empty() => None,
        b => Some(
            Capabilities::decode(b.as_slice())
                .map_err(|e| Refusal::bad(format!("invalid capabilities: {e}")))?,
        ),
    };
    let manifest = str_field(obj, "ManifestID")?.to_string();
    let app = str_field(obj, "app")?.to_string();
    let orch_addr = hex(&info.address);
    let current = Price::from_info(Some(price_info));

    let prior = match field(obj, "state").filter(|v| !v.is_null()) {
        None => None,
        Some(st) => {
            if manifest.is_empty() {
                return Err(Refusal::bad("missing manifestID"));
            }
            let st = s.open_state(st)?;
            if st.orchestrator_address != orch_addr {
                return Err(Refusal::bad("orchestratorAddress mismatch"));
            }
            if st.app != app {
                return Err(Refusal::bad("app mismatch"));
            }
            if st.job_type != job.as_str() {
                return Err(Refusal::bad("job type mismatch"));
            }
            Some(st)
        }
    };

    let now = now_ms();
    let now_s = now / 1000;
    let token_exp = info.auth_token.as_ref().map_or(0, |t| t.expiration);
    let params_expired = params_expiry(params).is_none_or(|e| e < now_s);
    if token_exp - now_s < AUTH_TTL_SECS / 10 || params_expired {
        let mut r = Refusal::new(480, "refresh session");
        r.refresh_url = Some(info.transcoder.clone());
        return Err(r);
    }

    let initial = prior.as_ref().map_or(current, PaymentState::initial_price);
    if let Some(max) = max_price
        && price_above(current, max)
    {
        return Err(Refusal::new(
            481,
            "Orchestrator price exceeds the maximum price",
        ));
    }
    let doubled = Price {
        per_unit: initial.per_unit.saturating_mul(2),
        pixels: initial.pixels,
    };
    if price_above(current, doubled) {
        return Err(Refusal::new(
            481,
            "Orchestrator price has more than doubled",
        ));
    }

    let elapsed = prior
        .as_ref()
        .map(|p| u64::try_from(now - p.last_update).unwrap_or(0));
    let fee = initial.fee(billable_units(job, elapsed, in_pixels));
    let balance = prior.as_ref().map_or(0, PaymentState::balance_wei);
    let ev = ticket_ev(params);
    let n = tickets_needed(fee, balance, ev).ok_or_else(|| Refusal::bad("zero ticket value"))?;
    if n == 0 {
        return Err(Refusal::new(482, "no tickets"));
    }
    if n > MAX_TICKETS {
        return Err(Refusal::bad(format!("too many tickets: {n}")));
    }
    let count = u32::try_from(n).unwrap_or(u32::MAX);
    let nonce = prior.as_ref().map_or(0, |p| p.sender_nonce);
    let payment = make_payment(
        &s.keys,
        &s.address,
        params,
        nonce,
        count,
        Some(price_info.clone()),
    );

    let mid = if manifest.is_empty() {
        info.auth_token
            .as_ref()
            .map(|t| t.session_id.clone())
            .unwrap_or_default()
    } else {
        manifest
    };
    let mut seg = SegData {
        manifest_id: mid.into_bytes(),
        seq: 0,
        hash: keccak(b"").to_vec(),
        profiles: b"invalid".to_vec(),
        capabilities: caps,
        auth_token: info.auth_token.clone(),
        ..Default::default()
    };
    seg.sig = s.keys.sign(&s.address, &seg_preimage(&seg));

    let state = PaymentState {
        state_id: prior
            .as_ref()
            .map_or_else(random_id, |p| p.state_id.clone()),
        pm_session_id: prior
            .as_ref()
            .map_or_else(random_id, |p| p.pm_session_id.clone()),
        last_update: now,
        orchestrator_address: orch_addr,
        app,
        auth_expiry: token_exp,
        sender_nonce: nonce.wrapping_add(count),
        balance: format!("{}/1", balance + n * ev - fee),
        initial_price_per_unit: initial.per_unit,
        initial_pixels_per_unit: initial.pixels,
        job_type: job.as_str().to_string(),
        sequence_number: prior.as_ref().map_or(0, |p| p.sequence_number + 1),
        auth_id: String::new(),
    };
    tracing::debug!(job = job.as_str(), fee = %fee, tickets = n, "signer created payment");
    Ok(json!({
        "payment": lpgw_proto::encode_payment(&payment),
        "segCreds": lpgw_proto::encode_seg_data(&seg),
        "state": s.seal_state(&state),
    }))
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

fn parse_max_price(v: Option<&Value>, job: JobType) -> Result<Option<Price>, Refusal> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(unit) = job.max_price_unit() else {
        return Err(Refusal::bad("maxPrice requires a job type"));
    };
    let o = v
        .as_object()
        .ok_or_else(|| Refusal::bad("invalid maxPrice"))?;
    // A positive decimal (Go `json.Number` into `big.Rat`): a JSON number or numeric string,
    // fractions allowed (gateways pad discovery prices by 1.2 %).
    let price = match field(o, "price") {
        Some(Value::Number(n)) => decimal_price(&n.to_string()),
        Some(Value::String(s)) => decimal_price(s),
        _ => None,
    }
    .filter(|p| p.per_unit > 0);
    let Some(price) = price else {
        return Err(Refusal::bad("maxPrice price must be positive"));
    };
    let currency = field(o, "currency").and_then(Value::as_str).unwrap_or("");
    if !currency.eq_ignore_ascii_case("wei") {
        return Err(Refusal::bad("maxPrice currency must be wei"));
    }
    if field(o, "unit").and_then(Value::as_str) != Some(unit) {
        return Err(Refusal::bad(format!("maxPrice unit must be {unit}")));
    }
    // Compared as is with the orchestrator's price, for `lv2v` too: both are wei per pixel
    // (checkRemotePaymentPrice, server/remote_signer.go).
    Ok(Some(price))
}

impl Signer {
    fn seal_state(&self, st: &PaymentState) -> Value {
        let bytes = serde_json::to_vec(st).unwrap_or_default();
        let mut sig = hmac(&self.state_key, &[&bytes]).to_vec();
        sig.extend_from_slice(&hmac(&self.state_key, &[b"s", &bytes]));
        sig.push(27);
        json!({ "State": STANDARD.encode(&bytes), "Sig": STANDARD.encode(&sig) })
    }

    fn open_state(&self, v: &Value) -> Result<PaymentState, Refusal> {
        let o = v.as_object().ok_or_else(|| Refusal::bad("invalid state"))?;
        let bytes = b64_field(o, "State")?;
        let sig = b64_field(o, "Sig")?;
        let mut want = hmac(&self.state_key, &[&bytes]).to_vec();
        want.extend_from_slice(&hmac(&self.state_key, &[b"s", &bytes]));
        want.push(27);
        if !ct_eq(&want, &sig) {
            return Err(Refusal::bad("invalid sig"));
        }
        serde_json::from_slice(&bytes).map_err(|e| Refusal::bad(format!("invalid state: {e}")))
    }
}
