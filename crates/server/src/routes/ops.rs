//! Operations routes: health, Prometheus metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::responses::Keyed;
use super::types::Health;
use crate::extract::caller;
use crate::service::AppState;

/// `GET /health` (no key).
#[utoipa::path(get, path = "/health", tag = "ops", security(()),
    responses((status = 200, description = "the service answers", body = Health)))]
pub(crate) async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        active_jobs: s.active_jobs(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /metrics`: Prometheus text exposition; keyed unless the operator made it public.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String),
        Keyed,
    ))]
pub(crate) async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if !s.0.config.metrics_public
        && let Err(e) = caller(&s, &headers, None, false)
    {
        return e.into_response();
    }
    let payments = s.payment_totals().await;
    let text =
        s.0.metrics
            .render(&s.job_counts(), &payments, &s.job_spend_rows());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `GET /openapi.json` (no key): this service's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", security(()),
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn openapi(State(s): State<AppState>) -> Json<Value> {
    Json(super::openapi::document(&s.0.config))
}
