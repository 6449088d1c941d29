//! One job's output fans out from one place: ten WebSocket viewers and the newest-frame
//! route cost one decode per output frame, not one per consumer.

mod common;

use std::time::Duration;

use common::{Harness, STEP, jpeg};
use futures::StreamExt as _;
use lpgw_server::ServerConfig;
use tokio_tungstenite::tungstenite::Message;

const VIEWERS: usize = 10;
/// Frames each viewer must see before the counts are compared.
const ENOUGH: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_viewers_of_one_stream_cost_one_decode() {
    let h = Harness::start(ServerConfig::default()).await;
    let (status, started) = h
        .post_json(
            "/stream/start",
            None,
            serde_json::json!({"model_id": "noop"}),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let id = started["stream_id"].as_str().unwrap().to_owned();

    // Viewers only read: none of them claims the input.
    let mut viewers = Vec::new();
    for _ in 0..VIEWERS {
        let (ws, _) = tokio::time::timeout(
            STEP,
            tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={id}"))),
        )
        .await
        .unwrap()
        .expect("viewer connects");
        viewers.push(tokio::spawn(async move {
            let (_tx, mut rx) = ws.split();
            let mut got = 0usize;
            while got < ENOUGH {
                match rx.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        assert_eq!(&b[..2], &[0xFF, 0xD8], "output is a JPEG");
                        got += 1;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("viewer ended early: {other:?}"),
                }
            }
            got
        }));
    }

    let frame = jpeg(128, 90);
    let publisher = {
        let http = h.http.clone();
        let url = h.url(&format!("/stream/{id}/publish"));
        tokio::spawn(async move {
            loop {
                let _ = http
                    .post(&url)
                    .header("Content-Type", "image/jpeg")
                    .body(frame.clone())
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let mut seen = 0;
    for v in viewers {
        seen += tokio::time::timeout(STEP * 2, v)
            .await
            .expect("every viewer gets frames")
            .unwrap();
    }
    // The newest-frame route reads the same decoded output.
    let (code, _) = h.get(&format!("/stream/{id}/frame"), None).await;
    assert!(code == 200 || code == 204, "{code}");
    publisher.abort();

    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    let frames_in = st["frames_in"].as_u64().unwrap();
    let frames_out = st["frames_out"].as_u64().unwrap();
    // One decode per output frame: the decoder's count stays within the input although
    // every viewer received its frames (a decode per consumer would count each one).
    assert!(frames_out >= ENOUGH as u64, "{st}");
    assert!(
        frames_out <= frames_in,
        "{frames_out} decoded output frames for {frames_in} input frames: a decode per viewer? {st}"
    );
    assert_eq!(seen, VIEWERS * ENOUGH);
    let metrics = h.metrics().await;
    let total: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lpgw_frames_out_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("lpgw_frames_out_total");
    assert!(
        total <= frames_in as f64,
        "service decoded {total}: {metrics}"
    );
    h.finish().await;
}
