//! Family B: the stream API of the Daydream SDK service. Same registry as Family A: a
//! stream is a job.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::arbiter::{Claim, InputSource};
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::extract::{Caller, QueryCaller, jpeg_body, json_object};
use crate::metrics::Drop;
use crate::routes_a::{
    add_progress, lookup, merge, send_params, start_from_request, stop_for_caller,
};
use crate::seq::{SeqDecision, parse_seq};
use crate::service::AppState;

fn stream_urls(id: &str) -> Value {
    json!({
        "publish_url": format!("/stream/{id}/publish"),
        "subscribe_url": format!("/ws/stream?job_id={id}"),
        "control_url": format!("/stream/{id}/control"),
        "events_url": format!("/stream/{id}/events"),
        "frame_url": format!("/stream/{id}/frame"),
    })
}

/// `POST /stream/start`.
pub(crate) async fn start(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let job = start_from_request(&s, ip, &headers, body).await?;
    Ok(Json(merge(
        json!({
            "stream_id": job.id,
            "model_id": job.model_id,
            "flow": job.flow.as_str(),
        }),
        stream_urls(&job.id),
    )))
}

/// `GET /stream/{id}/status`: live jobs and recently ended ones.
pub(crate) async fn status(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
) -> Result<Json<Value>, ApiError> {
    if let Some(j) = s.0.registry.get(&id, owner) {
        j.touch();
        let mut v = json!({
            "stream_id": j.id,
            "phase": j.phase().as_str(),
            "model_id": j.model_id,
            "flow": j.flow.as_str(),
            "created_at": j.created_at,
            "orchestrator_url": j.orchestrator_url,
            "media_started": j.media().is_some(),
        });
        add_progress(&s, &mut v, &j);
        return Ok(Json(v));
    }
    let t =
        s.0.registry
            .tombstone(&id, owner)
            .ok_or_else(ApiError::not_found)?;
    let mut v = json!({
        "stream_id": id,
        "phase": t.phase.as_str(),
        "model_id": t.model_id,
        "flow": t.flow.as_str(),
        "created_at": t.created_at,
    });
    if let Some(e) = t.error {
        v["error"] = e.into();
    }
    v["spend"] = crate::routes_a::spend_json(&s, &t.spend);
    Ok(Json(v))
}

/// `GET /stream/{id}/frame`: the newest processed frame, 204 when none yet.
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
pub(crate) async fn publish(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
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
        return Ok(Json(json!({ "status": "ok" })));
    };
    // Decided and fed under the stream's gate lock: one winner per number, and accepted
    // frames reach the encoder in number order. `push_jpeg` does not block.
    let mut gate = j.seq.lock().unwrap_or_else(|p| p.into_inner());
    match gate.offer(seq) {
        SeqDecision::Accept => {
            media.push_jpeg(body, None);
            Ok(Json(json!({ "status": "ok", "seq": seq })))
        }
        SeqDecision::Stale { last } => {
            drop(gate);
            j.dropped_stale
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.0.metrics.dropped(Drop::StaleSeq, 1);
            Ok(Json(json!({
                "status": "skipped",
                "reason": "stale_seq",
                "seq": seq,
                "last_seq": last,
            })))
        }
    }
}

/// `POST /stream/{id}/control`: a JSON object of parameters, wrapped for the runner.
pub(crate) async fn control(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let j = lookup(&s, &id, owner)?;
    let params = json_object(&headers, body, false, s.0.config.max_json_bytes)?.unwrap_or_default();
    send_params(&j, Value::Object(params)).await?;
    Ok(Json(json!({ "status": "sent", "stream_id": id })))
}

/// `POST /stream/{id}/api` with `{"method": "GET", "path": "/api/v1/...", "body"?: {...}}`:
/// a raw request to a Scope runner's own API, answered with the runner's `api_response`.
pub(crate) async fn api(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let j = lookup(&s, &id, owner)?;
    let b = json_object(&headers, body, true, s.0.config.max_json_bytes)?.unwrap_or_default();
    let method = b.get("method").and_then(Value::as_str).unwrap_or("GET");
    if !matches!(method, "GET" | "POST" | "PATCH" | "DELETE") {
        return Err(ApiError::bad_request(
            "method must be GET, POST, PATCH or DELETE",
        ));
    }
    let path = b
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| p.starts_with("/api/") && !p.chars().any(char::is_control))
        .ok_or_else(|| ApiError::bad_request("path must be a runner API path (/api/...)"))?;
    let guard = j.handle.lock().await;
    let Some(h) = guard.as_ref() else {
        return Err(ApiError::new(StatusCode::GONE, "stream has ended"));
    };
    let answer = h
        .api(method, path, b.get("body").cloned())
        .await
        .map_err(|e| match e {
            lpgw_gateway::Error::Config(m) => ApiError::bad_request(m),
            e => ApiError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        })?;
    Ok(Json(answer))
}

/// `POST /stream/{id}/stop`.
pub(crate) async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(owner): Caller,
) -> Result<Json<Value>, ApiError> {
    stop_for_caller(&s, owner, &id).await?;
    Ok(Json(json!({ "status": "stopped", "stream_id": id })))
}

/// `GET /stream/{id}/events`.
pub(crate) async fn events(
    state: State<AppState>,
    id: Path<String>,
    owner: QueryCaller,
) -> Result<Response, ApiError> {
    crate::routes_a::events(state, id, owner).await
}

/// `GET /streams`: the caller's streams.
pub(crate) async fn list(
    State(s): State<AppState>,
    Caller(owner): Caller,
) -> Result<Json<Value>, ApiError> {
    let streams: Vec<Value> =
        s.0.registry
            .list(owner)
            .iter()
            .map(|j| {
                let (_, wei) = j.spend.get();
                json!({
                    "stream_id": j.id,
                    "model_id": j.model_id,
                    "flow": j.flow.as_str(),
                    "phase": j.phase().as_str(),
                    "created_at": j.created_at,
                    "spent_wei": wei.to_string(),
                    "spent_usd": s.0.spending.usd(wei),
                })
            })
            .collect();
    Ok(Json(json!({ "streams": streams })))
}
