//! Shutdown and idle reaping leave nothing running at the orchestrator.

mod common;

use std::time::Duration;

use common::{Harness, STEP, eventually, jpeg};
use futures::{SinkExt as _, StreamExt as _};
use lpgw_server::ServerConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_live_jobs_leaves_no_session() {
    let mut h = Harness::start(ServerConfig::default()).await;
    let (_, a) = h.post_json("/start-job", None, json!({})).await;
    let (_, b) = h.post_json("/stream/start", None, json!({})).await;
    let a = a["job_id"].as_str().unwrap().to_string();
    let b = b["stream_id"].as_str().unwrap().to_string();
    assert_eq!(h.devnet().active_sessions(), 2);

    // A streaming WebSocket and an open SSE connection must not hold shutdown up.
    let (ws, _) = tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={a}")))
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    let frame = jpeg(64, 60);
    for _ in 0..24 {
        tx.send(Message::Binary(frame.clone())).await.unwrap();
    }
    let sse = h
        .http
        .get(h.url(&format!("/stream/{b}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut sse_body = sse.bytes_stream();

    h.stop_service().await;
    let devnet = h.devnet();
    eventually("every session to end", || devnet.active_sessions() == 0).await;
    assert_eq!(devnet.capacity_in_use("noop"), 0);

    // The SSE client was told, and the socket was closed.
    let mut text = String::new();
    let _ = tokio::time::timeout(STEP, async {
        while let Some(Ok(c)) = sse_body.next().await {
            text.push_str(&String::from_utf8_lossy(&c));
        }
    })
    .await;
    assert!(text.contains("event: error"), "{text}");
    let closed = tokio::time::timeout(STEP, async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(closed);
    // The service no longer accepts connections.
    assert!(h.http.get(h.url("/health")).send().await.is_err());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_jobs_are_closed_but_watched_ones_stay() {
    let h = Harness::start(ServerConfig {
        idle_timeout_secs: 1,
        ..ServerConfig::default()
    })
    .await;
    let (_, idle) = h.post_json("/stream/start", None, json!({})).await;
    let (_, watched) = h.post_json("/stream/start", None, json!({})).await;
    let idle = idle["stream_id"].as_str().unwrap().to_string();
    let watched = watched["stream_id"].as_str().unwrap().to_string();
    let (ws, _) = tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={watched}")))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let (_, st) = h.get(&format!("/stream/{idle}/status"), None).await;
        if st["phase"] == "stopped" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle job not reaped: {st}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let (_, st) = h.get(&format!("/stream/{watched}/status"), None).await;
    assert_eq!(st["phase"], "connecting", "a job with a viewer is not idle");
    assert_eq!(h.devnet().active_sessions(), 1);
    drop(ws);
    h.finish().await;
}
