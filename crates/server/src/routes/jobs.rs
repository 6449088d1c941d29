//! Family A: the job API of the SDK-service web wrapper.
//!
//! The URLs handed back (`publish_url`, `subscribe_url`, `control_url`, `events_url`) are
//! this service's own routes for the job, not the orchestrator's trickle channels: those are
//! bearer capabilities that would let a caller bypass the gateway's keys and limits.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::responses::{Body, Ended, Keyed, Owned, StartFailures};
use super::types::{
    ControlRequest, Done, ErrorBody, JobAck, JobDetail, JobStarted, JobSummary, JobUrls, SseEvent,
    StartRequest,
};
use super::{Outgoing, deliver, lookup, progress, start_from_request, stop_for_caller};
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::extract::{Caller, QueryCaller, json_body};
use crate::job::Job;
use crate::service::AppState;

/// `POST /start-job`.
#[utoipa::path(post, path = "/start-job", tag = "jobs",
    description = "Starts a job. Rate-limited per client address (a token bucket: \
        start_rate_per_ip per second, bursts of start_burst_per_ip) and limited in concurrent \
        jobs per key, per client address (max_jobs_per_ip) and in total. The client address \
        is the TCP peer, or for a peer listed in trusted_proxies the right-most untrusted \
        X-Forwarded-For entry.",
    request_body(content = Option<StartRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "started", body = JobStarted),
        StartFailures,
    ))]
pub(crate) async fn start(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JobStarted>, ApiError> {
    let job = start_from_request(&s, ip, &headers, body).await?;
    Ok(Json(JobStarted {
        job_id: job.id.clone(),
        model_id: job.model_id.clone(),
        flow: job.flow,
        urls: JobUrls::of(&job.id),
    }))
}

pub(crate) fn summary(s: &AppState, j: &Job) -> JobSummary {
    let (_, wei) = j.spend.get();
    JobSummary {
        job_id: j.id.clone(),
        model_id: j.model_id.clone(),
        flow: j.flow,
        created_at: j.created_at,
        orchestrator_url: j.orchestrator_url.clone(),
        media_started: j.media().is_some(),
        phase: j.phase(),
        spent_wei: wei.to_string(),
        spent_usd: s.0.spending.usd(wei),
    }
}

/// `GET /jobs`: the caller's jobs only.
#[utoipa::path(get, path = "/jobs", tag = "jobs",
    responses(
        (status = 200, description = "the caller's live jobs", body = Vec<JobSummary>),
        Keyed,
    ))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Caller(owner): Caller,
) -> Json<Vec<JobSummary>> {
    Json(
        s.0.registry
            .list(owner)
            .iter()
            .map(|j| summary(&s, j))
            .collect(),
    )
}

/// `GET /job/{id}`.
#[utoipa::path(get, path = "/job/{id}", tag = "jobs",
    params(("id" = String, Path, description = "the job id")),
    responses(
        (status = 200, description = "the job", body = JobDetail),
        Owned,
    ))]
pub(crate) async fn detail(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
) -> Result<Json<JobDetail>, ApiError> {
    let j = lookup(&s, &id, owner)?;
    Ok(Json(JobDetail {
        summary: summary(&s, &j),
        urls: JobUrls::of(&j.id),
        has_payment_session: j.has_payment_session,
        progress: progress(&s, &j),
    }))
}

/// `DELETE /stop-job/{id}`.
#[utoipa::path(delete, path = "/stop-job/{id}", tag = "jobs",
    params(("id" = String, Path, description = "the job id")),
    responses(
        (status = 200, description = "stopped: payments, session and channels", body = JobAck),
        Owned,
    ))]
pub(crate) async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
) -> Result<Json<JobAck>, ApiError> {
    stop_for_caller(&s, owner, &id).await?;
    Ok(Json(JobAck {
        status: Done::Stopped,
        job_id: id,
    }))
}

/// `POST /job/{id}/control` with `{"message": {...}}`.
#[utoipa::path(post, path = "/job/{id}/control", tag = "jobs",
    params(("id" = String, Path, description = "the job id")),
    request_body(content = ControlRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "written on the control channel", body = JobAck),
        Owned,
        Ended,
        Body,
        (status = 400, description = "a malformed body, or a job without a control channel", body = ErrorBody),
    ))]
pub(crate) async fn control(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JobAck>, ApiError> {
    let j = lookup(&s, &id, owner)?;
    let req: ControlRequest = json_body(&headers, body, false, s.0.config.max_json_bytes)?
        .ok_or_else(|| ApiError::bad_request("a JSON body is required"))?;
    deliver(&j, Outgoing::Message(&Value::Object(req.message))).await?;
    Ok(Json(JobAck {
        status: Done::Sent,
        job_id: id,
    }))
}

/// `GET /job/{id}/events` (key in a header or `?api_key=`).
#[utoipa::path(get, path = "/job/{id}/events", tag = "jobs",
    description = "Server-sent events: the job's progress, the runner's events, and its end. \
        Browsers' EventSource cannot set headers, so the key may come as ?api_key=.",
    params(
        ("id" = String, Path, description = "the job id"),
        ("api_key" = Option<String>, Query, description = "the key, when no header carries one"),
    ),
    responses(
        (status = 200, description = "an event stream", content_type = "text/event-stream", body = SseEvent),
        Owned,
    ))]
pub(crate) async fn events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    QueryCaller(owner): QueryCaller,
) -> Result<Response, ApiError> {
    let j = lookup(&s, &id, owner)?;
    Ok(crate::sse::events(&s, j).into_response())
}
