//! Paid live-runner sessions (server/ai_http.go:264-591): runner prices, the 402 challenge,
//! the paid reservation with its meter, and session payments.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use lpgw_proto::{OrchestratorInfo, Payment, PaymentResult, PriceInfo, SegData};
use prost::Message as _;
use serde_json::json;

use super::price::Unit;
use super::registry::LiveError;
use super::reply::{err, header, unsupported};
use super::{Live, meter};
use crate::ledger::{LV2V_PIXELS_PER_SEC, Price};
use crate::orch::{payment, random_manifest_id, segcreds, unix_now};
use crate::respond::{json_error, json_ok, plain_error, protobuf_ok};

/// The runner's wei price and unit when priced (live_runner.go:1009-1029).
pub(super) fn runner_price(live: &Live, rid: &str) -> Result<Option<(i64, Unit)>, LiveError> {
    if !live.priced() {
        return Ok(None);
    }
    let reg = live.reg();
    let r = reg.get(rid, Instant::now())?;
    let Some(p) = &r.advert.price else {
        return Err(LiveError::new(
            503,
            "live runner price unavailable: price_info.price is required",
        ));
    };
    p.to_wei(live.eth_usd)
        .map(|w| Some((w, p.unit)))
        .map_err(|e| LiveError::new(503, format!("live runner price unavailable: {e}")))
}

fn be_bytes(v: u128) -> Vec<u8> {
    let b = v.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

/// Ticket params whose tickets are each worth about ten seconds of the runner's price (one
/// unit for fixed prices), so a signer's first payment needs one ticket.
fn runner_ticket_params(live: &Live, wei: i64, unit: Unit, now: i64) -> lpgw_proto::TicketParams {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    let mut tp = live.orch.tickets().params(now, seed);
    let units: u128 = match unit {
        Unit::Hour => 10,
        Unit::P720 => 10 * u128::from(LV2V_PIXELS_PER_SEC),
        Unit::Fixed => 1,
    };
    let ev = u128::try_from(wei.max(1))
        .unwrap_or(1)
        .saturating_mul(units);
    // A little over `ev` so that rounding never needs a second ticket.
    tp.face_value = be_bytes(ev.saturating_add(1).saturating_mul(1000));
    tp
}

fn wei_price(wei: i64) -> PriceInfo {
    PriceInfo {
        price_per_unit: wei,
        pixels_per_unit: 1,
        ..Default::default()
    }
}

/// `Livepeer-Payer-Address` must be a hex address (`ethcommon.IsHexAddress`).
pub(super) fn payer(headers: &HeaderMap) -> Option<Vec<u8>> {
    let a = header(headers, "Livepeer-Payer-Address");
    let hex = a
        .strip_prefix("0x")
        .or_else(|| a.strip_prefix("0X"))
        .unwrap_or(a);
    (hex.len() == 40)
        .then(|| crate::keys::parse_hex(hex))
        .flatten()
        .filter(|b| b.len() == 20)
}

/// The 402 challenge body (server/ai_http.go:443-454).
pub(super) fn challenge(live: &Live, info: &OrchestratorInfo, payment_url: String) -> Response {
    let mid = info
        .auth_token
        .as_ref()
        .map(|t| t.session_id.clone())
        .unwrap_or_default();
    let mut body = json!({
        "payment_params": lpgw_proto::headers::encode_b64(info),
        "orchestrator": live.orch.service_uri,
        "manifest_id": mid,
        "payment_url": payment_url,
    });
    let faults = live.orch.faults.get();
    if faults.challenge_without_payment_url
        && let Some(o) = body.as_object_mut()
    {
        o.remove("payment_url");
    }
    if let Some(ms) = faults.challenge_payment_interval_ms {
        body["payment_interval_ms"] = ms.into();
    }
    let mut r = json_ok(&body);
    *r.status_mut() = StatusCode::PAYMENT_REQUIRED;
    r
}

fn runner_challenge(live: &Live, rid: &str, headers: &HeaderMap, wei: i64, unit: Unit) -> Response {
    if payer(headers).is_none() {
        return json_error(
            StatusCode::PAYMENT_REQUIRED,
            "invalid live runner payment signer address",
        );
    }
    let now = unix_now();
    let mid = random_manifest_id();
    let info = OrchestratorInfo {
        transcoder: live.orch.service_uri.clone(),
        ticket_params: Some(runner_ticket_params(live, wei, unit, now)),
        price_info: Some(wei_price(wei)),
        address: live.orch.address.to_vec(),
        auth_token: Some(live.orch.auth_token(mid.clone(), now)),
        ..Default::default()
    };
    let url = format!("{}/apps/{rid}/session/{mid}/payment", live.orch.service_uri);
    challenge(live, &info, url)
}

/// Decodes `Livepeer-Payment` (402) and verifies `Livepeer-Segment` (403).
// The error is the finished HTTP answer, returned once per request.
#[allow(clippy::result_large_err)]
pub(super) fn payment_headers(
    live: &Live,
    headers: &HeaderMap,
) -> Result<(Payment, SegData), Response> {
    let payment = lpgw_proto::decode_payment(header(headers, lpgw_proto::LIVEPEER_PAYMENT))
        .map_err(|e| plain_error(StatusCode::PAYMENT_REQUIRED, &e.to_string()))?;
    let seg = segcreds::verify(
        &live.orch,
        header(headers, lpgw_proto::LIVEPEER_SEGMENT),
        &payment.sender,
        unix_now(),
    )
    .map_err(|e| plain_error(StatusCode::FORBIDDEN, &e.to_string()))?;
    Ok((payment, seg))
}

/// The paid reservation (server/ai_http.go:264-382): the challenge when both payment
/// headers are absent, else verify, reserve with session ID = manifest ID, process the
/// payment, and account once (fixed) or start the meter (time units).
#[allow(clippy::result_large_err)]
pub(super) fn reserve_paid(
    live: &Arc<Live>,
    rid: &str,
    headers: &HeaderMap,
    wei: i64,
    unit: Unit,
) -> Result<String, Response> {
    if header(headers, lpgw_proto::LIVEPEER_PAYMENT).is_empty()
        && header(headers, lpgw_proto::LIVEPEER_SEGMENT).is_empty()
    {
        return Err(runner_challenge(live, rid, headers, wei, unit));
    }
    let (payment, seg) = payment_headers(live, headers)?;
    let mid = String::from_utf8_lossy(&seg.manifest_id).into_owned();
    let auth_sid = seg.auth_token.as_ref().map(|t| t.session_id.as_str());
    if auth_sid != Some(mid.as_str()) {
        return Err(plain_error(
            StatusCode::FORBIDDEN,
            "mismatched manifest and auth token",
        ));
    }
    if unit == Unit::Fixed
        && payment
            .expected_price
            .as_ref()
            .is_none_or(|p| p.price_per_unit != wei || p.pixels_per_unit != 1)
    {
        return Err(plain_error(
            StatusCode::BAD_REQUEST,
            "payment price does not match live runner price",
        ));
    }
    let reserved = live.reg().reserve(rid, Some(mid.clone()), Instant::now());
    let sid = reserved.map_err(|e| err(&e))?;
    if let Err(msg) = payment::process(&live.orch, &payment, &sid, unix_now()) {
        live.release(rid, &sid);
        return Err(plain_error(StatusCode::BAD_REQUEST, &msg));
    }
    let key = (payment.sender.clone(), sid.clone());
    let price = Price::from_info(payment.expected_price.as_ref());
    if unit == Unit::Fixed {
        let fee = price.fee(1);
        let debit = live.orch.ledger().debit(&key, fee, Instant::now());
        if let Err(e) = debit {
            live.release(rid, &sid);
            let msg = format!(
                "insufficient balance, mid={sid}, fee={}, balance={}",
                e.fee, e.balance
            );
            return Err(plain_error(StatusCode::BAD_REQUEST, &msg));
        }
    } else {
        let cancel = live
            .reg()
            .session(rid, &sid, Instant::now())
            .map(|(_, s)| s.cancel.clone())
            .map_err(|e| err(&e))?;
        let task = meter::run(
            live.clone(),
            rid.to_string(),
            sid.clone(),
            key,
            price,
            unit.units_per_sec(),
            cancel,
        );
        live.orch.tracker.spawn(task);
    }
    live.announce_reserved(rid, &sid);
    Ok(sid)
}

pub(super) async fn payment(
    State(live): State<Arc<Live>>,
    Path((rid, sid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !live.cfg.enabled {
        return unsupported();
    }
    let unit = {
        let reg = live.reg();
        match reg.session(&rid, &sid, Instant::now()) {
            Ok((r, _)) => r.advert.price.as_ref().map(|p| p.unit),
            Err(e) => return err(&e),
        }
    };
    if unit == Some(Unit::Fixed) && live.priced() {
        return plain_error(
            StatusCode::CONFLICT,
            "fixed-price live runner sessions do not accept follow-up payments",
        );
    }
    let faults = live.orch.faults.get();
    if let Some(code) = faults.session_payment_status {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return plain_error(code, "payment refused by a devnet fault");
    }
    let (payment, seg) = match payment_headers(&live, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if seg.manifest_id != sid.as_bytes() {
        return plain_error(
            StatusCode::FORBIDDEN,
            "mismatched session and payment manifest",
        );
    }
    let now = unix_now();
    if let Err(msg) = payment::process(&live.orch, &payment, &sid, now) {
        return plain_error(StatusCode::BAD_REQUEST, &msg);
    }
    let pinned = live
        .orch
        .ledger()
        .pinned(&(payment.sender.clone(), sid.clone()));
    let price = pinned.map(|p| PriceInfo {
        price_per_unit: p.per_unit,
        pixels_per_unit: p.pixels,
        ..Default::default()
    });
    let wei = price.as_ref().map_or(1, |p| p.price_per_unit);
    let info = OrchestratorInfo {
        transcoder: live.orch.service_uri.clone(),
        ticket_params: live
            .priced()
            .then(|| runner_ticket_params(&live, wei, unit.unwrap_or(Unit::Hour), now)),
        price_info: price,
        address: live.orch.address.to_vec(),
        auth_token: seg.auth_token,
        ..Default::default()
    };
    if faults.session_payment_json {
        return json_ok(&json!({
            "payment_params": lpgw_proto::headers::encode_b64(&info),
            "orchestrator": live.orch.service_uri,
            "manifest_id": sid,
            "payment_url": format!("{}/apps/{rid}/session/{sid}/payment", live.orch.service_uri),
        }));
    }
    protobuf_ok(PaymentResult { info: Some(info) }.encode_to_vec())
}

/// `POST /refresh-payment` (server/rpc.go:454-508). For a live-runner session the ticket
/// parameters follow the runner's price as in its challenge, so a signer refreshing after a
/// `480` needs as few tickets as before; other sessions get the orchestrator's.
pub(super) async fn refresh(State(live): State<Arc<Live>>, body: Bytes) -> Response {
    let req = match payment::refresh_request(&live.orch, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let unit = live.priced().then(|| {
        let reg = live.reg();
        reg.runner_of_session(&req.mid)
            .map(|r| r.advert.price.as_ref().map_or(Unit::Hour, |p| p.unit))
    });
    let tp = unit
        .flatten()
        .map(|u| runner_ticket_params(&live, req.pinned.per_unit, u, unix_now()));
    payment::refresh_answer(&live.orch, &req, tp)
}
