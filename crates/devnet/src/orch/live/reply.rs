//! Small answers shared by the live-runner endpoints.

use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::registry::LiveError;
use crate::respond::plain_error;

/// A registry error as go-livepeer's plain error.
pub(super) fn err(e: &LiveError) -> Response {
    plain_error(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.msg,
    )
}

/// The answer when live runners are switched off.
pub(super) fn unsupported() -> Response {
    plain_error(StatusCode::NOT_FOUND, "live runners are not supported")
}

/// A header's text, empty when missing or not text.
pub(super) fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}
