//! Family A: the job API of the SDK-service web wrapper.
//!
//! The URLs handed back (`publish_url`, `subscribe_url`, `control_url`, `events_url`) are
//! this service's own routes for the job, not the orchestrator's trickle channels: those are
//! bearer capabilities that would let a caller bypass the gateway's keys and limits.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::arbiter::InputSource;
use crate::auth::Owner;
use crate::backend::StartSpec;
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::extract::{Caller, QueryCaller, caller, json_object, opt_object, opt_str};
use crate::job::Job;
use crate::service::AppState;

/// `GET /health` (no key).
pub(crate) async fn health(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "active_jobs": s.active_jobs(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Builds a start spec from a request object (shared with Family B).
pub(crate) fn start_spec(
    s: &AppState,
    body: Option<&serde_json::Map<String, Value>>,
) -> Result<StartSpec, ApiError> {
    let empty = serde_json::Map::new();
    let b = body.unwrap_or(&empty);
    Ok(StartSpec {
        model_id: opt_str(b, "model_id")?.unwrap_or_else(|| s.0.config.default_model.clone()),
        params: opt_object(b, "params")?,
        request_id: opt_str(b, "request_id")?,
        stream_id: opt_str(b, "stream_id")?,
        orchestrator_url: opt_str(b, "orchestrator_url")?,
        // Set by the service at start, from the caller's key.
        wallet: lpgw_gateway::Wallet::default(),
    })
}

pub(crate) fn job_urls(id: &str) -> Value {
    json!({
        "publish_url": format!("/stream/{id}/publish"),
        "subscribe_url": format!("/ws/stream?job_id={id}"),
        "control_url": format!("/job/{id}/control"),
        "events_url": format!("/job/{id}/events"),
    })
}

/// `a` with the fields of `b` added (both JSON objects; shared with Family B).
pub(crate) fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Starts a job for the caller at client address `ip` from an optional JSON request body
/// (shared with Family B). The start rate is checked first, before the key, so a flood of
/// bad requests is throttled too.
pub(crate) async fn start_from_request(
    s: &AppState,
    ip: ClientIp,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Arc<Job>, ApiError> {
    s.check_start_rate(ip.0)?;
    let owner = caller(s, headers, None, false)?;
    let body = json_object(headers, body, true, s.0.config.max_json_bytes)?;
    let spec = start_spec(s, body.as_ref())?;
    s.start_job(owner, ip.0, spec).await
}

/// `POST /start-job`.
pub(crate) async fn start_job(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let job = start_from_request(&s, ip, &headers, body).await?;
    Ok(Json(merge(
        json!({ "job_id": job.id, "model_id": job.model_id, "flow": job.flow.as_str() }),
        job_urls(&job.id),
    )))
}

/// The caller's live job `id`, marked as used (shared with Family B).
pub(crate) fn lookup(s: &AppState, id: &str, owner: Owner) -> Result<Arc<Job>, ApiError> {
    let job =
        s.0.registry
            .get(id, owner)
            .ok_or_else(ApiError::not_found)?;
    job.touch();
    Ok(job)
}

fn summary(s: &AppState, j: &Job) -> Value {
    let (_, wei) = j.spend.get();
    json!({
        "job_id": j.id,
        "model_id": j.model_id,
        "flow": j.flow.as_str(),
        "created_at": j.created_at,
        "orchestrator_url": j.orchestrator_url,
        "media_started": j.media().is_some(),
        "phase": j.phase().as_str(),
        "spent_wei": wei.to_string(),
        "spent_usd": s.0.spending.usd(wei),
    })
}

/// A job's spend for status answers: payments accepted, their value in wei (a decimal
/// string: wei amounts outgrow JSON's safe integers) and in USD at the configured ETH price.
pub(crate) fn spend_json(s: &AppState, spend: &crate::spend::JobSpend) -> Value {
    let (payments, wei) = spend.get();
    json!({
        "payments": payments,
        "spent_wei": wei.to_string(),
        "spent_usd": s.0.spending.usd(wei),
    })
}

/// `GET /jobs`: the caller's jobs only.
pub(crate) async fn list_jobs(
    State(s): State<AppState>,
    Caller(owner): Caller,
) -> Result<Json<Value>, ApiError> {
    let jobs: Vec<Value> =
        s.0.registry
            .list(owner)
            .iter()
            .map(|j| summary(&s, j))
            .collect();
    Ok(Json(Value::Array(jobs)))
}

/// `GET /job/{id}`.
pub(crate) async fn get_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
) -> Result<Json<Value>, ApiError> {
    let j = lookup(&s, &id, owner)?;
    let mut v = merge(summary(&s, &j), job_urls(&j.id));
    v["has_payment_session"] = j.has_payment_session.into();
    add_progress(&s, &mut v, &j);
    Ok(Json(v))
}

/// Adds a live job's error, if any, and its frame counters once media has started
/// (shared with Family B's status).
pub(crate) fn add_progress(s: &AppState, v: &mut Value, j: &Job) {
    if let Some(e) = j.error() {
        v["error"] = e.into();
    }
    v["spend"] = spend_json(s, &j.spend);
    v["key_spend"] = s.0.spending.owner_json(j.owner);
    if let Ok(slot) = j.handle.try_lock()
        && let Some(scope) = slot.as_ref().and_then(|h| h.runner_status())
    {
        v["scope"] = scope;
    }
    if let Some(p) = j.payments_json() {
        v["payments"] = p;
    }
    if let Some(m) = j.media() {
        use std::sync::atomic::Ordering::Relaxed;
        v["frames_in"] = m.counters.frames_in.load(Relaxed).into();
        v["frames_out"] = m.counters.frames_out.load(Relaxed).into();
        let stale = j.dropped_stale.load(Relaxed);
        v["frames_dropped"] = (m.counters.dropped_lag.load(Relaxed)
            + m.counters.dropped_invalid.load(Relaxed)
            + stale)
            .into();
        v["frames_dropped_stale_seq"] = stale.into();
        v["input_source"] = j.input_holder().map(InputSource::label).into();
        if let Some(last) = j.seq.lock().unwrap_or_else(|p| p.into_inner()).last() {
            v["last_seq"] = last.into();
        }
    }
}

/// `DELETE /stop-job/{id}`.
pub(crate) async fn stop_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
) -> Result<Json<Value>, ApiError> {
    stop_for_caller(&s, owner, &id).await?;
    Ok(Json(json!({ "status": "stopped", "job_id": id })))
}

/// Stops the caller's live job `id` (shared with Family B).
pub(crate) async fn stop_for_caller(s: &AppState, owner: Owner, id: &str) -> Result<(), ApiError> {
    let j =
        s.0.registry
            .get(id, owner)
            .ok_or_else(ApiError::not_found)?;
    s.stop_job(&j).await;
    Ok(())
}

/// Sends a control message to a job.
pub(crate) async fn send_control(j: &Job, msg: &Value) -> Result<(), ApiError> {
    deliver(j, Outgoing::Message(msg)).await
}

/// Sends a parameter update in the runner's own format (the gateway shapes it).
pub(crate) async fn send_params(j: &Job, params: Value) -> Result<(), ApiError> {
    deliver(j, Outgoing::Params(params)).await
}

/// What goes onto a job's control channel.
enum Outgoing<'a> {
    /// A message sent as it is.
    Message(&'a Value),
    /// Parameters, shaped for the runner by the job handle.
    Params(Value),
}

async fn deliver(j: &Job, out: Outgoing<'_>) -> Result<(), ApiError> {
    if !j.has_control {
        return Err(ApiError::bad_request("Job has no control channel"));
    }
    let guard = j.handle.lock().await;
    let Some(h) = guard.as_ref() else {
        return Err(ApiError::new(axum::http::StatusCode::GONE, "job has ended"));
    };
    let sent = match out {
        Outgoing::Message(m) => h.control(m).await,
        Outgoing::Params(p) => h.update_params(p).await,
    };
    sent.map_err(|e| ApiError::new(axum::http::StatusCode::GONE, e.to_string()))
}

/// `POST /job/{id}/control` with `{"message": {...}}`.
pub(crate) async fn control(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let j = lookup(&s, &id, owner)?;
    let body = json_object(&headers, body, false, s.0.config.max_json_bytes)?.unwrap_or_default();
    let msg = match body.get("message") {
        Some(m @ Value::Object(_)) => m.clone(),
        _ => return Err(ApiError::bad_request("message must be a JSON object")),
    };
    send_control(&j, &msg).await?;
    Ok(Json(json!({ "status": "sent", "job_id": id })))
}

/// `GET /job/{id}/events` (key in a header or `?api_key=`).
pub(crate) async fn events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    QueryCaller(owner): QueryCaller,
) -> Result<Response, ApiError> {
    let j = lookup(&s, &id, owner)?;
    Ok(crate::sse::events(&s, j).into_response())
}
