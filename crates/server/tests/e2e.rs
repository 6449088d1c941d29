//! End to end through devnet (legacy LV2V flow, passthrough runner): both API families.

mod common;

use std::time::Duration;

use common::{Harness, STEP, eventually, jpeg};
use futures::{SinkExt as _, StreamExt as _};
use lpgw_server::ServerConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The `/metrics` text.
async fn metrics_text(h: &Harness) -> String {
    let resp = tokio::time::timeout(STEP, h.http.get(h.url("/metrics")).send())
        .await
        .expect("metrics in time")
        .expect("metrics answer");
    resp.text().await.expect("metrics body")
}

/// The value of the sample `name` (with its labels) in Prometheus text, if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Reads SSE `data:` payloads until one satisfies `pred`.
async fn sse_until(
    h: &Harness,
    path: &str,
    key: Option<&str>,
    mut pred: impl FnMut(&str, &str) -> bool,
) -> (String, String) {
    let mut req = h.http.get(h.url(path));
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let resp = tokio::time::timeout(STEP, req.send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let found = tokio::time::timeout(STEP, async {
        while let Some(chunk) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut event = "message".to_string();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = e.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if !data.is_empty() && pred(&event, &data) {
                    return Some((event, data));
                }
            }
        }
        None
    })
    .await
    .expect("SSE event in time");
    found.expect("SSE stream ended early")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn family_a_websocket_round_trip_control_events_and_stop() {
    let h = Harness::start(ServerConfig {
        api_keys: vec!["k1".into()],
        ..ServerConfig::default()
    })
    .await;
    let (status, health) = h.get("/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    let (status, job) = h
        .post_json(
            "/start-job",
            Some("k1"),
            json!({"model_id": "noop", "params": {"prompt": "x"}}),
        )
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["flow"], "lv2v");
    let id = job["job_id"].as_str().unwrap().to_string();
    // The URLs are the service's own routes, not the orchestrator's trickle capabilities.
    assert!(!job["publish_url"].as_str().unwrap().contains("trickle"));

    let (ws, _) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={id}&api_key=k1&meta=1"))),
    )
    .await
    .unwrap()
    .expect("websocket connects");
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / 24));
        for i in 0u64..24 * 6 {
            tick.tick().await;
            tx.send(Message::Text(json!({"id": i}).to_string().into()))
                .await
                .unwrap();
            tx.send(Message::Binary(jpeg(128, (i % 200) as u8 + 20)))
                .await
                .unwrap();
        }
        tx
    });
    let mut got = 0;
    let mut matched = 0;
    tokio::time::timeout(STEP, async {
        while got < 10 {
            match rx.next().await.expect("socket open").expect("frame") {
                Message::Binary(b) => {
                    assert_eq!(&b[..2], &[0xFF, 0xD8], "output is a JPEG");
                    got += 1;
                }
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["id"].is_u64() {
                        matched += 1;
                    }
                }
                _ => {}
            }
        }
    })
    .await
    .expect("processed frames arrive over the WebSocket");
    assert!(matched > 0, "output frames are matched to input ids");

    let (status, detail) = h.get(&format!("/job/{id}"), Some("k1")).await;
    assert_eq!(status, 200);
    assert_eq!(detail["phase"], "running");
    assert_eq!(detail["media_started"], true);

    let (status, sent) = h
        .post_json(
            &format!("/job/{id}/control"),
            Some("k1"),
            json!({"message": {"prompt": "a cat"}}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["status"], "sent");
    // The runner reports the new parameters in its status events.
    let (_, data) = sse_until(&h, &format!("/job/{id}/events"), Some("k1"), |_, d| {
        d.contains("a cat")
    })
    .await;
    assert!(data.contains("a cat"));

    // Segment timings of both channels reach the histograms while frames stream (a
    // keyframe every 2 s, so a few segments complete in the 6 s of input).
    let series = [
        "lpgw_segment_ack_seconds_count{direction=\"in\"}",
        "lpgw_segment_duration_seconds_count{direction=\"in\"}",
        "lpgw_segment_first_byte_seconds_count{direction=\"out\"}",
        "lpgw_segment_duration_seconds_count{direction=\"out\"}",
    ];
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let text = metrics_text(&h).await;
        let missing: Vec<&str> = series
            .iter()
            .copied()
            .filter(|name| sample(&text, name).is_none_or(|n| n < 1.0))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "segment series missing or never observed: {missing:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut tx = sender.await.unwrap();
    let _ = tx.close().await;
    let (status, stopped) = h
        .http
        .delete(h.url(&format!("/stop-job/{id}")))
        .header("X-API-Key", "k1")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))
        .unwrap();
    assert_eq!(status, 200, "{stopped:?}");
    let (status, _) = h.get(&format!("/job/{id}"), Some("k1")).await;
    assert_eq!(status, 404);
    let devnet = h.devnet();
    eventually("the devnet session to end", || {
        devnet.active_sessions() == 0
    })
    .await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn family_b_publish_frame_control_status_stop() {
    let h = Harness::start(ServerConfig::default()).await;
    let (status, s) = h
        .post_json("/stream/start", None, json!({"model_id": "noop"}))
        .await;
    assert_eq!(status, 200, "{s}");
    let id = s["stream_id"].as_str().unwrap().to_string();
    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    assert_eq!(st["phase"], "connecting");
    let resp = h
        .http
        .get(h.url(&format!("/stream/{id}/frame")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "no frame yet");

    // Publish frames over HTTP until a processed frame is available.
    let deadline = tokio::time::Instant::now() + STEP;
    let mut seq = 0;
    let frame = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no output frame in time"
        );
        let r = h
            .http
            .post(h.url(&format!("/stream/{id}/publish?seq={seq}")))
            .header("content-type", "image/jpeg")
            .body(jpeg(96, 100))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        seq += 1;
        let r = h
            .http
            .get(h.url(&format!("/stream/{id}/frame")))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            assert_eq!(r.headers()["content-type"], "image/jpeg");
            break r.bytes().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    };
    assert_eq!(&frame[..2], &[0xFF, 0xD8]);
    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    assert_eq!(st["phase"], "running");

    let (status, c) = h
        .post_json(
            &format!("/stream/{id}/control"),
            None,
            json!({"prompt": "neon"}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let (_, data) = sse_until(&h, &format!("/stream/{id}/events"), None, |_, d| {
        d.contains("neon")
    })
    .await;
    assert!(data.contains("neon"));

    let (_, list) = h.get("/streams", None).await;
    assert_eq!(list["streams"][0]["stream_id"], id.as_str());
    // A job started through Family B is visible through Family A.
    let (status, _) = h.get(&format!("/job/{id}"), None).await;
    assert_eq!(status, 200);

    let (status, stop) = h
        .post_json(&format!("/stream/{id}/stop"), None, json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(stop["status"], "stopped");
    let (status, st) = h.get(&format!("/stream/{id}/status"), None).await;
    assert_eq!(status, 200);
    assert_eq!(st["phase"], "stopped");
    let r = h
        .http
        .post(h.url(&format!("/stream/{id}/publish")))
        .header("content-type", "image/jpeg")
        .body(jpeg(96, 100))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_failures_carry_the_rejections() {
    let h = Harness::start(ServerConfig::default()).await;
    h.devnet().faults().set_capacity(Some(0));
    let (status, body) = h
        .post_json("/start-job", None, json!({"model_id": "noop"}))
        .await;
    // Every candidate was full or offered nothing: unavailable, not an upstream failure.
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let rejections = body["rejections"].as_array().expect("rejections listed");
    assert!(
        rejections
            .iter()
            .any(|r| r["reason"].as_str().is_some_and(|s| s.contains("Capped"))),
        "{body}"
    );
    assert!(rejections.iter().all(|r| r["url"].is_string()));
    // Nothing was registered and nothing counts against the limit.
    let (_, jobs) = h.get("/jobs", None).await;
    assert_eq!(jobs, json!([]));
    h.devnet().faults().set_capacity(None);
    let (status, _) = h.post_json("/start-job", None, json!({})).await;
    assert_eq!(status, 200);
    h.finish().await;
}
