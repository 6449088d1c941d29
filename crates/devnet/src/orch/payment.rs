//! Payment processing (core/orchestrator.go:113-235), `POST /payment`
//! (server/segment_rpc.go:241-274) and `POST /refresh-payment` (server/rpc.go:454-508).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use lpgw_proto::{Payment, PaymentResult, PriceInfo};
use prost::Message as _;
use serde_json::json;

use super::{Orch, segcreds, unix_now};
use crate::keys::parse_hex;
use crate::ledger::{BALANCE_TTL, Price};
use crate::respond::{json_error, json_ok, plain_error, protobuf_ok};

/// Validates a payment's tickets and credits their value to (sender, `mid`), pinning the
/// expected price on the first payment. Offchain it does nothing.
pub(super) fn process(o: &Orch, payment: &Payment, mid: &str, now: i64) -> Result<(), String> {
    if !o.onchain {
        return Ok(());
    }
    let key = (payment.sender.clone(), mid.to_string());
    let at = Instant::now();
    o.ledger().sweep(at, BALANCE_TTL);
    if payment.ticket_params.is_none() {
        o.ledger().pin(
            &key,
            Price {
                per_unit: 0,
                pixels: 1,
            },
            at,
        );
        return Ok(());
    }
    let credit = o
        .tickets()
        .redeem(payment, now)
        .map_err(|e| e.to_string())?;
    let price = Price::from_info(payment.expected_price.as_ref());
    let mut ledger = o.ledger();
    ledger.pin(&key, price, at);
    ledger.credit(&key, credit, at);
    o.receipts().record(&payment.sender, mid, credit);
    tracing::debug!(
        manifest = mid,
        tickets = payment.ticket_sender_params.len(),
        credit = %credit,
        balance = %ledger.balance(&key),
        "payment credited"
    );
    Ok(())
}

/// `GET /devnet/ledger`: what this orchestrator was paid (see [`crate::receipts`]).
pub(super) async fn ledger(State(o): State<Arc<Orch>>) -> Response {
    json_ok(&o.receipts().to_json())
}

fn price_info(p: Price) -> PriceInfo {
    PriceInfo {
        price_per_unit: p.per_unit,
        pixels_per_unit: p.pixels,
        ..Default::default()
    }
}

pub(super) async fn payment(State(o): State<Arc<Orch>>, headers: HeaderMap) -> Response {
    let get = |name: &str| headers.get(name).map_or(Some(""), |v| v.to_str().ok());
    let payment = match get(lpgw_proto::LIVEPEER_PAYMENT)
        .ok_or_else(|| "base64 decode error: header is not ASCII".to_string())
        .and_then(|h| lpgw_proto::decode_payment(h).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(msg) => return plain_error(StatusCode::PAYMENT_REQUIRED, &msg),
    };
    let now = unix_now();
    let seg = match get(lpgw_proto::LIVEPEER_SEGMENT)
        .ok_or(segcreds::SegCredsError::Encoding)
        .and_then(|h| segcreds::verify(&o, h, &payment.sender, now))
    {
        Ok(s) => s,
        Err(e) => return plain_error(StatusCode::FORBIDDEN, &e.to_string()),
    };
    let mid = String::from_utf8_lossy(&seg.manifest_id).into_owned();
    if let Err(msg) = process(&o, &payment, &mid, now) {
        return plain_error(StatusCode::BAD_REQUEST, &msg);
    }
    let key = (payment.sender.clone(), mid);
    let pinned = o.ledger().pinned(&key);
    let price = pinned.map(price_info).or_else(|| o.price(None));
    let session = seg
        .auth_token
        .as_ref()
        .map(|t| t.session_id.clone())
        .unwrap_or_default();
    let mut info = o.base_info(price, session, now);
    // The token of the segment credentials is echoed, not renewed.
    info.auth_token = seg.auth_token;
    info.capabilities = Some(o.capabilities());
    protobuf_ok(PaymentResult { info: Some(info) }.encode_to_vec())
}

/// A `/refresh-payment` request whose session has a pinned price.
pub(crate) struct RefreshRequest {
    /// The session (manifest) ID.
    pub(crate) mid: String,
    /// The price pinned by the session's first payment.
    pub(crate) pinned: Price,
}

/// Parses `/refresh-payment` and looks up the pinned price; the error is the finished answer.
// The error is the finished HTTP answer, returned once per request.
#[allow(clippy::result_large_err)]
pub(crate) fn refresh_request(o: &Orch, body: &[u8]) -> Result<RefreshRequest, Response> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err(json_error(StatusCode::BAD_REQUEST, "invalid request body"));
    };
    let field = |k: &str| {
        v.as_object().and_then(|o| {
            o.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .and_then(|(_, v)| v.as_str())
        })
    };
    let Some(sender) = field("sender")
        .and_then(parse_hex)
        .filter(|a| a.len() == 20)
    else {
        return Err(json_error(StatusCode::BAD_REQUEST, "invalid sender"));
    };
    let Some(mid) = field("manifest_id").filter(|m| !m.is_empty()) else {
        return Err(json_error(StatusCode::BAD_REQUEST, "missing manifest_id"));
    };
    let Some(pinned) = o.ledger().pinned(&(sender, mid.to_string())) else {
        return Err(json_error(
            StatusCode::CONFLICT,
            "fixed price not found for session",
        ));
    };
    Ok(RefreshRequest {
        mid: mid.to_string(),
        pinned,
    })
}

/// The `/refresh-payment` answer: fresh parameters at the pinned price. `ticket_params`
/// replaces the orchestrator's default ones (go-livepeer derives them from the price,
/// `TicketParams(sender, priceInfo)`).
pub(crate) fn refresh_answer(
    o: &Orch,
    req: &RefreshRequest,
    ticket_params: Option<lpgw_proto::TicketParams>,
) -> Response {
    let mut info = o.base_info(Some(price_info(req.pinned)), req.mid.clone(), unix_now());
    if let Some(tp) = ticket_params {
        info.ticket_params = Some(tp);
    }
    json_ok(&json!({
        "payment_params": lpgw_proto::headers::encode_b64(&info),
        "orchestrator": o.service_uri,
        "manifest_id": req.mid,
        "payment_url": format!("{}/payment", o.service_uri),
    }))
}
