//! The `api` control message (livepeer_app.py:696-893) against the embedded Scope app, as
//! plain data: pipeline load, status and schemas, restart, and FastAPI's answers to
//! everything else.

use std::time::Instant;

use serde_json::{Value, json};

use super::pipelines::{self, LoadEntry, LoadKnobs, Pipelines};
use super::protocol::LogRecord;

/// What an `api` message leads to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Answer with this `api_response`.
    Answer(Value),
    /// Answer, then restart the runner process.
    Restart(Value),
}

/// An `api_response` carrying `data`.
fn data(rid: &Value, status: u16, data: Value) -> Value {
    json!({"type": "api_response", "request_id": rid, "status": status, "data": data})
}

/// The path without its query and trailing slash, percent-decoded where it is ASCII.
fn normalized(path: &str) -> String {
    let p = path.split(['?', '#']).next().unwrap_or("");
    let mut out = Vec::with_capacity(p.len());
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    let s = String::from_utf8_lossy(&out).into_owned();
    let t = s.trim_end_matches('/');
    if t.is_empty() { "/".into() } else { t.into() }
}

/// One FastAPI validation error entry.
fn invalid(kind: &str, loc: Value, msg: &str, input: &Value) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg, "input": input})
}

/// `PipelineLoadRequest` (schema.py:486-533): the entries to load, or the error answer.
pub(crate) fn parse_load(body: Option<&Value>) -> Result<Vec<LoadEntry>, (u16, Value)> {
    let unprocessable = |errs: Vec<Value>| (422, json!({ "detail": errs }));
    let Some(body) = body.filter(|b| !b.is_null()) else {
        return Err(unprocessable(vec![invalid(
            "missing",
            json!(["body"]),
            "Field required",
            &Value::Null,
        )]));
    };
    if !body.is_object() {
        return Err(unprocessable(vec![invalid(
            "model_attributes_type",
            json!(["body"]),
            "Input should be a valid dictionary or object to extract fields from",
            body,
        )]));
    }
    let mut errs = Vec::new();
    let mut entries = Vec::new();
    let load_params = body.get("load_params").cloned().unwrap_or(Value::Null);
    match body.get("pipelines") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, e) in list.iter().enumerate() {
                if !e.is_object() {
                    errs.push(invalid(
                        "model_type",
                        json!(["body", "pipelines", i]),
                        "Input should be a valid dictionary or instance of PipelineLoadItem",
                        e,
                    ));
                    continue;
                }
                let mut field = |k: &str| match e.get(k) {
                    Some(Value::String(s)) => Some(s.clone()),
                    None | Some(Value::Null) => {
                        errs.push(invalid(
                            "missing",
                            json!(["body", "pipelines", i, k]),
                            "Field required",
                            e,
                        ));
                        None
                    }
                    Some(other) => {
                        errs.push(invalid(
                            "string_type",
                            json!(["body", "pipelines", i, k]),
                            "Input should be a valid string",
                            other,
                        ));
                        None
                    }
                };
                let (node, pid) = (field("node_id"), field("pipeline_id"));
                if let (Some(node_id), Some(pipeline_id)) = (node, pid) {
                    entries.push(LoadEntry {
                        node_id,
                        pipeline_id,
                        load_params: e.get("load_params").cloned().unwrap_or(Value::Null),
                    });
                }
            }
        }
        Some(other) => errs.push(invalid(
            "list_type",
            json!(["body", "pipelines"]),
            "Input should be a valid list",
            other,
        )),
    }
    let mut legacy = Vec::new();
    match body.get("pipeline_ids") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                match v.as_str() {
                    Some(s) => legacy.push(s.to_string()),
                    None => errs.push(invalid(
                        "string_type",
                        json!(["body", "pipeline_ids", i]),
                        "Input should be a valid string",
                        v,
                    )),
                }
            }
        }
        Some(other) => errs.push(invalid(
            "list_type",
            json!(["body", "pipeline_ids"]),
            "Input should be a valid list",
            other,
        )),
    }
    if !errs.is_empty() {
        return Err(unprocessable(errs));
    }
    if entries.is_empty() {
        entries = legacy
            .into_iter()
            .map(|pid| LoadEntry {
                node_id: pid.clone(),
                pipeline_id: pid,
                load_params: load_params.clone(),
            })
            .collect();
    }
    if entries.is_empty() {
        return Err((
            400,
            json!({"detail": "Either 'pipelines' or 'pipeline_ids' must be provided"}),
        ));
    }
    Ok(entries)
}

/// The httpx line LA logs for every in-process call.
fn httpx(method: &str, path: &str, status: u16) -> LogRecord {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    LogRecord::info(
        "httpx",
        format!("HTTP Request: {method} http://runner{path} \"HTTP/1.1 {status} {reason}\""),
    )
}

/// Handles one `api` message against `pipelines` at `now`.
pub(crate) fn handle(
    msg: &Value,
    pipelines: &mut Pipelines,
    now: Instant,
    knobs: LoadKnobs,
) -> (Outcome, Vec<LogRecord>) {
    let rid = msg.get("request_id").cloned().unwrap_or(Value::Null);
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let path = msg.get("path").and_then(Value::as_str).unwrap_or("");
    if !matches!(method.as_str(), "GET" | "POST" | "PATCH" | "DELETE") {
        let answer = json!({"type": "api_response", "request_id": rid, "status": 400,
            "error": format!("Unsupported method: {method}")});
        return (Outcome::Answer(answer), Vec::new());
    }
    let body = match method.as_str() {
        "GET" | "DELETE" => None,
        _ => msg.get("body"),
    };
    let mut logs = Vec::new();
    let (status, value, restart) = match (method.as_str(), normalized(path).as_str()) {
        ("POST", "/api/v1/pipeline/load") => match parse_load(body) {
            Ok(entries) => {
                logs.extend(pipelines.load(&entries, now, knobs));
                (
                    200,
                    json!({"message": "Pipeline loading initiated successfully"}),
                    false,
                )
            }
            Err((s, v)) => (s, v, false),
        },
        ("GET", "/api/v1/pipeline/status") => {
            logs.extend(pipelines.tick(now));
            (200, pipelines.status(), false)
        }
        ("GET", "/api/v1/pipelines/schemas") => (200, pipelines::schemas(), false),
        ("POST", "/api/v1/restart") => (200, json!({"message": "Server restarting..."}), true),
        ("GET", _) => (404, json!({"detail": "Frontend not built"}), false),
        _ => (405, json!({"detail": "Method Not Allowed"}), false),
    };
    logs.push(httpx(&method, path, status));
    let answer = data(&rid, status, value);
    let outcome = if restart {
        Outcome::Restart(answer)
    } else {
        Outcome::Answer(answer)
    };
    (outcome, logs)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const KNOBS: LoadKnobs = LoadKnobs {
        delay: Duration::from_millis(300),
        fail: false,
    };

    fn call(p: &mut Pipelines, method: &str, path: &str, body: Value) -> Value {
        let msg =
            json!({"type": "api", "request_id": "r", "method": method, "path": path, "body": body});
        match handle(&msg, p, Instant::now(), KNOBS).0 {
            Outcome::Answer(v) | Outcome::Restart(v) => v,
        }
    }

    #[test]
    fn load_forms_and_errors() {
        let mut p = Pipelines::default();
        let ok = call(
            &mut p,
            "POST",
            "/api/v1/pipeline/load",
            json!({"pipeline_ids": ["gray"]}),
        );
        assert_eq!(
            ok,
            json!({"type":"api_response","request_id":"r","status":200,
                "data":{"message":"Pipeline loading initiated successfully"}})
        );
        let ok = call(
            &mut p,
            "post",
            "/api/v1/pipeline/load/",
            json!({"pipelines": [{"node_id": "g", "pipeline_id": "gray", "load_params": {"width": 64}}]}),
        );
        assert_eq!(ok["status"], 200);
        assert_eq!(p.params_of("g"), Some(&json!({"width": 64})));
        let e = call(
            &mut p,
            "POST",
            "/api/v1/pipeline/load",
            json!({"pipelines": [{"pipeline_id": "gray"}]}),
        );
        assert_eq!(e["status"], 422);
        assert_eq!(
            e["data"]["detail"][0],
            json!({"type":"missing","loc":["body","pipelines",0,"node_id"],"msg":"Field required",
                "input":{"pipeline_id":"gray"}})
        );
        for body in [
            json!({}),
            json!({"pipeline_ids": []}),
            json!({"pipelines": [], "load_params": {}}),
        ] {
            let e = call(&mut p, "POST", "/api/v1/pipeline/load", body);
            assert_eq!(
                (e["status"].as_u64(), &e["data"]),
                (
                    Some(400),
                    &json!({"detail":"Either 'pipelines' or 'pipeline_ids' must be provided"})
                )
            );
        }
        assert_eq!(
            call(&mut p, "POST", "/api/v1/pipeline/load", Value::Null)["status"],
            422
        );
    }

    #[test]
    fn other_routes() {
        let mut p = Pipelines::default();
        let s = call(&mut p, "GET", "/api/v1/pipeline/status", Value::Null);
        assert_eq!(s["data"]["status"], "not_loaded");
        let s = call(&mut p, "GET", "/api/v1/pipelines/schemas", Value::Null);
        assert!(s["data"]["pipelines"]["gray"].is_object());
        assert_eq!(
            call(&mut p, "GET", "/api/v1/nope", Value::Null)["data"],
            json!({"detail":"Frontend not built"})
        );
        let e = call(&mut p, "POST", "/api/v1/pipeline/status", Value::Null);
        assert_eq!(
            (e["status"].as_u64(), &e["data"]),
            (Some(405), &json!({"detail":"Method Not Allowed"}))
        );
        let e = call(&mut p, "PUT", "/x", Value::Null);
        assert_eq!(e["error"], "Unsupported method: PUT");
        let msg =
            json!({"type": "api", "request_id": 7, "method": "POST", "path": "/api/v1/restart"});
        let (o, logs) = handle(&msg, &mut p, Instant::now(), KNOBS);
        assert_eq!(
            o,
            Outcome::Restart(json!({"type":"api_response","request_id":7,"status":200,
                "data":{"message":"Server restarting..."}}))
        );
        assert_eq!(
            logs[0].message,
            "HTTP Request: POST http://runner/api/v1/restart \"HTTP/1.1 200 OK\""
        );
    }
}
