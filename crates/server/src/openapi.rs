//! `GET /openapi.json`: the OpenAPI 3.1 description of both API families.

use axum::Json;
use serde_json::{Value, json};

fn op(summary: &str, tag: &str, ok: &str) -> Value {
    json!({
        "summary": summary,
        "tags": [tag],
        "responses": {
            "200": { "description": ok },
            "401": { "$ref": "#/components/responses/Error" },
            "404": { "$ref": "#/components/responses/Error" }
        }
    })
}

fn with_body(mut v: Value, media: &str, schema: Value) -> Value {
    v["requestBody"] = json!({ "content": { media: { "schema": schema } } });
    v
}

fn id_param() -> Value {
    json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }])
}

/// The document.
pub(crate) fn document() -> Value {
    let start = json!({ "$ref": "#/components/schemas/StartRequest" });
    let params = json!({ "type": "object", "additionalProperties": true });
    let message = json!({ "type": "object", "required": ["message"],
        "properties": { "message": { "type": "object" } } });
    let jpeg = json!({ "type": "string", "format": "binary" });
    let mut paths = serde_json::Map::new();
    let mut add = |path: &str, method: &str, mut v: Value| {
        if path.contains("{id}") {
            v["parameters"] = id_param();
        }
        let e = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        e[method] = v;
    };
    add(
        "/health",
        "get",
        op(
            "Service health (no key)",
            "ops",
            "status, active_jobs, version",
        ),
    );
    add(
        "/metrics",
        "get",
        op("Prometheus metrics", "ops", "text exposition"),
    );
    add(
        "/jobs",
        "get",
        op("The caller's jobs", "jobs", "array of job summaries"),
    );
    add(
        "/start-job",
        "post",
        with_body(
            op(
                "Start a job",
                "jobs",
                "job_id, model_id, flow, publish_url, subscribe_url, control_url, events_url",
            ),
            "application/json",
            start.clone(),
        ),
    );
    add(
        "/job/{id}",
        "get",
        op("A job", "jobs", "job detail with phase"),
    );
    add(
        "/stop-job/{id}",
        "delete",
        op("Stop a job", "jobs", "{status: stopped, job_id}"),
    );
    add(
        "/job/{id}/control",
        "post",
        with_body(
            op("Send a control message", "jobs", "{status: sent, job_id}"),
            "application/json",
            message,
        ),
    );
    add(
        "/job/{id}/events",
        "get",
        op(
            "Job events (SSE; key may be ?api_key=)",
            "jobs",
            "text/event-stream",
        ),
    );
    add(
        "/ws/stream",
        "get",
        op(
            "WebSocket: JPEG frames in, processed JPEG frames out \
        (?job_id=&api_key=&meta=1); close codes 4001, 4004, 4008, 1009",
            "jobs",
            "upgrade",
        ),
    );
    add(
        "/stream/start",
        "post",
        with_body(
            op(
                "Start a stream",
                "streams",
                "stream_id, model_id, flow and URLs",
            ),
            "application/json",
            start,
        ),
    );
    add(
        "/stream/{id}/status",
        "get",
        op(
            "Stream status",
            "streams",
            "{stream_id, phase: connecting|ready|running|error|stopped}",
        ),
    );
    add(
        "/stream/{id}/frame",
        "get",
        op(
            "Newest processed frame (204 when none yet)",
            "streams",
            "image/jpeg",
        ),
    );
    add(
        "/stream/{id}/publish",
        "post",
        with_body(
            op(
                "Publish one JPEG frame (410 when the \
        stream has ended)",
                "streams",
                "{status: ok}",
            ),
            "image/jpeg",
            jpeg,
        ),
    );
    add(
        "/stream/{id}/control",
        "post",
        with_body(
            op(
                "Update parameters (wrapped as \
        {type: parameters, params} for Scope runners, sent as-is to LV2V runners)",
                "streams",
                "{status: sent}",
            ),
            "application/json",
            params,
        ),
    );
    add(
        "/stream/{id}/stop",
        "post",
        op("Stop a stream", "streams", "{status: stopped, stream_id}"),
    );
    add(
        "/stream/{id}/events",
        "get",
        op("Stream events (SSE)", "streams", "text/event-stream"),
    );
    add(
        "/streams",
        "get",
        op("The caller's streams", "streams", "{streams: [...]}"),
    );
    json!({
        "openapi": "3.1.0",
        "info": { "title": "lpgw gateway service", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
                "bearer": { "type": "http", "scheme": "bearer" },
                "queryKey": { "type": "apiKey", "in": "query", "name": "api_key" }
            },
            "schemas": {
                "StartRequest": { "type": "object", "properties": {
                    "model_id": { "type": "string" },
                    "params": { "type": "object" },
                    "request_id": { "type": "string" },
                    "stream_id": { "type": "string" },
                    "orchestrator_url": { "type": "string",
                        "description": "honoured only for hosts on the operator's allow-list" }
                }},
                "Error": { "type": "object", "required": ["error"], "properties": {
                    "error": { "type": "string" },
                    "rejections": { "type": "array", "items": { "type": "object",
                        "properties": { "url": { "type": "string" }, "reason": { "type": "string" } } } }
                }}
            },
            "responses": {
                "Error": { "description": "error", "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        },
        "security": [{ "apiKey": [] }, { "bearer": [] }]
    })
}

pub(crate) async fn openapi() -> Json<Value> {
    Json(document())
}
