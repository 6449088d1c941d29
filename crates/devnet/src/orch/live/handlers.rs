//! The live-runner HTTP endpoints (server/ai_http.go:139-964).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::advert::{self, Mode};
use super::paid::{reserve_paid, runner_price};
use super::registry::LiveError;
use super::reply::{err, header, unsupported};
use super::{Live, go_duration};
use crate::respond::{json_ok, plain_error};

pub(super) async fn heartbeat(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !live.cfg.enabled {
        return unsupported();
    }
    let req = match advert::parse_heartbeat(&body) {
        Ok(r) => r,
        Err(msg) => return plain_error(StatusCode::BAD_REQUEST, &msg),
    };
    let id = req.runner_id.trim().to_string();
    let id = if id.is_empty() {
        super::ids::runner_id()
    } else {
        id
    };
    let advert = match advert::normalize(req, live.priced()) {
        Ok(a) => a,
        Err(msg) => return plain_error(StatusCode::BAD_REQUEST, &msg),
    };
    let auth = header(&headers, "Authorization");
    match live.heartbeat(id, advert, auth) {
        Ok(beat) => {
            let mut v = json!({
                "runner_id": beat.runner_id,
                "orchestrator": live.runner_base,
                "heartbeat_interval": go_duration(live.cfg.heartbeat_interval),
                "heartbeat_ttl": go_duration(live.cfg.heartbeat_ttl),
                "session_ids": beat.session_ids,
            });
            if let Some((secret, o2r)) = beat.first {
                v["heartbeat_secret"] = json!(secret);
                v["o2r"] = json!(o2r);
            }
            json_ok(&v)
        }
        Err(e) => err(&e),
    }
}

pub(super) async fn unregister(
    State(live): State<Arc<Live>>,
    Path(rid): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !live.cfg.enabled {
        return unsupported();
    }
    let auth = header(&headers, "Authorization");
    let removed = live.reg().unregister(&rid, auth, Instant::now());
    match removed {
        Ok(r) => {
            live.finish_remove(r);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => err(&e),
    }
}

/// The discovery URL of a runner (live_runner.go:1345-1356).
fn discovery_url(live: &Live, route: &str, mode: Mode, proxy: bool) -> String {
    let svc = &live.orch.service_uri;
    match (mode, proxy) {
        (Mode::Persistent, _) => format!("{svc}/apps/{route}/session"),
        (Mode::SingleShot, false) => format!("{svc}/apps/{route}/app"),
        (Mode::SingleShot, true) => format!("{svc}/run/{route}"),
    }
}

pub(super) async fn discovery(State(live): State<Arc<Live>>) -> Response {
    let serverless = live.cfg.scope.as_ref().filter(|s| s.serverless);
    if !live.cfg.enabled && serverless.is_none() {
        return unsupported();
    }
    let runners = discovery_runners(&live);
    let mut entry = json!({ "address": live.orch.service_uri });
    if !runners.is_empty() {
        entry["runners"] = Value::Array(runners);
    }
    json_ok(&json!([entry]))
}

/// The runner records of `GET /discovery` (live_runner.go:1711-1732; ai_http.go:898-952).
pub(crate) fn discovery_runners(live: &Live) -> Vec<Value> {
    let serverless = live.cfg.scope.as_ref().filter(|s| s.serverless);
    let mut runners = Vec::new();
    if live.cfg.enabled {
        let now = Instant::now();
        let reg = live.reg();
        for r in reg.listed(now) {
            let a = &r.advert;
            let mut v = json!({
                "url": discovery_url(live, &r.route, a.mode, a.proxy),
                "app": a.app,
                "mode": a.mode.as_str(),
                "capacity": a.capacity,
                "capacity_used": r.sessions.len(),
                "capacity_available": (a.capacity as usize).saturating_sub(r.sessions.len()),
            });
            if let Some(g) = &a.gpu {
                v["gpu"] = json!(g);
            }
            if !a.version.is_empty() {
                v["version"] = json!(a.version);
            }
            if !a.metadata.is_empty() {
                v["metadata"] = json!(a.metadata);
            }
            if live.priced()
                && let Some(p) = &a.price
                && let Ok(wei) = p.to_wei(live.eth_usd)
            {
                v["price_info"] =
                    json!({"price": wei, "currency": "wei", "unit": p.unit.wei_name()});
            }
            runners.push(v);
        }
    }
    if let Some(s) = serverless {
        let used = live
            .serverless_in_use
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut v = json!({
            "url": format!("{}/scope", live.orch.service_uri),
            "gpu": {"name": "H100"},
            "app": "live-video-to-video/scope",
            "version": "serverless-devnet",
            "capacity": s.serverless_capacity.max(used),
            "capacity_used": used,
            "capacity_available": live.serverless_available(s.serverless_capacity),
        });
        if let Some(p) = live.orch.price(Some("scope")) {
            let wei = p.price_per_unit / p.pixels_per_unit.max(1);
            v["price_info"] =
                json!({"price": wei, "currency": "wei", "unit": "720p-pixel-seconds"});
        }
        runners.push(v);
    }
    runners
}

/// The `app_url` of a persistent session.
fn app_url(live: &Live, rid: &str, sid: &str) -> Result<String, LiveError> {
    let proxy = live.reg().get(rid, Instant::now())?.advert.proxy;
    if proxy {
        let target = live
            .reg()
            .get(rid, Instant::now())?
            .advert
            .runner_url
            .clone();
        let id = live.reg().add_proxy(rid, sid, target, Instant::now())?;
        return Ok(format!("{}/run/{id}", live.orch.service_uri));
    }
    Ok(format!(
        "{}/apps/{rid}/session/{sid}/app",
        live.orch.service_uri
    ))
}

pub(super) async fn reserve(
    State(live): State<Arc<Live>>,
    Path(rid): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !live.cfg.enabled {
        return unsupported();
    }
    match live.reg().mode(&rid, Instant::now()) {
        Ok(Mode::Persistent) => {}
        Ok(Mode::SingleShot) => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                "only persistent runners have sessions",
            );
        }
        Err(e) => return err(&e),
    }
    let sid = match runner_price(&live, &rid) {
        Err(e) => return err(&e),
        Ok(None) => {
            let reserved = live.reg().reserve(&rid, None, Instant::now());
            match reserved {
                Ok(sid) => {
                    live.announce_reserved(&rid, &sid);
                    sid
                }
                Err(e) => return err(&e),
            }
        }
        Ok(Some((wei, unit))) => match reserve_paid(&live, &rid, &headers, wei, unit) {
            Ok(sid) => sid,
            Err(r) => return r,
        },
    };
    let app = match app_url(&live, &rid, &sid) {
        Ok(u) => u,
        Err(e) => return err(&e),
    };
    tracing::debug!(runner = %rid, session = %sid, "live session reserved");
    json_ok(&json!({
        "session_id": sid,
        "app_url": app,
        "control_url": format!("{}/apps/{rid}/session/{sid}", live.orch.service_uri),
    }))
}

pub(super) async fn stop(
    State(live): State<Arc<Live>>,
    Path((rid, sid)): Path<(String, String)>,
) -> Response {
    if !live.cfg.enabled {
        return unsupported();
    }
    if let Err(e) = live.reg().get(&rid, Instant::now()) {
        return err(&e);
    }
    live.release(&rid, &sid);
    StatusCode::NO_CONTENT.into_response()
}
