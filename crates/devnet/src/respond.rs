//! go-livepeer's response styles (server/handlers.go:1681-1752).

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

/// `http.Error`: plain text, `nosniff`, message plus newline.
pub(crate) fn plain_error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{msg}\n"),
    )
        .into_response()
}

/// `respondJsonError`: `{"error":{"message":..}}` plus newline; 500 and 503 hide the text.
pub(crate) fn json_error(status: StatusCode, msg: &str) -> Response {
    let msg = match status {
        StatusCode::INTERNAL_SERVER_ERROR => "Internal Server Error",
        StatusCode::SERVICE_UNAVAILABLE => "Service Unavailable Error",
        _ => msg,
    };
    let mut body =
        serde_json::to_vec(&serde_json::json!({ "error": { "message": msg } })).unwrap_or_default();
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `respondJsonOk`: compact JSON, no trailing newline.
pub(crate) fn json_ok(value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A `json.Encoder` answer (the remote signer): JSON plus newline.
pub(crate) fn json_encoded(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A binary protobuf body; go-livepeer sets no content type (clients must not rely on it).
pub(crate) fn protobuf_ok(bytes: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, Bytes::from(bytes)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}
