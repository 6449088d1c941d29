//! `GET /openapi.json`: the OpenAPI 3.1 document of both API families, derived (utoipa)
//! from the handlers' `#[utoipa::path]` annotations and the body types of
//! [`super::types`], then fitted to this service's configuration: the security schemes,
//! and which `orchestrator_url` values the operator allows.

use serde_json::{Value, json};
use utoipa::OpenApi;

use super::{jobs, ops, streams};
use crate::config::ServerConfig;

#[derive(OpenApi)]
#[openapi(
    info(title = "lpgw gateway service",
        description = "Family A, the job API of the SDK service (/start-job, /job/{id}, \
            /ws/stream), and Family B, the stream API (/stream/...), over one job registry."),
    paths(
        ops::health, ops::metrics, ops::openapi,
        jobs::list, jobs::start, jobs::detail, jobs::stop, jobs::control, jobs::events,
        crate::ws::stream,
        streams::start, streams::status, streams::frame, streams::publish, streams::control,
        streams::api, streams::stop, streams::events, streams::list,
    ),
    components(schemas(super::types::ErrorBody)),
    security(("apiKey" = []), ("bearer" = [])),
    tags(
        (name = "jobs", description = "Family A: jobs"),
        (name = "streams", description = "Family B: streams"),
        (name = "ops", description = "health, metrics, this document"),
    )
)]
struct ApiDoc;

/// The document for a service configured by `config`.
pub(crate) fn document(config: &ServerConfig) -> Value {
    let mut d = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    d["components"]["securitySchemes"] = json!({
        "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
        "bearer": { "type": "http", "scheme": "bearer" },
        "queryKey": { "type": "apiKey", "in": "query", "name": "api_key" }
    });
    if config.metrics_public {
        let op = &mut d["paths"]["/metrics"]["get"];
        op["security"] = json!([{}]);
        if let Some(r) = op["responses"].as_object_mut() {
            r.remove("401");
        }
    }
    let url = &mut d["components"]["schemas"]["StartRequest"]["properties"]["orchestrator_url"];
    *url = orchestrator_url_schema(&config.orchestrator_allow_list);
    d
}

/// `orchestrator_url` as this gateway accepts it: only hosts on the allow-list (an entry
/// `host` allows any port, `host:port` that port), nothing at all when the list is empty.
fn orchestrator_url_schema(allow: &[String]) -> Value {
    let hosts: Vec<String> = allow
        .iter()
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty() && !a.contains('['))
        .map(|a| {
            let (host, port) = match a.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h.to_owned(), Some(p)),
                _ => (a.clone(), None),
            };
            let host = host.replace('.', "\\.");
            match port {
                Some(p) => format!("{host}:{p}"),
                None => format!("{host}(:[1-9][0-9]{{0,3}})?"),
            }
        })
        .collect();
    if hosts.is_empty() {
        return json!({
            "description": "not accepted: this gateway allows callers to name no orchestrator",
            "not": {}
        });
    }
    json!({
        "type": ["string", "null"],
        "description": "an orchestrator on the operator's allow-list",
        "pattern": format!("^https?://({})(/[A-Za-z0-9._~-]*)*$", hosts.join("|")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        document(&ServerConfig::default())
    }

    #[test]
    fn documents_seq_and_the_start_limits() {
        let d = doc();
        let publish = &d["paths"]["/stream/{id}/publish"]["post"];
        let names: Vec<&str> = publish["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["id", "seq"]);
        let skip = &d["components"]["schemas"]["SkipReason"];
        assert!(skip.to_string().contains("stale_seq"), "{skip}");
        for path in ["/start-job", "/stream/start"] {
            let r = &d["paths"][path]["post"]["responses"]["429"];
            assert!(r["headers"]["Retry-After"].is_object(), "{path}");
        }
    }

    #[test]
    fn every_route_is_documented_with_its_errors_and_no_500() {
        let d = doc();
        let paths = d["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 19, "{:?}", paths.keys().collect::<Vec<_>>());
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let codes: Vec<&str> = op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert!(!codes.contains(&"500"), "{method} {path}: {codes:?}");
                let open = op["security"] == json!([{}]);
                if path.contains("{id}") {
                    assert!(codes.contains(&"404"), "{method} {path}: {codes:?}");
                }
                if !open && path != "/ws/stream" {
                    assert!(codes.contains(&"401"), "{method} {path}: {codes:?}");
                }
                if op.get("requestBody").is_some() {
                    assert!(codes.contains(&"413"), "{method} {path}: {codes:?}");
                }
            }
        }
        assert_eq!(d["paths"]["/health"]["get"]["security"], json!([{}]));
        assert!(d["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[test]
    fn orchestrator_url_follows_the_allow_list() {
        let closed = orchestrator_url_schema(&[]);
        assert_eq!(closed["not"], json!({}));
        let open = orchestrator_url_schema(&["o.example".into(), "127.0.0.1:8935".into()]);
        let p = open["pattern"].as_str().unwrap();
        assert!(p.contains("o\\.example(:"), "{p}");
        assert!(p.contains("127\\.0\\.0\\.1:8935"), "{p}");
    }
}
