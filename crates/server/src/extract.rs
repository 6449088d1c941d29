//! Request helpers shared by the routes: who is calling, and bodies read with limits and
//! content-type checks that answer JSON errors (400, 413, 415) instead of plain text.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::{Owner, presented_key};
use crate::error::ApiError;
use crate::service::AppState;

/// Query parameters every route may carry.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeyQuery {
    pub(crate) api_key: Option<String>,
}

/// The authenticated caller of a route, from the `X-API-Key` or `Authorization: Bearer`
/// header. An extractor, so a handler that takes it cannot forget the check: 401 without a
/// valid key.
pub(crate) struct Caller(pub(crate) Owner);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        caller(s, &parts.headers, None, false).map(Self)
    }
}

/// [`Caller`] for routes that browsers open with no way to set a header (`EventSource`):
/// the key may also come as `?api_key=`, the header winning when both are present.
pub(crate) struct QueryCaller(pub(crate) Owner);

impl FromRequestParts<AppState> for QueryCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        // A query that does not parse carries no key; the headers may still.
        let q = Query::<KeyQuery>::try_from_uri(&parts.uri)
            .map(|Query(q)| q)
            .unwrap_or_default();
        caller(s, &parts.headers, q.api_key.as_deref(), true).map(Self)
    }
}

/// The caller, from headers (or the query where `allow_query`). Routes take [`Caller`];
/// this is for the few that must check something else first (the start rate).
pub(crate) fn caller(
    state: &AppState,
    headers: &HeaderMap,
    query_key: Option<&str>,
    allow_query: bool,
) -> Result<Owner, ApiError> {
    state
        .0
        .keys
        .check(presented_key(headers, query_key, allow_query))
        .ok_or_else(ApiError::unauthorized)
}

/// Maps a body-read failure: over the limit is 413, anything else 400.
pub(crate) fn body_error(e: &BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body too large")
    } else {
        ApiError::bad_request(format!("unreadable body: {e}"))
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

/// A JSON object body read as `T`. `None` when the body is empty and `optional`.
/// Malformed JSON, a body that is not an object, or fields of the wrong type are 400.
pub(crate) fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    optional: bool,
    limit: usize,
) -> Result<Option<T>, ApiError> {
    let body = body.map_err(|e| body_error(&e))?;
    if body.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large",
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return if optional {
            Ok(None)
        } else {
            Err(ApiError::bad_request("a JSON body is required"))
        };
    }
    match content_type(headers).as_deref() {
        Some("application/json") => {}
        Some(m) if m.ends_with("+json") => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ));
        }
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v @ Value::Object(_)) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("invalid body: {e}"))),
        // An optional body sent as `null` is no body.
        Ok(Value::Null) if optional => Ok(None),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

/// A JPEG body: `image/jpeg` (or no content type) only.
pub(crate) fn jpeg_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    match content_type(headers).as_deref() {
        None | Some("image/jpeg" | "image/jpg" | "application/octet-stream") => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: image/jpeg",
            ));
        }
    }
    body.map_err(|e| body_error(&e))
}
