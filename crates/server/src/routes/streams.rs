//! Family B: the stream API of the Daydream SDK service. Same registry as Family A: a
//! stream is a job.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::responses::{Body, Ended, Keyed, Owned, StartFailures};
use super::types::{
    ApiRequest, Done, ErrorBody, MediaProgress, Progress, PublishStatus, Published, SkipReason,
    SseEvent, StartRequest, StreamAck, StreamList, StreamStarted, StreamStatus, StreamSummary,
    StreamUrls,
};
use super::{Outgoing, deliver, lookup, progress, spend, start_from_request, stop_for_caller};
use crate::arbiter::{Claim, InputSource};
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::extract::{Caller, QueryCaller, jpeg_body, json_body};
use crate::metrics::Drop;
use crate::seq::{SeqDecision, parse_seq};
use crate::service::AppState;

/// `POST /stream/start`.
#[utoipa::path(post, path = "/stream/start", tag = "streams",
    description = "Starts a stream; limits and rate as for POST /start-job.",
    request_body(content = Option<StartRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "started", body = StreamStarted),
        StartFailures,
    ))]
pub(crate) async fn start(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StreamStarted>, ApiError> {
    let job = start_from_request(&s, ip, &headers, body).await?;
    Ok(Json(StreamStarted {
        stream_id: job.id.clone(),
        model_id: job.model_id.clone(),
        flow: job.flow,
        urls: StreamUrls::of(&job.id),
    }))
}

/// `GET /stream/{id}/status`: live streams and recently ended ones.
#[utoipa::path(get, path = "/stream/{id}/status", tag = "streams",
    params(("id" = String, Path, description = "the stream id")),
    responses(
        (status = 200, description = "the stream; phase is connecting, ready, running, error or stopped", body = StreamStatus),
        Owned,
    ))]
pub(crate) async fn status(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
) -> Result<Json<StreamStatus>, ApiError> {
    if let Some(j) = s.0.registry.get(&id, owner) {
        j.touch();
        return Ok(Json(StreamStatus {
            stream_id: j.id.clone(),
            phase: j.phase(),
            model_id: j.model_id.clone(),
            flow: j.flow,
            created_at: j.created_at,
            orchestrator_url: Some(j.orchestrator_url.clone()),
            media_started: Some(j.media().is_some()),
            progress: progress(&s, &j),
        }));
    }
    let t =
        s.0.registry
            .tombstone(&id, owner)
            .ok_or_else(ApiError::not_found)?;
    Ok(Json(StreamStatus {
        stream_id: id,
        phase: t.phase,
        model_id: t.model_id.clone(),
        flow: t.flow,
        created_at: t.created_at,
        orchestrator_url: None,
        media_started: None,
        progress: Progress {
            error: t.error.clone(),
            spend: spend(&s, &t.spend),
            key_spend: None,
            scope: None,
            payments: None,
            media: MediaProgress::default(),
        },
    }))
}

/// `GET /stream/{id}/frame`: the newest processed frame, 204 when none yet.
#[utoipa::path(get, path = "/stream/{id}/frame", tag = "streams",
    params(("id" = String, Path, description = "the stream id")),
    responses(
        (status = 200, description = "the newest processed frame", content_type = "image/jpeg", body = Vec<u8>),
        (status = 204, description = "no processed frame yet"),
        Owned,
    ))]
pub(crate) async fn frame(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
) -> Result<Response, ApiError> {
    let j = lookup(&s, &id, owner)?;
    match j.media().and_then(|m| m.newest()) {
        Some(f) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            f.jpeg.clone(),
        )
            .into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /stream/{id}/publish?seq=N`: one JPEG frame.
///
/// `seq`, when given, is the client's frame number: a frame not above the highest number
/// already accepted for the stream would go back in time, so it is answered 200
/// `{"status":"skipped","reason":"stale_seq",...}` and counted, not encoded. Frames without
/// `seq` are always fed.
#[utoipa::path(post, path = "/stream/{id}/publish", tag = "streams",
    description = "seq, when given, is the client's frame number. Concurrent posts may arrive \
        out of order: a frame whose seq is not above the highest already accepted for the \
        stream is not encoded (it would go back in time); it is answered 200 with status \
        skipped and counted in frames_dropped (reason stale_seq). Without seq every frame is \
        fed. One input source at a time: while a WebSocket feeds the stream, 409.",
    params(
        ("id" = String, Path, description = "the stream id"),
        ("seq" = Option<u64>, Query, description = "the client's frame number"),
    ),
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    responses(
        (status = 200, description = "fed, or skipped as stale", body = Published),
        (status = 409, description = "another source holds the stream's input, or the stream has no media channels yet", body = ErrorBody),
        Owned,
        Ended,
        Body,
        (status = 400, description = "seq is not a non-negative integer, or the body is not a JPEG", body = ErrorBody),
    ))]
pub(crate) async fn publish(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Published>, ApiError> {
    let Some(j) = s.0.registry.get(&id, owner) else {
        if s.0.registry.tombstone(&id, owner).is_some() {
            return Err(ApiError::new(StatusCode::GONE, "stream no longer exists"));
        }
        return Err(ApiError::not_found());
    };
    j.touch();
    let seq = parse_seq(query.as_deref()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let body = match jpeg_body(&headers, body) {
        Ok(b) => b,
        Err(e) => {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                s.0.metrics.dropped(Drop::Oversized, 1);
            }
            return Err(e);
        }
    };
    if !crate::media::looks_like_jpeg(&body) {
        s.0.metrics.dropped(Drop::Invalid, 1);
        return Err(ApiError::bad_request("the body is not a JPEG image"));
    }
    if let Claim::Busy(holder) = j.claim_input(InputSource::Http) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the stream's input is held by {}: one source at a time",
                holder.name()
            ),
        ));
    }
    let media = s.media(&j)?;
    let Some(seq) = seq else {
        media.push_jpeg(body, None);
        return Ok(Json(Published {
            status: PublishStatus::Ok,
            reason: None,
            seq: None,
            last_seq: None,
        }));
    };
    // Decided and fed under the stream's gate lock: one winner per number, and accepted
    // frames reach the encoder in number order. `push_jpeg` does not block.
    let mut gate = j.seq.lock().unwrap_or_else(|p| p.into_inner());
    match gate.offer(seq) {
        SeqDecision::Accept => {
            media.push_jpeg(body, None);
            Ok(Json(Published {
                status: PublishStatus::Ok,
                reason: None,
                seq: Some(seq),
                last_seq: None,
            }))
        }
        SeqDecision::Stale { last } => {
            drop(gate);
            j.dropped_stale
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.0.metrics.dropped(Drop::StaleSeq, 1);
            Ok(Json(Published {
                status: PublishStatus::Skipped,
                reason: Some(SkipReason::StaleSeq),
                seq: Some(seq),
                last_seq: Some(last),
            }))
        }
    }
}

/// `POST /stream/{id}/control`: a JSON object of parameters, wrapped for the runner.
#[utoipa::path(post, path = "/stream/{id}/control", tag = "streams",
    description = "Updates parameters: sent as {type: parameters, params} to Scope runners, \
        as they are to LV2V runners.",
    params(("id" = String, Path, description = "the stream id")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "written on the control channel", body = StreamAck),
        Owned,
        Ended,
        Body,
        (status = 400, description = "a malformed body, or a stream without a control channel", body = ErrorBody),
    ))]
pub(crate) async fn control(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StreamAck>, ApiError> {
    let j = lookup(&s, &id, owner)?;
    let params: serde_json::Map<String, Value> =
        json_body(&headers, body, false, s.0.config.max_json_bytes)?.unwrap_or_default();
    deliver(&j, Outgoing::Params(Value::Object(params))).await?;
    Ok(Json(StreamAck {
        status: Done::Sent,
        stream_id: id,
    }))
}

/// `POST /stream/{id}/api` with `{"method": "GET", "path": "/api/v1/...", "body"?: {...}}`:
/// a raw request to a Scope runner's own API, answered with the runner's `api_response`.
#[utoipa::path(post, path = "/stream/{id}/api", tag = "streams",
    params(("id" = String, Path, description = "the stream id")),
    request_body(content = ApiRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the runner's api_response: {type, request_id, status, data}", body = Object),
        (status = 409, description = "the stream's runner has no API passthrough (not Scope)", body = ErrorBody),
        (status = 504, description = "the runner did not answer in time", body = ErrorBody),
        Owned,
        Ended,
        Body,
        (status = 400, description = "a malformed body, or a path outside /api/", body = ErrorBody),
    ))]
pub(crate) async fn api(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let j = lookup(&s, &id, owner)?;
    let req: ApiRequest = json_body(&headers, body, false, s.0.config.max_json_bytes)?
        .ok_or_else(|| ApiError::bad_request("a JSON body is required"))?;
    if !req.path.starts_with("/api/") || req.path.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "path must be a runner API path (/api/...)",
        ));
    }
    let guard = j.handle.lock().await;
    let Some(h) = guard.as_ref() else {
        return Err(ApiError::new(StatusCode::GONE, "stream has ended"));
    };
    let answer = h
        .api(req.method.as_str(), &req.path, req.body)
        .await
        .map_err(|e| match e {
            lpgw_gateway::Error::Config(m) => ApiError::new(StatusCode::CONFLICT, m),
            e => ApiError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        })?;
    Ok(Json(answer))
}

/// `POST /stream/{id}/stop`.
#[utoipa::path(post, path = "/stream/{id}/stop", tag = "streams",
    params(("id" = String, Path, description = "the stream id")),
    responses(
        (status = 200, description = "stopped: payments, session and channels", body = StreamAck),
        Owned,
    ))]
pub(crate) async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
) -> Result<Json<StreamAck>, ApiError> {
    stop_for_caller(&s, owner, &id).await?;
    Ok(Json(StreamAck {
        status: Done::Stopped,
        stream_id: id,
    }))
}

/// `GET /stream/{id}/events`.
#[utoipa::path(get, path = "/stream/{id}/events", tag = "streams",
    description = "Server-sent events, as GET /job/{id}/events.",
    params(
        ("id" = String, Path, description = "the stream id"),
        ("api_key" = Option<String>, Query, description = "the key, when no header carries one"),
    ),
    responses(
        (status = 200, description = "an event stream", content_type = "text/event-stream", body = SseEvent),
        Owned,
    ))]
pub(crate) async fn events(
    state: State<AppState>,
    id: Path<String>,
    owner: QueryCaller,
) -> Result<Response, ApiError> {
    super::jobs::events(state, id, owner).await
}

/// `GET /streams`: the caller's streams.
#[utoipa::path(get, path = "/streams", tag = "streams",
    responses(
        (status = 200, description = "the caller's live streams", body = StreamList),
        Keyed,
    ))]
pub(crate) async fn list(State(s): State<AppState>, Caller(owner): Caller) -> Json<StreamList> {
    let streams =
        s.0.registry
            .list(owner)
            .iter()
            .map(|j| StreamSummary::from(super::jobs::summary(&s, j)))
            .collect();
    Json(StreamList { streams })
}
