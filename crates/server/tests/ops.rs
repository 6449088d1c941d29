//! Operations surface (OpenAPI, CORS, metrics, SSE heartbeat) and WebSocket reconnects.

mod common;

use std::time::Duration;

use common::{Harness, STEP, jpeg};
use futures::{SinkExt as _, StreamExt as _};
use lpgw_server::ServerConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_cors_metrics_and_sse_heartbeat() {
    let h = Harness::start_with(
        ServerConfig {
            sse_heartbeat_secs: 1,
            cors_origins: vec!["https://app.example".into()],
            ..ServerConfig::default()
        },
        lpgw_devnet::DevnetConfig {
            status_interval: Duration::from_secs(600),
            ..common::devnet_config()
        },
    )
    .await;
    let (status, doc) = h.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in [
        "/start-job",
        "/job/{id}",
        "/ws/stream",
        "/stream/start",
        "/stream/{id}/frame",
        "/streams",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }

    let pre = h
        .http
        .request(reqwest::Method::OPTIONS, h.url("/start-job"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "x-api-key,content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = h
        .http
        .get(h.url("/health"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let (_, s) = h.post_json("/stream/start", None, json!({})).await;
    let id = s["stream_id"].as_str().unwrap().to_string();
    // With the status events far apart, the connection still carries heartbeat comments.
    let resp = h
        .http
        .get(h.url(&format!("/stream/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(STEP, async {
        while !text.contains(": heartbeat") {
            let c = body.next().await.expect("stream open").unwrap();
            text.push_str(&String::from_utf8_lossy(&c));
        }
    })
    .await
    .expect("a heartbeat comment in time");

    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("lpgw_jobs{flow=\"lv2v\",phase=\"connecting\"} 1"),
        "{text}"
    );
    assert!(text.contains("lpgw_jobs_started_total 1"), "{text}");
    assert!(text.contains("lpgw_job_start_seconds_count 1"), "{text}");
    h.finish().await;
}

/// The reference restarted timestamps at 0 on every connection, and the encoder then
/// dropped every frame until they passed the old ones: the stream froze. Here a second
/// connection keeps producing output at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_continues_across_websocket_reconnects() {
    let h = Harness::start(ServerConfig::default()).await;
    let (_, j) = h.post_json("/start-job", None, json!({})).await;
    let id = j["job_id"].as_str().unwrap().to_string();
    for round in 0..3 {
        let (ws, _) = tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={id}")))
            .await
            .unwrap();
        let (mut tx, mut rx) = ws.split();
        let sender = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / 30));
            for i in 0..90u32 {
                tick.tick().await;
                if tx
                    .send(Message::Binary(jpeg(96, (i * 2) as u8)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            tx
        });
        let mut got = 0;
        tokio::time::timeout(STEP, async {
            while got < 5 {
                match rx.next().await {
                    Some(Ok(Message::Binary(_))) => got += 1,
                    Some(Ok(Message::Close(c))) => panic!("round {round}: closed: {c:?}"),
                    Some(_) => {}
                    None => panic!("round {round}: the connection ended"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: output froze after reconnecting"));
        let mut tx = sender.await.unwrap();
        let _ = tx.close().await;
        // The close handshake ends once the service has let go of the input, so the next
        // connection may take it.
        tokio::time::timeout(STEP, async { while rx.next().await.is_some() {} })
            .await
            .expect("the close handshake finishes");
    }
    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    assert_eq!(st["phase"], "running");
    h.finish().await;
}

/// A noisy (hard to compress, so large) JPEG.
fn noisy_jpeg(size: u32, seed: u32) -> bytes::Bytes {
    let mut f = lpgw_media::Yuv420Frame::filled(size, size, 0, 128, 128);
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    for p in f.y.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *p = (x >> 24) as u8;
    }
    lpgw_media::JpegEncoder::new(90)
        .encode(&f)
        .expect("jpeg encodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_loses_frames_while_a_fast_one_keeps_up() {
    let h = Harness::start(ServerConfig {
        jpeg_quality: 95,
        ..ServerConfig::default()
    })
    .await;
    let (_, j) = h.post_json("/start-job", None, json!({})).await;
    let id = j["job_id"].as_str().unwrap().to_string();

    // The slow viewer: a small receive buffer, and it reads nothing until the end.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(h.addr).await.unwrap();
    let (slow, _) = tokio_tungstenite::client_async(h.ws_url(&format!("job_id={id}")), stream)
        .await
        .unwrap();

    let (fast, _) = tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={id}")))
        .await
        .unwrap();
    let (mut tx, mut rx) = fast.split();
    const SENT: usize = 24 * 8;
    let frames: Vec<_> = (0..8).map(|i| noisy_jpeg(384, i + 1)).collect();
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / 24));
        for i in 0..SENT {
            tick.tick().await;
            if tx
                .send(Message::Binary(frames[i % frames.len()].clone()))
                .await
                .is_err()
            {
                break;
            }
        }
        tx
    });
    // Counts binary messages until none arrives for a second.
    async fn drain<S>(rx: &mut S) -> (usize, usize)
    where
        S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    {
        let (mut n, mut bytes) = (0, 0);
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), rx.next()).await {
            if let Message::Binary(b) = m {
                n += 1;
                bytes += b.len();
            }
        }
        (n, bytes)
    }
    let (fast_frames, fast_bytes) = tokio::time::timeout(Duration::from_secs(60), drain(&mut rx))
        .await
        .expect("fast viewer drained");
    let _tx = sender.await.unwrap();
    let (_, mut slow_rx) = slow.split();
    let (slow_frames, _) = tokio::time::timeout(Duration::from_secs(60), drain(&mut slow_rx))
        .await
        .expect("slow viewer drained");
    eprintln!("fast viewer {fast_frames} frames, slow viewer {slow_frames}, of {SENT} sent");
    assert!(
        fast_frames > SENT / 2,
        "the fast viewer kept up: {fast_frames} of {SENT} ({fast_bytes} bytes)"
    );
    assert!(
        slow_frames < fast_frames,
        "the slow viewer lost frames instead of buffering them: {slow_frames} vs {fast_frames} \
         ({fast_bytes} bytes)"
    );
    let text = h.metrics().await;
    let dropped: u64 = text
        .lines()
        .find(|l| l.starts_with("lpgw_frames_dropped_total{reason=\"slow_reader\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(dropped > 0, "slow-reader drops are counted");
    h.finish().await;
}
