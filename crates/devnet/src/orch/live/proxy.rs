//! The app proxy (server/ai_http.go:732-865): persistent sessions at
//! `/apps/{rid}/session/{sid}/app/...`, single-shot runners at `/apps/{rid}/app/...` (one
//! session per request), and generated proxy IDs at `/run/{id}/...`. Methods, paths, query,
//! headers and bodies pass through both ways as streams; WebSocket (any `Upgrade`) requests
//! are joined byte for byte after the runner's `101`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;

use super::Live;
use super::advert::Mode;
use super::paid::{reserve_paid, runner_price};
use super::reply::{err, unsupported};
use crate::respond::plain_error;

/// The client the proxy forwards with (plain HTTP, HTTP/1.1, upgrades allowed).
pub(crate) type ProxyClient = Client<HttpConnector, Body>;

pub(crate) fn client() -> ProxyClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Releases a single-shot session when the response is done (or abandoned).
struct ReleaseGuard {
    live: Arc<Live>,
    rid: String,
    sid: String,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        self.live.release(&self.rid, &self.sid);
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_upgrade(h: &http::HeaderMap) -> bool {
    h.get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && h.contains_key(header::UPGRADE)
}

/// `url.JoinPath("/", target.Path, appPath)` plus the incoming query.
fn upstream_uri(target: &str, app_path: &str, query: Option<&str>) -> Option<Uri> {
    let (scheme, rest) = target.split_once("://")?;
    let (authority, base_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut segs: Vec<&str> = base_path.split('/').filter(|s| !s.is_empty()).collect();
    segs.extend(app_path.split('/').filter(|s| !s.is_empty()));
    let mut path = format!("/{}", segs.join("/"));
    if app_path.ends_with('/') && !segs.is_empty() {
        path.push('/');
    }
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    format!("{scheme}://{authority}{pq}").parse().ok()
}

/// Forwards `req` to `target` + `app_path` with the four session headers.
async fn forward(
    live: Arc<Live>,
    rid: String,
    sid: String,
    target: String,
    app_path: String,
    req: Request,
    cancel: CancellationToken,
    guard: Option<ReleaseGuard>,
) -> Response {
    let token = match live.reg().get(&rid, Instant::now()) {
        Ok(r) => r.session_token(&sid),
        Err(e) => return err(&e),
    };
    let (mut parts, body) = req.into_parts();
    let Some(uri) = upstream_uri(&target, &app_path, parts.uri.query()) else {
        return plain_error(StatusCode::BAD_GATEWAY, "invalid registered runner_url");
    };
    let upgrade = is_upgrade(&parts.headers);
    let downstream = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let mut out = http::Request::builder()
        .method(parts.method.clone())
        .uri(uri.clone())
        .version(http::Version::HTTP_11);
    let headers = out.headers_mut().expect("fresh builder has headers");
    for (k, v) in &parts.headers {
        let keep_for_upgrade = upgrade && (k == header::CONNECTION || k == header::UPGRADE);
        if k == header::HOST || (HOP_BY_HOP.contains(&k.as_str()) && !keep_for_upgrade) {
            continue;
        }
        headers.append(k.clone(), v.clone());
    }
    if let Some(a) = uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(header::HOST, a);
    }
    let control = format!("{}/runner/{rid}/session/{sid}", live.runner_base);
    for (k, v) in [
        ("livepeer-runner-route", rid.as_str()),
        ("livepeer-session-id", sid.as_str()),
        ("livepeer-session-token", token.as_str()),
        ("livepeer-session-control", control.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(HeaderName::from_static(k), v);
        }
    }
    let Ok(out) = out.body(if upgrade { Body::empty() } else { body }) else {
        return plain_error(StatusCode::BAD_GATEWAY, "cannot build upstream request");
    };
    let sent = tokio::select! {
        r = live.proxy_client.request(out) => r,
        () = cancel.cancelled() => {
            return plain_error(StatusCode::BAD_GATEWAY, "live runner session released");
        }
    };
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, %uri, "live runner proxy upstream failed");
            return plain_error(StatusCode::BAD_GATEWAY, &e.to_string());
        }
    };
    if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut resp);
        let (rparts, _) = resp.into_parts();
        live.orch.tracker.spawn(async move {
            let _guard = guard;
            let (Some(down), Ok(up)) = (downstream, upstream.await) else {
                return;
            };
            let Ok(down) = down.await else {
                return;
            };
            let mut a = TokioIo::new(up);
            let mut b = TokioIo::new(down);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                () = cancel.cancelled() => {}
            }
        });
        return Response::from_parts(rparts, Body::empty());
    }
    let (mut rparts, incoming) = resp.into_parts();
    for h in ["connection", "keep-alive", "transfer-encoding"] {
        rparts.headers.remove(h);
    }
    let stream = Body::new(incoming)
        .into_data_stream()
        .take_until(cancel.cancelled_owned())
        .map(move |chunk| {
            let _ = &guard;
            chunk
        });
    Response::from_parts(rparts, Body::from_stream(stream))
}

async fn session(
    live: Arc<Live>,
    rid: String,
    sid: String,
    path: String,
    req: Request,
) -> Response {
    if !live.cfg.enabled {
        return unsupported();
    }
    let found = live
        .reg()
        .session(&rid, &sid, Instant::now())
        .map(|(r, s)| (r.advert.runner_url.clone(), s.cancel.clone()));
    match found {
        Ok((target, cancel)) => forward(live, rid, sid, target, path, req, cancel, None).await,
        Err(e) => err(&e),
    }
}

pub(super) async fn session_root(
    State(live): State<Arc<Live>>,
    Path((rid, sid)): Path<(String, String)>,
    req: Request,
) -> Response {
    session(live, rid, sid, String::new(), req).await
}

pub(super) async fn session_path(
    State(live): State<Arc<Live>>,
    Path((rid, sid, path)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    session(live, rid, sid, path, req).await
}

async fn single_shot(live: Arc<Live>, rid: String, path: String, req: Request) -> Response {
    if !live.cfg.enabled {
        return unsupported();
    }
    match live.reg().mode(&rid, Instant::now()) {
        Ok(Mode::SingleShot) => {}
        Ok(Mode::Persistent) => {
            return plain_error(StatusCode::BAD_REQUEST, "runner is not single-shot");
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
        Ok(Some((wei, unit))) => match reserve_paid(&live, &rid, req.headers(), wei, unit) {
            Ok(sid) => sid,
            Err(r) => return r,
        },
    };
    let guard = ReleaseGuard {
        live: live.clone(),
        rid: rid.clone(),
        sid: sid.clone(),
    };
    let found = live
        .reg()
        .session(&rid, &sid, Instant::now())
        .map(|(r, s)| (r.advert.runner_url.clone(), s.cancel.clone()));
    match found {
        Ok((target, cancel)) => {
            forward(
                live.clone(),
                rid,
                sid,
                target,
                path,
                req,
                cancel,
                Some(guard),
            )
            .await
        }
        Err(e) => err(&e),
    }
}

pub(super) async fn single_shot_root(
    State(live): State<Arc<Live>>,
    Path(rid): Path<String>,
    req: Request,
) -> Response {
    single_shot(live, rid, String::new(), req).await
}

pub(super) async fn single_shot_path(
    State(live): State<Arc<Live>>,
    Path((rid, path)): Path<(String, String)>,
    req: Request,
) -> Response {
    single_shot(live, rid, path, req).await
}

async fn by_id(live: Arc<Live>, id: String, path: String, req: Request) -> Response {
    if !live.cfg.enabled {
        return unsupported();
    }
    let target = live.reg().proxy(&id).cloned();
    if let Some(t) = target {
        let cancel = live
            .reg()
            .session(&t.route, &t.sid, Instant::now())
            .map(|(_, s)| s.cancel.clone());
        return match cancel {
            Ok(c) => forward(live, t.route, t.sid, t.target, path, req, c, None).await,
            Err(e) => err(&e),
        };
    }
    // A single-shot runner with `proxy:true` is reached by its route.
    let proxied_single_shot = live
        .reg()
        .get(&id, Instant::now())
        .is_ok_and(|r| r.advert.mode == Mode::SingleShot && r.advert.proxy);
    if proxied_single_shot {
        return single_shot(live, id, path, req).await;
    }
    plain_error(StatusCode::NOT_FOUND, "live runner proxy not found").into_response()
}

pub(super) async fn by_id_root(
    State(live): State<Arc<Live>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    by_id(live, id, String::new(), req).await
}

pub(super) async fn by_id_path(
    State(live): State<Arc<Live>>,
    Path((id, path)): Path<(String, String)>,
    req: Request,
) -> Response {
    by_id(live, id, path, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_paths_join_like_go() {
        let u = |t: &str, p: &str, q: Option<&str>| upstream_uri(t, p, q).unwrap().to_string();
        assert_eq!(
            u("http://h:1/base", "v1/foo/bar", Some("x=1&y=two")),
            "http://h:1/base/v1/foo/bar?x=1&y=two"
        );
        assert_eq!(u("http://h:1", "", None), "http://h:1/");
        assert_eq!(u("http://h:1/", "scope", None), "http://h:1/scope");
        assert_eq!(u("http://h:1/a/", "b/", None), "http://h:1/a/b/");
        assert!(upstream_uri("nope", "", None).is_none());
    }

    #[test]
    fn upgrade_detection() {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(!is_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
    }
}
