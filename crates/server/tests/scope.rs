//! End to end through devnet's Scope live runner: the live-runner flow, media wired through
//! the Scope protocol, and a prompt change visible in the output.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, STEP, jpeg};
use futures::{SinkExt as _, StreamExt as _};
use lpgw_server::ServerConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Mean chroma (U, V) of a JPEG: the prompt effect tints it.
fn chroma(j: &[u8]) -> (f64, f64) {
    let f = lpgw_media::decode_jpeg(j).expect("output decodes");
    let mean = |p: &[u8]| p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64;
    (mean(&f.u), mean(&f.v))
}

async fn next_binary<S>(rx: &mut S) -> Bytes
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(STEP, async {
        loop {
            if let Some(Ok(Message::Binary(b))) = rx.next().await {
                return b;
            }
        }
    })
    .await
    .expect("an output frame in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_job_streams_and_a_prompt_changes_the_output() {
    let h = Harness::start(ServerConfig::default()).await;
    let (status, s) = h
        .post_json(
            "/stream/start",
            None,
            json!({"model_id": "scope", "params": {"prompt": "first"}}),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["flow"], "live-runner");
    let id = s["stream_id"].as_str().unwrap().to_string();
    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    assert_eq!(st["phase"], "ready", "{st}");
    assert_eq!(h.devnet().scope_sessions().len(), 1, "one reserved session");

    let (ws, _) = tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={id}")))
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        let frame = jpeg(128, 128);
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / 24));
        for _ in 0..24 * 15 {
            tick.tick().await;
            if tx.send(Message::Binary(frame.clone())).await.is_err() {
                break;
            }
        }
    });
    let before = chroma(&next_binary(&mut rx).await);
    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    assert_eq!(st["phase"], "running");

    let (status, sent) = h
        .post_json(
            &format!("/stream/{id}/control"),
            None,
            json!({"prompt": "a completely different prompt"}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    // The output changes colour once the runner applies the new prompt.
    let changed = tokio::time::timeout(STEP, async {
        loop {
            let now = chroma(&next_binary(&mut rx).await);
            if (now.0 - before.0).abs() + (now.1 - before.1).abs() > 4.0 {
                return now;
            }
        }
    })
    .await;
    assert!(
        changed.is_ok(),
        "output did not change after the prompt (before {before:?})"
    );

    let (status, _) = h
        .post_json(&format!("/stream/{id}/stop"), None, json!({}))
        .await;
    assert_eq!(status, 200);
    sender.abort();
    let devnet = h.devnet();
    common::eventually("the live-runner session to end", || {
        devnet.scope_sessions().is_empty()
    })
    .await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_live_runner_sessions() {
    let mut h = Harness::start(ServerConfig::default()).await;
    let (status, s) = h
        .post_json("/start-job", None, json!({"model_id": "scope"}))
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["flow"], "live-runner");
    assert_eq!(h.devnet().scope_sessions().len(), 1);
    h.stop_service().await;
    let devnet = h.devnet();
    common::eventually("the session to be stopped at the orchestrator", || {
        devnet.scope_sessions().is_empty()
    })
    .await;
    h.finish().await;
}
