//! Interop with the official Python SDK (`livepeer-gateway` 1.0.0): its trickle clients
//! against our server, and our clients against its clients, every byte checked.
//!
//! The SDK lives in a venv made by `scripts/interop-venv.sh`. When the venv is missing these
//! tests say so and pass, unless `LPGW_REQUIRE_INTEROP=1` (set by the project's test command),
//! in which case a missing venv is a failure.

mod server_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use lpgw_testkit::python;
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::json::{Framing, JsonReader, JsonReaderConfig, JsonWriter, JsonWriterConfig};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};
use server_support::TestServer;
use tokio::process::Command;

const LONG: Duration = Duration::from_secs(60);

/// Byte j of segment `seq` is (seq*31 + j*7) % 251 (the same rule as `trickle_peer.py`).
fn pattern(seq: u64, size: usize) -> Vec<u8> {
    let start = (seq * 31 % 251) as usize;
    (0..size).map(|j| ((start + j * 7) % 251) as u8).collect()
}

fn peer_script() -> PathBuf {
    lpgw_testkit::interop_script("trickle_peer.py")
}

fn peer(py: &PathBuf, args: &[&str]) -> Command {
    let mut cmd = Command::new(py);
    cmd.arg(peer_script())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

async fn run_json(mut cmd: Command) -> Value {
    let out = tokio::time::timeout(LONG, cmd.output())
        .await
        .expect("python peer timed out")
        .expect("python peer failed to start");
    assert!(
        out.status.success(),
        "python peer exited with {}",
        out.status
    );
    serde_json::from_slice(&out.stdout).expect("python peer printed JSON")
}

#[tokio::test]
async fn python_publisher_to_our_subscriber() {
    let Some(py) = python() else { return };
    let s = TestServer::with_channel("ch").await;
    let url = s.url("ch");
    let mut sub = Subscriber::new(
        &url,
        SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
    )
    .unwrap();
    let publisher = tokio::spawn(run_json(peer(
        &py,
        &["publish", &url, "--segments", "6", "--size", "150000"],
    )));
    for expect_seq in 0..6u64 {
        let seg = tokio::time::timeout(LONG, sub.next_segment())
            .await
            .expect("segment in time")
            .expect("no error")
            .expect("a segment");
        assert_eq!(seg.seq(), expect_seq);
        assert_eq!(seg.content_type(), Some("text/plain"));
        let data = seg.read_all(1 << 20).await.unwrap();
        assert_eq!(data.len(), 150_000);
        assert!(
            data == pattern(expect_seq, 150_000),
            "segment {expect_seq} differs"
        );
    }
    let report = publisher.await.unwrap();
    assert_eq!(report["bytes"], 900_000);
}

#[tokio::test]
async fn our_publisher_to_python_subscriber() {
    let Some(py) = python() else { return };
    let s = TestServer::with_channel("ch").await;
    let url = s.url("ch");
    let subscriber = tokio::spawn(run_json(peer(
        &py,
        &["subscribe", &url, "--segments", "6", "--start", "0"],
    )));
    // Give the Python subscriber time to open its GET for seq 0.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    for seq in 0..6u64 {
        let mut w = publisher.next_segment().await.unwrap();
        assert_eq!(w.seq(), seq);
        for part in pattern(seq, 120_000).chunks(10_000) {
            w.write(Bytes::copy_from_slice(part)).await.unwrap();
        }
        w.finish().await.unwrap();
    }
    let report = subscriber.await.unwrap();
    let segs = report["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 6, "{report}");
    for (i, seg) in segs.iter().enumerate() {
        assert_eq!(seg["seq"], i as u64);
        assert_eq!(seg["len"], 120_000);
        assert_eq!(seg["match"], true, "segment {i} differs");
    }
    assert_eq!(publisher.stats().bytes, 720_000);
}

#[tokio::test]
async fn python_control_to_our_json_reader() {
    let Some(py) = python() else { return };
    let s = TestServer::with_channel("control").await;
    let url = s.url("control");
    let msgs = json!([
        {"type": "parameters", "params": {"prompt": "a red fox"}},
        {"prompt": "unicode ✓", "n": 3},
        {"keep": "alive"},
        {"last": true}
    ]);
    let mut cmd = peer(&py, &["control", &url, "--messages", &msgs.to_string()]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut reader = JsonReader::new(
        &url,
        JsonReaderConfig {
            subscriber: SubscriberConfig {
                start: SeqRequest::At(0),
                ..SubscriberConfig::default()
            },
            ..JsonReaderConfig::default()
        },
    )
    .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let v = tokio::time::timeout(LONG, reader.next())
            .await
            .expect("message in time")
            .unwrap()
            .expect("a message");
        got.push(v);
    }
    // The keepalive is filtered out; the others arrive in order.
    assert_eq!(got[0], msgs[0]);
    assert_eq!(got[1], msgs[1]);
    assert_eq!(got[2], msgs[3]);
    assert_eq!(reader.stats().keepalives, 1);
    drop(child.stdin.take());
    let status = tokio::time::timeout(LONG, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

async fn our_writer_to_python_reader(framing: Framing, jsonl: bool) {
    let Some(py) = python() else { return };
    let s = TestServer::with_channel("events").await;
    let url = s.url("events");
    let reader_args = ["events", &url, "--count", "3", "--start", "0"];
    let mut args: Vec<&str> = reader_args.to_vec();
    if jsonl {
        args.push("--jsonl");
    }
    let reader = tokio::spawn(run_json(peer(&py, &args)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let writer = JsonWriter::new(
        &url,
        JsonWriterConfig {
            framing,
            ..JsonWriterConfig::default()
        },
    )
    .unwrap();
    let msgs = [
        json!({"type": "stream_started", "request_id": "r1", "channels": []}),
        json!({"type": "parameters_ack", "status": "ok"}),
        json!({"type": "pong", "timestamp": 17}),
    ];
    for m in &msgs {
        writer.send(m).await.unwrap();
    }
    let report = reader.await.unwrap();
    let events = report["events"].as_array().unwrap();
    assert_eq!(events.as_slice(), msgs.as_slice(), "{report}");
    writer.close().await.unwrap();
}

#[tokio::test]
async fn our_json_writer_to_python_channel_reader() {
    our_writer_to_python_reader(Framing::PerSegment, false).await;
}

#[tokio::test]
async fn our_jsonl_writer_to_python_jsonl_reader() {
    our_writer_to_python_reader(
        Framing::Lines {
            rotate: Duration::from_secs(10),
        },
        true,
    )
    .await;
}
