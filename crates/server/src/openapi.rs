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

/// Responses of the job-start routes besides 200: limits and the per-address start rate.
fn start_op(summary: &str, tag: &str, ok: &str) -> Value {
    let mut v = op(summary, tag, ok);
    v["description"] = json!(
        "Rate-limited per client address (token bucket: start_rate_per_ip per second, bursts \
         of start_burst_per_ip) and limited in concurrent jobs per key, per client address \
         (max_jobs_per_ip) and in total. The client address is the TCP peer, or for a peer \
         listed in trusted_proxies the right-most untrusted X-Forwarded-For entry."
    );
    v["responses"]["429"] = json!({
        "description": "a limit was reached; rate-limit answers carry Retry-After (seconds) \
            and retry_after_secs",
        "headers": { "Retry-After": { "schema": { "type": "integer", "minimum": 1 } } },
        "content": { "application/json": {
            "schema": { "$ref": "#/components/schemas/Error" } } }
    });
    v
}

fn id_param() -> Value {
    json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }])
}

/// Adds the `seq` query parameter and the 200 body schema to the publish operation.
fn publish_op(mut v: Value) -> Value {
    v["description"] = json!(
        "seq, when given, is the client's frame number. Concurrent posts may arrive out of \
         order: a frame whose seq is not above the highest already accepted for the stream \
         is not encoded (it would go back in time); it is answered 200 with status skipped \
         and counted in frames_dropped (reason stale_seq). Without seq every frame is fed."
    );
    v["parameters"] = json!([{ "name": "seq", "in": "query", "required": false,
        "schema": { "type": "integer", "minimum": 0, "maximum": u64::MAX } }]);
    v["responses"]["200"]["content"] = json!({ "application/json": { "schema": {
        "type": "object", "required": ["status"], "properties": {
            "status": { "type": "string", "enum": ["ok", "skipped"] },
            "reason": { "type": "string", "enum": ["stale_seq"] },
            "seq": { "type": "integer", "minimum": 0 },
            "last_seq": { "type": "integer", "minimum": 0 }
        } } } });
    v["responses"]["400"] = json!({ "description": "seq is not a non-negative integer, or \
        the body is not a JPEG", "content": { "application/json": {
            "schema": { "$ref": "#/components/schemas/Error" } } } });
    v
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
            let mut params = id_param();
            if let (Some(all), Some(Value::Array(own))) =
                (params.as_array_mut(), v.get("parameters").cloned())
            {
                all.extend(own);
            }
            v["parameters"] = params;
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
            start_op(
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
            start_op(
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
        publish_op(with_body(
            op(
                "Publish one JPEG frame (410 when the \
        stream has ended)",
                "streams",
                "{status: ok, seq?} when fed; {status: skipped, reason: stale_seq, seq, \
                 last_seq} when seq is not above the highest accepted for the stream",
            ),
            "image/jpeg",
            jpeg,
        )),
    );
    add(
        "/stream/{id}/api",
        "post",
        with_body(
            op(
                "A raw request to the Scope runner's own API ({method, path: /api/..., \
        body?}), answered with its api_response",
                "streams",
                "{type: api_response, status, data}",
            ),
            "application/json",
            json!({ "type": "object", "required": ["path"], "properties": {
                "method": { "type": "string", "enum": ["GET", "POST", "PATCH", "DELETE"] },
                "path": { "type": "string", "pattern": "^/api/" },
                "body": {} } }),
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
                    "retry_after_secs": { "type": "integer",
                        "description": "with 429 from a rate limit: the Retry-After value" },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_seq_and_the_start_limits() {
        let d = document();
        let publish = &d["paths"]["/stream/{id}/publish"]["post"];
        let names: Vec<&str> = publish["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["id", "seq"]);
        assert_eq!(
            publish["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["reason"]
                ["enum"][0],
            "stale_seq"
        );
        for path in ["/start-job", "/stream/start"] {
            let r = &d["paths"][path]["post"]["responses"]["429"];
            assert!(r["headers"]["Retry-After"].is_object(), "{path}");
        }
    }
}
