//! `POST /stream/{id}/publish?seq=N`: frames numbered at or below the highest accepted are
//! skipped, invalid numbers are refused, and concurrent duplicates have one winner.

mod common;

use common::{Harness, jpeg};
use lpgw_server::ServerConfig;
use serde_json::{Value, json};

async fn publish(h: &Harness, id: &str, query: &str, body: bytes::Bytes) -> (u16, Value) {
    h.publish_jpeg(id, query, body).await
}

async fn stream(h: &Harness) -> String {
    let (status, s) = h.post_json("/stream/start", None, json!({})).await;
    assert_eq!(status, 200, "{s}");
    s["stream_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_duplicate_and_invalid_seq() {
    let h = Harness::start(ServerConfig::default()).await;
    let id = stream(&h).await;
    let frame = jpeg(64, 100);

    let (s, b) = publish(&h, &id, "?seq=5", frame.clone()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"status": "ok", "seq": 5}));
    for (q, n) in [("?seq=5", 5), ("?seq=3", 3), ("?seq=0", 0)] {
        let (s, b) = publish(&h, &id, q, frame.clone()).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b,
            json!({"status": "skipped", "reason": "stale_seq", "seq": n, "last_seq": 5})
        );
    }
    let (s, b) = publish(&h, &id, "?seq=9", frame.clone()).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")), "{b}");
    // Without seq the frame is fed as before, and the last number stays.
    let (s, b) = publish(&h, &id, "", frame.clone()).await;
    assert_eq!((s, b), (200, json!({"status": "ok"})));
    let (_, b) = publish(&h, &id, "?seq=8", frame.clone()).await;
    assert_eq!(b["last_seq"], 9);

    for q in [
        "?seq=-1",
        "?seq=abc",
        "?seq=",
        "?seq=1.5",
        "?seq=%2B12",
        "?seq=99999999999999999999999",
        "?seq=10&seq=11",
    ] {
        let (s, b) = publish(&h, &id, q, frame.clone()).await;
        assert_eq!(s, 400, "{q}: {b}");
        assert!(b["error"].as_str().unwrap().contains("seq"), "{q}: {b}");
    }
    // A refused body does not use up its number.
    let (s, _) = publish(&h, &id, "?seq=20", bytes::Bytes::from_static(b"not a jpeg")).await;
    assert_eq!(s, 400);
    let (s, b) = publish(&h, &id, "?seq=20", frame.clone()).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")), "{b}");

    // Skips are counted for the stream and in the metrics.
    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    assert_eq!(st["frames_dropped_stale_seq"], 4, "{st}");
    assert_eq!(st["last_seq"], 20, "{st}");
    assert!(st["frames_dropped"].as_u64().unwrap() >= 4, "{st}");
    let text = h.metrics().await;
    assert!(
        text.contains("lpgw_frames_dropped_total{reason=\"stale_seq\"} 4\n"),
        "{text}"
    );

    // A stream that ended still answers 410, seq or not.
    let (s, _) = h
        .post_json(&format!("/stream/{id}/stop"), None, json!({}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = publish(&h, &id, "?seq=100", frame).await;
    assert_eq!(s, 410);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_of_one_seq_accept_exactly_one() {
    let h = Harness::start(ServerConfig::default()).await;
    let id = stream(&h).await;
    let frame = jpeg(64, 80);
    // Media starts with the first frame; start it so the race below is only about seq.
    let (s, _) = publish(&h, &id, "?seq=0", frame.clone()).await;
    assert_eq!(s, 200);
    for round in 1..=3u64 {
        let query = format!("?seq={round}");
        let posts = (0..12).map(|_| publish(&h, &id, &query, frame.clone()));
        let results = futures::future::join_all(posts).await;
        assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
        let ok = results.iter().filter(|(_, b)| b["status"] == "ok").count();
        let skipped = results
            .iter()
            .filter(|(_, b)| b["status"] == "skipped" && b["last_seq"] == round)
            .count();
        assert_eq!((ok, skipped), (1, 11), "round {round}: {results:?}");
    }
    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    assert_eq!(st["frames_dropped_stale_seq"], 33, "{st}");
    h.finish().await;
}
