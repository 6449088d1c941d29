//! `POST /live-video-to-video` in go-livepeer's order (server/ai_http.go:996-1186):
//! JSON → capacity (503) → payment header (402) → segment credentials (403) → payment (400)
//! → balance (400) → four trickle channels → runner → 200 JSON.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::session::{self, Slot};
use super::{Orch, payment, random_manifest_id, segcreds, unix_now};
use crate::respond::{json_ok, plain_error};

/// The fields of `LiveVideoToVideoParams` devnet uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lv2vRequest {
    pub(crate) model_id: String,
    pub(crate) params: Option<Value>,
}

/// Go's `encoding/json` matches keys case-insensitively.
fn field<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Decodes the request body. A missing `model_id` is a 400 here, where go-livepeer's
/// handler dereferences nil and drops the connection (spec §9.6).
pub(crate) fn parse_request(body: &[u8]) -> Result<Lv2vRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = match &v {
        Value::Object(o) => o,
        Value::Null => return Err("missing model_id".into()),
        other => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                _ => "bool",
            };
            return Err(format!(
                "json: cannot unmarshal {kind} into Go value of type worker.GenLiveVideoToVideoJSONRequestBody"
            ));
        }
    };
    let model_id = match field(obj, "model_id") {
        None | Some(Value::Null) => return Err("missing model_id".into()),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(
                "json: cannot unmarshal into Go struct field .model_id of type string".into(),
            );
        }
    };
    let params = field(obj, "params").filter(|p| !p.is_null()).cloned();
    Ok(Lv2vRequest { model_id, params })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ()> {
    headers
        .get(name)
        .map_or(Ok(""), |v| v.to_str().map_err(|_| ()))
}

pub(super) async fn start(State(o): State<Arc<Orch>>, headers: HeaderMap, body: Bytes) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(msg) => return plain_error(StatusCode::BAD_REQUEST, &msg),
    };
    let latency = o.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let slot = if o.faults.refuse() {
        None
    } else {
        Slot::reserve(&o, &req.model_id)
    };
    let Some(slot) = slot else {
        tracing::debug!(model = %req.model_id, "insufficient capacity");
        return plain_error(StatusCode::SERVICE_UNAVAILABLE, "insufficient capacity");
    };
    let payment = match header(&headers, lpgw_proto::LIVEPEER_PAYMENT)
        .map_err(|()| "base64 decode error: header is not ASCII".to_string())
        .and_then(|h| lpgw_proto::decode_payment(h).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(msg) => return plain_error(StatusCode::PAYMENT_REQUIRED, &msg),
    };
    let now = unix_now();
    let seg = header(&headers, lpgw_proto::LIVEPEER_SEGMENT)
        .map_err(|()| segcreds::SegCredsError::Encoding)
        .and_then(|h| segcreds::verify(&o, h, &payment.sender, now));
    if let Err(e) = seg {
        return plain_error(StatusCode::FORBIDDEN, &e.to_string());
    }
    let mid = random_manifest_id();
    if let Err(msg) = payment::process(&o, &payment, &mid, now) {
        return plain_error(StatusCode::BAD_REQUEST, &msg);
    }
    let price = payment.expected_price.clone();
    if price.as_ref().is_some_and(|p| p.price_per_unit > 0) {
        let key = (payment.sender.clone(), mid.clone());
        let ev = o.tickets().ev();
        if o.ledger().balance(&key) < ev {
            return plain_error(StatusCode::BAD_REQUEST, "Insufficient balance");
        }
    }
    let urls = session::start(
        &o,
        session::SessionSpec {
            mid: mid.clone(),
            model: req.model_id,
            params: req.params,
            sender: payment.sender,
            price,
        },
        slot,
    );
    json_ok(&json!({
        "control_url": urls.control,
        "events_url": urls.events,
        "manifest_id": mid,
        "publish_url": urls.publish,
        "subscribe_url": urls.subscribe,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parsing() {
        let r = parse_request(br#"{"MODEL_ID":"noop","params":{"a":1}}"#).unwrap();
        assert_eq!(r.model_id, "noop");
        assert_eq!(r.params, Some(json!({"a":1})));
        assert_eq!(parse_request(b"{}").unwrap_err(), "missing model_id");
        assert_eq!(parse_request(b"null").unwrap_err(), "missing model_id");
        assert!(parse_request(b"{").unwrap_err().starts_with("invalid JSON"));
        assert!(
            parse_request(b"[]")
                .unwrap_err()
                .contains("cannot unmarshal array")
        );
        assert!(
            parse_request(br#"{"model_id":5}"#)
                .unwrap_err()
                .contains("model_id")
        );
    }
}
