//! The HTTP routes, split by resource: [`jobs`] (Family A, the SDK-service wrapper's job
//! API), [`streams`] (Family B, the Daydream stream API), [`ops`] (health, metrics, the
//! OpenAPI document); the WebSocket and SSE handlers live in `ws` and `sse`. Both families
//! share one job registry: a stream is a job. Bodies are the serde types of [`types`], from
//! which [`openapi`] derives `/openapi.json`.

pub(crate) mod jobs;
pub(crate) mod openapi;
pub(crate) mod ops;
pub(crate) mod responses;
pub(crate) mod streams;
pub(crate) mod types;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use serde_json::Value;

use crate::arbiter::InputSource;
use crate::auth::Owner;
use crate::backend::StartSpec;
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::extract::{caller, json_body};
use crate::job::Job;
use crate::service::AppState;
use types::{MediaProgress, Progress, Spend, StartRequest};

/// Every API route (the browser app's are in `web`).
pub(crate) fn api() -> Router<AppState> {
    Router::new()
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        // Family A.
        .route("/jobs", get(jobs::list))
        .route("/start-job", post(jobs::start))
        .route("/job/{id}", get(jobs::detail))
        .route("/stop-job/{id}", delete(jobs::stop))
        .route("/job/{id}/control", post(jobs::control))
        .route("/job/{id}/events", get(jobs::events))
        .route("/ws/stream", get(crate::ws::stream))
        // Family B.
        .route("/stream/start", post(streams::start))
        .route("/stream/{id}/status", get(streams::status))
        .route("/stream/{id}/frame", get(streams::frame))
        .route("/stream/{id}/publish", post(streams::publish))
        .route("/stream/{id}/control", post(streams::control))
        .route("/stream/{id}/api", post(streams::api))
        .route("/stream/{id}/stop", post(streams::stop))
        .route("/stream/{id}/events", get(streams::events))
        .route("/streams", get(streams::list))
}

/// Starts a job for the caller at client address `ip` from an optional JSON request body
/// (both families). The start rate is checked first, before the key, so a flood of bad
/// requests is throttled too.
pub(crate) async fn start_from_request(
    s: &AppState,
    ip: ClientIp,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Arc<Job>, ApiError> {
    s.check_start_rate(ip.0)?;
    let owner = caller(s, headers, None, false)?;
    let req: StartRequest =
        json_body(headers, body, true, s.0.config.max_json_bytes)?.unwrap_or_default();
    let spec = StartSpec {
        model_id: req
            .model_id
            .unwrap_or_else(|| s.0.config.default_model.clone()),
        params: req.params.map(Value::Object),
        request_id: req.request_id,
        stream_id: req.stream_id,
        orchestrator_url: req.orchestrator_url,
        // Set by the service at start, from the caller's key.
        wallet: lpgw_gateway::Wallet::default(),
    };
    s.start_job(owner, ip.0, spec).await
}

/// The caller's live job `id`, marked as used.
pub(crate) fn lookup(s: &AppState, id: &str, owner: Owner) -> Result<Arc<Job>, ApiError> {
    let job =
        s.0.registry
            .get(id, owner)
            .ok_or_else(ApiError::not_found)?;
    job.touch();
    Ok(job)
}

/// Stops the caller's live job `id`.
pub(crate) async fn stop_for_caller(s: &AppState, owner: Owner, id: &str) -> Result<(), ApiError> {
    let j =
        s.0.registry
            .get(id, owner)
            .ok_or_else(ApiError::not_found)?;
    s.stop_job(&j).await;
    Ok(())
}

/// A job's spend for status answers: payments accepted, their value in wei and in USD at
/// the configured ETH price.
pub(crate) fn spend(s: &AppState, spend: &crate::spend::JobSpend) -> Spend {
    let (payments, wei) = spend.get();
    Spend {
        payments,
        spent_wei: wei.to_string(),
        spent_usd: s.0.spending.usd(wei),
    }
}

/// A live job's error, spend and, once media has started, its frame counters.
pub(crate) fn progress(s: &AppState, j: &Job) -> Progress {
    use std::sync::atomic::Ordering::Relaxed;
    let scope = j
        .handle
        .try_lock()
        .ok()
        .and_then(|slot| slot.as_ref().and_then(|h| h.runner_status()));
    let media = j
        .media()
        .map(|m| {
            let stale = j.dropped_stale.load(Relaxed);
            MediaProgress {
                frames_in: Some(m.counters.frames_in.load(Relaxed)),
                frames_out: Some(m.counters.frames_out.load(Relaxed)),
                frames_dropped: Some(
                    m.counters.dropped_lag.load(Relaxed)
                        + m.counters.dropped_invalid.load(Relaxed)
                        + stale,
                ),
                frames_dropped_stale_seq: Some(stale),
                input_source: Some(j.input_holder().map(InputSource::label)),
                last_seq: j.seq.lock().unwrap_or_else(|p| p.into_inner()).last(),
            }
        })
        .unwrap_or_default();
    Progress {
        error: j.error(),
        spend: spend(s, &j.spend),
        key_spend: Some(s.0.spending.owner_json(j.owner)),
        scope,
        payments: j.payments_json(),
        media,
    }
}

/// What goes onto a job's control channel.
pub(crate) enum Outgoing<'a> {
    /// A message sent as it is.
    Message(&'a Value),
    /// Parameters, shaped for the runner by the job handle.
    Params(Value),
}

/// Writes `out` on the job's control channel: 400 for a job without one, 410 once it ended.
pub(crate) async fn deliver(j: &Job, out: Outgoing<'_>) -> Result<(), ApiError> {
    if !j.has_control {
        return Err(ApiError::bad_request("Job has no control channel"));
    }
    let guard = j.handle.lock().await;
    let Some(h) = guard.as_ref() else {
        return Err(ApiError::new(StatusCode::GONE, "job has ended"));
    };
    let sent = match out {
        Outgoing::Message(m) => h.control(m).await,
        Outgoing::Params(p) => h.update_params(p).await,
    };
    sent.map_err(|e| ApiError::new(StatusCode::GONE, e.to_string()))
}
