//! Runner callbacks (server/ai_http.go:593-730): session channels, proxies and stop, each
//! authorized by the session's `Livepeer-Session-Token`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::Live;
use super::advert;
use super::registry::check_batch;
use super::reply::{err, header, unsupported};
use crate::respond::{json_ok, plain_error};

/// Admits a runner callback: live runners must be on (else 404) and the request must carry
/// the session's `Livepeer-Session-Token`. The error is the response to send
/// (boxed: a response is large).
fn admit(
    live: &Live,
    rid: &str,
    sid: &str,
    headers: &HeaderMap,
    now: Instant,
) -> Result<(), Box<Response>> {
    if !live.cfg.enabled {
        return Err(Box::new(unsupported()));
    }
    let token = header(headers, "Livepeer-Session-Token");
    live.reg()
        .authorize(rid, sid, token, now)
        .map_err(|e| Box::new(err(&e)))
}

/// A callback's JSON body; a body that does not parse is a 400 with the parser's message.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(plain_error(StatusCode::BAD_REQUEST, &e.to_string())))
}

/// [`admit`] then [`parse`]: the start of every callback that carries a JSON body.
fn admit_json<T: serde::de::DeserializeOwned>(
    live: &Live,
    rid: &str,
    sid: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: Instant,
) -> Result<T, Box<Response>> {
    admit(live, rid, sid, headers, now)?;
    parse(body)
}

pub(super) async fn runner_stop(
    State(live): State<Arc<Live>>,
    Path((rid, sid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&live, &rid, &sid, &headers, Instant::now()) {
        return *r;
    }
    live.release(&rid, &sid);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(serde::Deserialize)]
struct ChannelReq {
    #[serde(default)]
    name: String,
    #[serde(default)]
    mime_type: String,
}

#[derive(serde::Deserialize)]
struct ChannelsReq {
    #[serde(default)]
    channels: Vec<ChannelReq>,
}

#[derive(serde::Deserialize)]
struct DeleteReq {
    #[serde(default)]
    channels: Vec<String>,
}

pub(super) async fn create_channels(
    State(live): State<Arc<Live>>,
    Path((rid, sid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let req: ChannelsReq = match admit_json(&live, &rid, &sid, &headers, &body, now) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if let Err(e) = check_batch(req.channels.len()) {
        return err(&e);
    }
    let wanted: Vec<(String, String)> = req
        .channels
        .into_iter()
        .map(|c| (c.name, c.mime_type))
        .collect();
    let made = live
        .reg()
        .create_channels(&rid, &sid, &wanted, now, |n, m| {
            live.session_channel(&sid, n, m)
        });
    match made {
        Ok((out, created)) => {
            for c in created {
                live.orch
                    .trickle
                    .create_channel(&c.channel_name, &c.mime_type);
            }
            json_ok(&json!({ "channels": out }))
        }
        Err(e) => err(&e),
    }
}

pub(super) async fn delete_channels(
    State(live): State<Arc<Live>>,
    Path((rid, sid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let req: DeleteReq = match admit_json(&live, &rid, &sid, &headers, &body, now) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let deleted = live.reg().delete_channels(&rid, &sid, &req.channels, now);
    match deleted {
        Ok((_, trickle)) => {
            for c in trickle {
                live.orch.trickle.delete_channel(&c);
            }
            json_ok(&json!({ "deleted": req.channels }))
        }
        Err(e) => err(&e),
    }
}

pub(super) async fn create_proxy(
    State(live): State<Arc<Live>>,
    Path((rid, sid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    if let Err(r) = admit(&live, &rid, &sid, &headers, now) {
        return *r;
    }
    let target = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        match parse::<Value>(&body) {
            Ok(v) => v
                .get("target_url")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string(),
            Err(r) => return *r,
        }
    };
    let runner_url = match live.reg().get(&rid, now) {
        Ok(r) => r.advert.runner_url.clone(),
        Err(e) => return err(&e),
    };
    let target = if target.is_empty() {
        runner_url
    } else {
        let host = |u: &str| {
            u.split_once("://")
                .map(|(_, r)| r.split(['/', '?', '#']).next().unwrap_or(""))
                .map(|h| {
                    h.rsplit_once(':')
                        .map_or(h, |(h, _)| h)
                        .to_ascii_lowercase()
                })
        };
        if !advert::valid_runner_url(&target) || target.contains('#') {
            return plain_error(StatusCode::BAD_REQUEST, "invalid target_url");
        }
        if host(&target) != host(&runner_url) {
            return plain_error(
                StatusCode::BAD_REQUEST,
                "target_url hostname must match registered runner_url hostname",
            );
        }
        target
    };
    let added = live.reg().add_proxy(&rid, &sid, target, now);
    match added {
        Ok(id) => json_ok(&json!({
            "proxy_id": id,
            "url": format!("{}/run/{id}", live.orch.service_uri),
        })),
        Err(e) => err(&e),
    }
}
