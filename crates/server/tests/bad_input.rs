//! Malformed, oversized and wrongly typed input: correct status codes, and the service keeps
//! serving other jobs.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, STEP, jpeg};
use futures::{SinkExt as _, StreamExt as _};
use lpgw_server::ServerConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn small_limits() -> ServerConfig {
    ServerConfig {
        max_json_bytes: 1024,
        max_frame_bytes: 64 * 1024,
        ws_hard_limit_bytes: 256 * 1024,
        ..ServerConfig::default()
    }
}

async fn post_raw(
    h: &Harness,
    path: &str,
    ctype: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let mut req = h.http.post(h.url(path)).body(body);
    if let Some(c) = ctype {
        req = req.header("content-type", c);
    }
    let r = tokio::time::timeout(STEP, req.send())
        .await
        .unwrap()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

async fn output_frame(h: &Harness, id: &str) -> Bytes {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no output frame in time"
        );
        let (s, _) = post_raw(
            h,
            &format!("/stream/{id}/publish"),
            Some("image/jpeg"),
            jpeg(64, 120),
        )
        .await;
        assert_eq!(s, 200);
        let r = h
            .http
            .get(h.url(&format!("/stream/{id}/frame")))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return r.bytes().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_json_errors_with_the_right_status() {
    let h = Harness::start(small_limits()).await;
    let (s, b) = post_raw(&h, "/start-job", Some("application/json"), "{not json").await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].is_string());
    let (s, _) = post_raw(&h, "/start-job", Some("application/json"), "[1,2]").await;
    assert_eq!(s, 400);
    let (s, _) = post_raw(
        &h,
        "/start-job",
        Some("application/json"),
        r#"{"model_id": 7}"#,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = post_raw(
        &h,
        "/start-job",
        Some("application/json"),
        r#"{"params": "x"}"#,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = post_raw(
        &h,
        "/stream/start",
        Some("text/plain"),
        r#"{"model_id":"noop"}"#,
    )
    .await;
    assert_eq!(s, 415);
    let big = format!(r#"{{"model_id":"noop","pad":"{}"}}"#, "x".repeat(4096));
    let (s, _) = post_raw(&h, "/stream/start", Some("application/json"), big).await;
    assert_eq!(s, 413);
    let (s, b) = post_raw(
        &h,
        "/job/unknown/control",
        Some("application/json"),
        r#"{"message":{}}"#,
    )
    .await;
    assert_eq!(s, 404, "{b}");
    let (s, _) = h.get("/stream/unknown/status", None).await;
    assert_eq!(s, 404);
    let (s, _) = h.get("/no/such/route", None).await;
    assert_eq!(s, 404);

    // A live job: bad frames and bad control are refused, then good frames still work.
    let (s, st) = h.post_json("/stream/start", None, json!({})).await;
    assert_eq!(s, 200);
    let id = st["stream_id"].as_str().unwrap().to_string();
    let (s, _) = post_raw(
        &h,
        &format!("/stream/{id}/publish"),
        Some("image/png"),
        jpeg(32, 1),
    )
    .await;
    assert_eq!(s, 415);
    let (s, _) = post_raw(
        &h,
        &format!("/stream/{id}/publish"),
        Some("image/jpeg"),
        "not a jpeg",
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = post_raw(
        &h,
        &format!("/stream/{id}/publish"),
        Some("image/jpeg"),
        vec![0xFFu8; 128 * 1024],
    )
    .await;
    assert_eq!(s, 413);
    // A truncated JPEG with a valid start and end reaches the decoder, which skips it.
    let mut broken = jpeg(64, 50).to_vec();
    let n = broken.len();
    broken.drain(40..n - 2);
    let (s, _) = post_raw(
        &h,
        &format!("/stream/{id}/publish"),
        Some("image/jpeg"),
        broken,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post_raw(
        &h,
        &format!("/job/{id}/control"),
        Some("application/json"),
        r#"{"message": 3}"#,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = post_raw(
        &h,
        &format!("/stream/{id}/control"),
        Some("application/json"),
        "",
    )
    .await;
    assert_eq!(s, 400);
    let frame = output_frame(&h, &id).await;
    assert_eq!(&frame[..2], &[0xFF, 0xD8]);
    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    assert_eq!(st["phase"], "running");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_floods_and_garbage_do_not_hurt_other_jobs() {
    let h = Harness::start(small_limits()).await;
    let (_, a) = h.post_json("/start-job", None, json!({})).await;
    let (_, b) = h.post_json("/start-job", None, json!({})).await;
    let a = a["job_id"].as_str().unwrap().to_string();
    let b = b["job_id"].as_str().unwrap().to_string();

    let (ws, _) = tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={a}")))
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    // Garbage of every kind, then a flood far faster than real time: skipped and dropped,
    // never fatal.
    tx.send(Message::Text("hello".into())).await.unwrap();
    tx.send(Message::Binary(Bytes::from_static(b"garbage")))
        .await
        .unwrap();
    tx.send(Message::Binary(Bytes::from(vec![0u8; 100 * 1024])))
        .await
        .unwrap();
    let frame = jpeg(128, 77);
    for _ in 0..400 {
        tx.send(Message::Binary(frame.clone())).await.unwrap();
    }
    let got = tokio::time::timeout(STEP, async {
        loop {
            if let Some(Ok(Message::Binary(b))) = rx.next().await {
                return b;
            }
        }
    })
    .await
    .expect("the flooded job still produces output");
    assert_eq!(&got[..2], &[0xFF, 0xD8]);

    // Past the hard limit the socket closes with 1009; the job lives on.
    tx.send(Message::Binary(Bytes::from(vec![0u8; 300 * 1024])))
        .await
        .unwrap();
    let code = tokio::time::timeout(STEP, async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Close(Some(f)))) => return Some(f.code),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(CloseCode::Size));
    let (s, _) = h.get(&format!("/job/{a}"), None).await;
    assert_eq!(s, 200, "closing the socket does not close the job");

    // The other job works throughout.
    let frame = output_frame(&h, &b).await;
    assert_eq!(&frame[..2], &[0xFF, 0xD8]);
    let metrics = h.metrics().await;
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count("lpgw_frames_dropped_total{reason=\"invalid\"}") >= 1,
        "{metrics}"
    );
    assert!(
        count("lpgw_frames_dropped_total{reason=\"oversized\"}") >= 1,
        "{metrics}"
    );
    assert!(count("lpgw_frames_in_total") >= 400, "{metrics}");
    h.finish().await;
}
