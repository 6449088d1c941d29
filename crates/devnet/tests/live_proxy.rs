//! The app proxy: path, query and the four injected headers; POST bodies; streaming SSE;
//! WebSocket upgrades; runner callbacks with the injected token; single-shot release.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use common::*;
use futures::{SinkExt as _, StreamExt as _};
use lpgw_devnet::DevnetHandle;
use serde_json::{Value, json};

async fn echo(
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    axum::Json(json!({
        "method": method.as_str(), "path": uri.path(), "query": uri.query(), "body": body,
        "route": h("livepeer-runner-route"), "sid": h("livepeer-session-id"),
        "token": h("livepeer-session-token"), "control": h("livepeer-session-control"),
    }))
}

async fn sse() -> impl IntoResponse {
    let s = futures::stream::iter(0..3).then(|i| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, Infallible>(format!("data: tick {i}\n\n"))
    });
    (
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(s),
    )
}

async fn ws(up: WebSocketUpgrade) -> impl IntoResponse {
    up.on_upgrade(|mut socket| async move {
        while let Some(Ok(Message::Text(t))) = socket.recv().await {
            if socket
                .send(Message::Text(format!("echo:{t}").into()))
                .await
                .is_err()
            {
                break;
            }
        }
    })
}

async fn upstream() -> String {
    let app = Router::new()
        .route("/base/sse", get(sse))
        .route("/base/ws", get(ws))
        .route("/base/{*rest}", any(echo));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/base")
}

async fn setup(mode: &str) -> (DevnetHandle, String) {
    let h = devnet(no_scope()).await;
    let url = upstream().await;
    let (s, _) = heartbeat(
        &h,
        &json!({"runner_id":"r1","runner_url":url,"app":"test/echo","mode":mode,"capacity":1}),
    )
    .await;
    assert_eq!(s, 200);
    (h, url)
}

#[tokio::test]
async fn persistent_proxy_headers_body_sse_websocket_and_callbacks() {
    let (h, _) = setup("persistent").await;
    let svc = h.orchestrator_url().to_string();
    let a = send_json(http().post(format!("{svc}/apps/r1/session"))).await;
    let sid = a["session_id"].as_str().unwrap().to_string();
    let app = a["app_url"].as_str().unwrap().to_string();

    let r = send(
        http()
            .get(format!("{app}/v1/foo/bar?x=1&y=two"))
            .header("Livepeer-Session-Token", "client-value-overwritten"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["path"], "/base/v1/foo/bar");
    assert_eq!(v["query"], "x=1&y=two");
    assert_eq!(v["route"], "r1");
    assert_eq!(v["sid"], sid.as_str());
    assert_eq!(
        v["control"],
        format!("{}/runner/r1/session/{sid}", h.runner_url())
    );
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 52);

    let v = send_json(http().post(format!("{app}/echo")).body("hello")).await;
    assert_eq!(
        (v["method"].as_str(), v["body"].as_str()),
        (Some("POST"), Some("hello"))
    );

    // SSE passes through as a stream.
    let r = send(http().get(format!("{app}/sse"))).await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = bounded(body.next()).await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert_eq!(text, "data: tick 0\n\ndata: tick 1\n\ndata: tick 2\n\n");

    // WebSocket upgrade through the proxy.
    let ws_url = format!("{}/ws", app.replacen("http://", "ws://", 1));
    let (mut sock, resp) = bounded(tokio_tungstenite::connect_async(ws_url))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    bounded(sock.send(tokio_tungstenite::tungstenite::Message::text("hi")))
        .await
        .unwrap();
    let m = bounded(sock.next()).await.unwrap().unwrap();
    assert_eq!(m.into_text().unwrap().as_str(), "echo:hi");
    drop(sock);

    // Runner callbacks with the injected token: channels, then runner stop.
    let base = format!("{}/runner/r1/session/{sid}", h.runner_url());
    let r = send(
        http()
            .post(format!("{base}/channels"))
            .header("Livepeer-Session-Token", &token)
            .json(&json!({"channels":[{"name":"foo/bar","mime_type":"video/MP2T"}]})),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    let name = format!("{sid}-foo-bar");
    assert_eq!(
        v,
        json!({"channels":[{"name":"foo-bar","channel_name":name,
        "url": format!("{svc}/ai/trickle/{name}"), "internal_url": format!("{}/ai/trickle/{name}", h.runner_url()),
        "mime_type":"video/MP2T"}]})
    );
    assert!(h.has_channel(&name));
    let (s, b) = status_text(
        http()
            .post(format!("{base}/channels"))
            .header("Livepeer-Session-Token", &token)
            .json(&json!({"channels":[]})),
    )
    .await;
    assert_eq!((s, b.as_str()), (400, "channels is required\n"));
    let r = send(
        http()
            .post(format!("{base}/proxy"))
            .header("Livepeer-Session-Token", &token)
            .json(&json!({"target_url":"http://elsewhere:1/"})),
    )
    .await;
    assert_eq!(r.status().as_u16(), 400);
    let p = send_json(
        http()
            .post(format!("{base}/proxy"))
            .header("Livepeer-Session-Token", &token)
            .json(&json!({})),
    )
    .await;
    let purl = p["url"].as_str().unwrap().to_string();
    assert_eq!(p["proxy_id"].as_str().unwrap().len(), 26);
    let v = get_json(format!("{purl}/via/proxy")).await;
    assert_eq!(v["path"], "/base/via/proxy");
    let r = send(
        http()
            .post(format!("{base}/stop"))
            .header("Livepeer-Session-Token", &token),
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    assert!(!h.has_channel(&name), "release closes session channels");
    let (s, b) = status_text(http().get(format!("{app}/x"))).await;
    assert_eq!((s, b.as_str()), (404, "runner session not found\n"));
    let (s, b) = status_text(http().get(&purl)).await;
    assert_eq!((s, b.as_str()), (404, "live runner proxy not found\n"));
    h.shutdown().await;
}

#[tokio::test]
async fn single_shot_proxies_and_releases() {
    let (h, _) = setup("single-shot").await;
    let svc = h.orchestrator_url().to_string();
    let (s, b) = status_text(http().post(format!("{svc}/apps/r1/session"))).await;
    assert_eq!(
        (s, b.as_str()),
        (400, "only persistent runners have sessions\n")
    );
    let d = discovery_json(&h).await;
    assert_eq!(d[0]["runners"][0]["url"], format!("{svc}/apps/r1/app"));
    assert_eq!(d[0]["runners"][0]["mode"], "single-shot");
    let v = send_json(http().put(format!("{svc}/apps/r1/app/do/it?q=1")).body("b")).await;
    assert_eq!(
        (
            v["method"].as_str(),
            v["path"].as_str(),
            v["query"].as_str()
        ),
        (Some("PUT"), Some("/base/do/it"), Some("q=1"))
    );
    assert!(v["sid"].as_str().unwrap().starts_with("session_"));
    // Released after the response: capacity 1 serves the next request.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.live_sessions("r1").is_empty());
    let r = send(http().get(format!("{svc}/apps/r1/app/again"))).await;
    assert_eq!(r.status().as_u16(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn proxy_true_runner_gets_generated_app_url() {
    let h = devnet(no_scope()).await;
    let url = upstream().await;
    let (s, _) = heartbeat(
        &h,
        &json!({"runner_id":"px","runner_url":url,"app":"test/px","proxy":true,"status":"ready"}),
    )
    .await;
    assert_eq!(s, 200);
    let a: Value = post_json(format!("{}/apps/px/session", h.orchestrator_url())).await;
    let app = a["app_url"].as_str().unwrap();
    let prefix = format!("{}/run/", h.orchestrator_url());
    assert!(app.starts_with(&prefix), "{app}");
    assert_eq!(app.len(), prefix.len() + 26);
    assert!(!app.contains(a["session_id"].as_str().unwrap()));
    let v = get_json(format!("{app}/hello")).await;
    assert_eq!(v["path"], "/base/hello");
    assert_eq!(v["sid"], a["session_id"]);

    // A runner that is not ready is hidden and cannot be reserved.
    let (s, _) = heartbeat(
        &h,
        &json!({"runner_id":"busy","runner_url":url,"app":"test/busy","status":"busy"}),
    )
    .await;
    assert_eq!(s, 200);
    let d = discovery_json(&h).await;
    assert!(
        d[0]["runners"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["app"] != "test/busy")
    );
    let r = send(http().post(format!("{}/apps/busy/session", h.orchestrator_url()))).await;
    assert_eq!(r.status().as_u16(), 404);
    h.shutdown().await;
}
