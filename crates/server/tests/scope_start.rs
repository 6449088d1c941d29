//! Scope streams through the service against devnet's Scope runner, which behaves like the
//! real one: pipelines are loaded before the stream starts, `gray` gives gray video, a
//! refused pipeline fails the start with the runner's words, a stream that gives no output
//! or a runner error that answers nothing ends with `phase: "error"` and the reason, a
//! runner that restarts gets its stream started again with its clients still connected, and
//! the runner's own API is reachable through the stream.

mod common;

use std::time::Duration;

use common::{Harness, STEP, devnet_config, jpeg, publish_until};
use lpgw_server::ServerConfig;
use serde_json::{Value, json};

/// A JPEG of one saturated colour (Y, U, V) and its size.
fn coloured(y: u8, u: u8, v: u8) -> bytes::Bytes {
    let f = lpgw_media::Yuv420Frame::filled(64, 64, y, u, v);
    lpgw_media::JpegEncoder::new(90).encode(&f).unwrap()
}

async fn start(h: &Harness, body: Value) -> (u16, Value) {
    h.post_json("/stream/start", None, body).await
}

/// Starts a `gray` stream and publishes a red frame until output arrives; its id.
async fn running_gray(h: &Harness) -> String {
    let (code, s) = start(
        h,
        json!({"model_id": "scope", "params": {"pipeline_ids": ["gray"]}}),
    )
    .await;
    assert_eq!(code, 200, "{s}");
    let id = s["stream_id"].as_str().unwrap().to_owned();
    let st = publish_until(h, &id, &red(), |st| st["phase"] == "running").await;
    assert_eq!(st["scope"]["input_mode"], "video", "{st}");
    id
}

fn red() -> bytes::Bytes {
    coloured(82, 90, 240)
}

/// `POST /stream/{id}/api`: a request to the runner's own API through the stream.
async fn runner_api(h: &Harness, id: &str, body: Value) -> (u16, Value) {
    h.post_json(&format!("/stream/{id}/api"), None, body).await
}

/// The stream's newest output frame, decoded.
async fn newest_frame(h: &Harness, id: &str) -> lpgw_media::Yuv420Frame {
    let resp = h
        .http
        .get(h.url(&format!("/stream/{id}/frame")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    lpgw_media::decode_jpeg(&resp.bytes().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gray_pipeline_gives_gray_frames_and_stop_frees_the_runner() {
    let h = Harness::start(ServerConfig::default()).await;
    let id = running_gray(&h).await;
    let f = newest_frame(&h, &id).await;
    let mean = |p: &[u8]| p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64;
    assert!(
        (mean(&f.u) - 128.0).abs() < 4.0 && (mean(&f.v) - 128.0).abs() < 4.0,
        "not gray"
    );
    assert!((mean(&f.y) - 82.0).abs() < 12.0, "luma {}", mean(&f.y));

    // The runner's own API answers through the stream.
    let (code, a) = runner_api(
        &h,
        &id,
        json!({"method": "GET", "path": "/api/v1/pipeline/status"}),
    )
    .await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["type"], "api_response");
    assert_eq!(a["data"]["status"], "loaded", "{a}");
    assert_eq!(a["data"]["pipeline_id"], "gray");
    let (code, _) = runner_api(&h, &id, json!({"path": "/etc/passwd"})).await;
    assert_eq!(code, 400);

    let (code, _) = h
        .post_json(&format!("/stream/{id}/stop"), None, json!({}))
        .await;
    assert_eq!(code, 200);
    common::eventually("the runner's session is stopped", || {
        h.devnet().scope_sessions().is_empty()
    })
    .await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn family_a_starts_scope_with_the_default_pipeline() {
    let h = Harness::start(ServerConfig::default()).await;
    let (code, s) = h
        .post_json("/start-job", None, json!({"model_id": "scope"}))
        .await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["flow"], "live-runner");
    let id = s["job_id"].as_str().unwrap();
    let (_, st) = h.get(&format!("/job/{id}"), None).await;
    // streamdiffusionv2 (the default) takes video by default.
    assert_eq!(st["scope"]["input_mode"], "video", "{st}");
    let (code, a) = runner_api(
        &h,
        id,
        json!({"method": "GET", "path": "/api/v1/pipeline/status"}),
    )
    .await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["data"]["pipeline_id"], "streamdiffusionv2", "{a}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pipeline_is_refused_once_with_the_runners_words() {
    let h = Harness::start(ServerConfig::default()).await;
    let (code, s) = start(
        &h,
        json!({"model_id": "scope", "params": {"pipeline_ids": ["nope"]}}),
    )
    .await;
    assert_eq!(code, 502, "{s}");
    let rejections = s["rejections"].as_array().unwrap();
    let refused: Vec<&Value> = rejections
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .unwrap()
                .contains("scope pipeline refused")
        })
        .collect();
    // One runner tried, not every one (each attempt may be paid).
    assert_eq!(refused.len(), 1, "{s}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Invalid pipeline ID: nope"),
        "{s}"
    );
    common::eventually("the refused session is stopped", || {
        h.devnet().scope_sessions().is_empty()
    })
    .await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_naming_a_pipeline_not_loaded_ends_with_no_output() {
    let h = Harness::start_tuned(ServerConfig::default(), devnet_config(), |s| {
        s.live.scope.output_timeout = Duration::from_secs(2);
    })
    .await;
    // `gray` is loaded, the graph runs `passthrough`: the runner answers stream_started and
    // never sends a frame (Scope's silent failure).
    let graph = json!({"nodes": [
        {"id": "input", "type": "source"},
        {"id": "passthrough", "type": "pipeline", "pipeline_id": "passthrough"},
        {"id": "output", "type": "sink"}],
      "edges": [
        {"from": "input", "from_port": "video", "to_node": "passthrough", "to_port": "video", "kind": "stream"},
        {"from": "passthrough", "from_port": "video", "to_node": "output", "to_port": "video", "kind": "stream"}]});
    let (code, s) = start(
        &h,
        json!({"model_id": "scope", "params": {"pipeline_ids": ["gray"], "graph": graph}}),
    )
    .await;
    assert_eq!(code, 200, "{s}");
    let id = s["stream_id"].as_str().unwrap().to_owned();
    let st = publish_until(&h, &id, &jpeg(64, 100), |st| st["phase"] == "error").await;
    let err = st["error"].as_str().unwrap();
    assert!(err.starts_with("no_output: no output"), "{st}");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("lpgw_job_faults_total{code=\"no_output\"} 1"),
        "{metrics}"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_error_that_answers_nothing_ends_the_stream() {
    let h = Harness::start(ServerConfig::default()).await;
    let (code, s) = start(
        &h,
        json!({"model_id": "scope", "params": {"pipeline_ids": ["gray"]}}),
    )
    .await;
    assert_eq!(code, 200, "{s}");
    let id = s["stream_id"].as_str().unwrap().to_owned();
    // Passed through as it is (already a runner message); the runner does not know it.
    let (code, _) = h
        .post_json(
            &format!("/stream/{id}/control"),
            None,
            json!({"type": "bogus"}),
        )
        .await;
    assert_eq!(code, 200);
    let st = tokio::time::timeout(STEP, async {
        loop {
            let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
            if st["phase"] == "error" {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the stream fails");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .contains("Unknown message type: bogus"),
        "{st}"
    );
    h.finish().await;
}

/// Reads the stream's SSE events into `seen` until the stream ends; returns when it does.
async fn read_events(
    http: reqwest::Client,
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
) {
    use futures::StreamExt as _;
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    while let Some(Ok(chunk)) = body.next().await {
        seen.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_restart_starts_the_stream_again_and_keeps_its_clients() {
    restart_keeps_clients(Harness::start(ServerConfig::default()).await).await;
}

#[tokio::test]
async fn a_runner_that_closes_its_channels_and_comes_back_late_keeps_its_clients() {
    let h = Harness::start(ServerConfig::default()).await;
    // The old output ends well before the runner is back and makes new channels.
    h.devnet().faults().set_scope_restart_closes_channels(true);
    h.devnet()
        .faults()
        .set_scope_restart_delay(Some(Duration::from_secs(3)));
    restart_keeps_clients(h).await;
}

/// Restarts a running gray stream's runner through its API; the stream must start again
/// on new channels with its viewers, events and counters, and still be gray.
async fn restart_keeps_clients(h: Harness) {
    let id = running_gray(&h).await;
    let red = red();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sse = tokio::spawn({
        let url = h.url(&format!("/stream/{id}/events"));
        read_events(h.http.clone(), url, seen.clone())
    });

    let (code, a) = runner_api(
        &h,
        &id,
        json!({"method": "POST", "path": "/api/v1/restart"}),
    )
    .await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["status"], 200, "{a}");
    // Frames keep coming in; the stream starts again on new channels and output resumes.
    let st = publish_until(&h, &id, &red, |st| {
        seen.lock().unwrap().contains("stream_restarted") || st["phase"] == "error"
    })
    .await;
    assert_ne!(st["phase"], "error", "{st}");
    let resumed_from = st["frames_out"].as_u64().unwrap();
    let st = publish_until(&h, &id, &red, |st| {
        st["frames_out"].as_u64().unwrap_or(0) > resumed_from + 5 || st["phase"] == "error"
    })
    .await;
    assert_eq!(st["phase"], "running", "{st}");
    assert_eq!(st["scope"]["restarts"], 1, "{st}");
    let events = seen.lock().unwrap().clone();
    assert!(events.contains("runner_restarted"), "{events}");
    assert!(
        !sse.is_finished(),
        "the events stream ended with the restart"
    );
    // The pipeline was loaded again, and the output is still gray.
    let (_, a) = runner_api(
        &h,
        &id,
        json!({"method": "GET", "path": "/api/v1/pipeline/status"}),
    )
    .await;
    assert_eq!(a["data"]["status"], "loaded", "{a}");
    let f = newest_frame(&h, &id).await;
    let mean = |p: &[u8]| p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64;
    assert!(
        (mean(&f.v) - 128.0).abs() < 4.0,
        "not gray after the restart"
    );

    let (code, _) = h
        .post_json(&format!("/stream/{id}/stop"), None, json!({}))
        .await;
    assert_eq!(code, 200);
    tokio::time::timeout(STEP, sse)
        .await
        .expect("the events stream ends with the stream")
        .unwrap();
    common::eventually("the runner's session is stopped", || {
        h.devnet().scope_sessions().is_empty()
    })
    .await;
    h.finish().await;
}
