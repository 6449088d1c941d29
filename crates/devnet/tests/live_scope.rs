//! Scope out of the box: the built-in persistent Scope runner and the serverless `/scope`
//! speak the control protocol (start_stream → stream_started with in/out channels,
//! parameters → parameters_ack, ping → pong, stop_stream → stream_stopped); the
//! live-runner-only orchestrator and the stale-session fault.

mod common;

use std::time::Duration;

use common::*;
use lpgw_devnet::{DevnetConfig, LiveConfig};
use lpgw_trickle::client::SubscriberConfig;
use lpgw_trickle::json::{JsonReader, JsonWriter, JsonWriterConfig};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};

async fn next_of(events: &mut JsonReader, kind: &str) -> Value {
    loop {
        let m = bounded(events.next()).await.unwrap().expect("events open");
        if m["type"] == kind {
            return m;
        }
        assert_ne!(m["type"], "error", "{m}");
    }
}

/// `POST /scope` (serverless Scope) with empty params.
async fn start_scope(h: &lpgw_devnet::DevnetHandle) -> reqwest::Response {
    send(
        http()
            .post(format!("{}/scope", h.orchestrator_url()))
            .json(&json!({"params":{}})),
    )
    .await
}

/// The job's control writer and its events reader (from the first event).
fn job_channels(job: &Value) -> (JsonWriter, JsonReader) {
    let control = JsonWriter::new(
        job["control_url"].as_str().unwrap(),
        JsonWriterConfig::default(),
    )
    .unwrap();
    (
        control,
        json_reader_from_start(job["events_url"].as_str().unwrap()),
    )
}

/// Drives the control protocol against a started job.
async fn drive(job: &Value) {
    assert_eq!(job["publish_url"], "");
    assert_eq!(job["subscribe_url"], "");
    let (control, mut events) = job_channels(job);
    control
        .send(&json!({"type":"ping","timestamp":1234,"request_id":"p1"}))
        .await
        .unwrap();
    let pong = next_of(&mut events, "pong").await;
    assert_eq!(
        pong,
        json!({"type":"pong","timestamp":1234,"request_id":"p1"})
    );

    control
        .send(&json!({"type":"start_stream","request_id":"s1","params":{"prompt":"cat"}}))
        .await
        .unwrap();
    let started = next_of(&mut events, "stream_started").await;
    assert_eq!(started["request_id"], "s1");
    let chans = started["channels"].as_array().unwrap();
    let dir = |d: &str| chans.iter().find(|c| c["direction"] == d).unwrap().clone();
    let (i, o) = (dir("in"), dir("out"));
    assert_eq!(i["mime_type"], "video/MP2T");
    assert_eq!(o["mime_type"], "video/MP2T");
    assert!(i["url"].as_str().unwrap().contains("/ai/trickle/"));
    assert_ne!(i["url"], o["url"]);
    // The channels exist: a subscriber of `out` is accepted (no 404).
    let probe = send(http().get(format!("{}/next", o["url"].as_str().unwrap()))).await;
    assert_ne!(probe.status().as_u16(), 404);

    control
        .send(&json!({"type":"parameters","params":{"prompt":"dog"},"request_id":"u1"}))
        .await
        .unwrap();
    let ack = next_of(&mut events, "parameters_ack").await;
    assert_eq!(
        ack,
        json!({"type":"parameters_ack","status":"ok","request_id":"u1"})
    );

    control
        .send(&json!({"type":"stop_stream","request_id":"x1"}))
        .await
        .unwrap();
    let stopped = next_of(&mut events, "stream_stopped").await;
    assert_eq!(stopped["request_id"], "x1");
}

#[tokio::test]
async fn persistent_scope_runner_out_of_the_box() {
    let h = devnet(plain()).await;
    let route = h.scope_runner().expect("built-in scope runner");
    let svc = h.orchestrator_url().to_string();
    let d = discovery_json(&h).await;
    let runners = d[0]["runners"].as_array().unwrap();
    let persistent = runners.iter().find(|r| r["mode"] == "persistent").unwrap();
    assert_eq!(persistent["app"], "live-video-to-video/scope");
    assert_eq!(persistent["url"], format!("{svc}/apps/{route}/session"));
    assert!(persistent.get("price_info").is_none(), "offchain: no price");
    let serverless = runners
        .iter()
        .find(|r| r["url"] == format!("{svc}/scope"))
        .unwrap();
    assert_eq!(serverless["gpu"], json!({"name":"H100"}));
    assert!(
        serverless["version"]
            .as_str()
            .unwrap()
            .starts_with("serverless")
    );

    let a = post_json(format!("{svc}/apps/{route}/session")).await;
    let sid = a["session_id"].as_str().unwrap().to_string();
    let r = send(
        http()
            .post(format!("{}/scope", a["app_url"].as_str().unwrap()))
            .json(&json!({"params":{}})),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["manifest_id"], sid.as_str());
    assert_eq!(
        job["control_url"],
        format!("{svc}/ai/trickle/{sid}-control")
    );
    drive(&job).await;
    let r = send(http().post(format!("{}/stop", a["control_url"].as_str().unwrap()))).await;
    assert_eq!(r.status().as_u16(), 204);
    assert!(!h.has_channel(&format!("{sid}-control")));
    h.shutdown().await;
}

#[tokio::test]
async fn serverless_scope_offchain() {
    let h = devnet(plain()).await;
    let r = start_scope(&h).await;
    assert_eq!(r.status().as_u16(), 200);
    let job: Value = r.json().await.unwrap();
    let mid = job["manifest_id"].as_str().unwrap();
    assert_eq!(mid.len(), 8);
    assert!(h.has_channel(&format!("{mid}-control")) && h.has_channel(&format!("{mid}-events")));
    drive(&job).await;
    let big = "x".repeat((1 << 20) + 1);
    let (s, b) = status_text(
        http()
            .post(format!("{}/scope", h.orchestrator_url()))
            .body(big),
    )
    .await;
    assert_eq!((s, b.as_str()), (400, "http: request body too large\n"));
    h.shutdown().await;
}

#[tokio::test]
async fn live_only_orchestrator_rejects_lv2v_but_serves_scope() {
    let h = devnet(DevnetConfig {
        live: LiveConfig {
            live_only: true,
            ..LiveConfig::default()
        },
        ..plain()
    })
    .await;
    let (s, b) = start_lv2v(&h, r#"{"model_id":"scope"}"#, "", "").await;
    assert_eq!((s, b.as_str()), (503, "insufficient capacity\n"));
    let p = runner_where(&discovery_json(&h).await, "mode", "persistent");
    assert_eq!(
        (
            p["capacity_available"].as_u64(),
            p["capacity_used"].as_u64()
        ),
        (Some(2), Some(0))
    );

    // The stale-session fault: reservation works, the app call fails with 409.
    h.faults().set_live_stale_session(true);
    let route = h.scope_runner().unwrap();
    let a: Value = post_json(format!("{}/apps/{route}/session", h.orchestrator_url())).await;
    let (s, b) = status_text(
        http()
            .post(format!("{}/scope", a["app_url"].as_str().unwrap()))
            .json(&json!({})),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (409, "runner already has an active session\n")
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.shutdown().await;
}

/// Encodes a second of synthetic video and publishes it to `url`.
async fn publish_video(url: &str) {
    use lpgw_media::{EncoderConfig, InputFrame, InputImage, Publisher, PublisherConfig};
    let (media, events) = Publisher::spawn(PublisherConfig {
        encoder: EncoderConfig {
            preset: "ultrafast".into(),
            keyframe_interval: Duration::from_millis(500),
            threads: 1,
            ..EncoderConfig::default()
        },
        min_segment: Duration::from_millis(100),
        ..PublisherConfig::default()
    })
    .unwrap();
    let mut trickle = lpgw_trickle::client::Publisher::new(
        url,
        "video/MP2T",
        lpgw_trickle::client::PublisherConfig::default(),
    )
    .unwrap();
    let cancel = lpgw_bridge::CancellationToken::new();
    let pump = tokio::spawn(async move {
        lpgw_bridge::publish_segments(
            events,
            &mut trickle,
            lpgw_bridge::PublishOptions {
                close_at_end: false,
                ..lpgw_bridge::PublishOptions::default()
            },
            lpgw_bridge::StatsHandle::new(),
            cancel,
        )
        .await
    });
    for i in 0..30u8 {
        let data = vec![i.wrapping_mul(8); 64 * 64 * 3];
        media
            .push(InputFrame {
                image: InputImage::Rgb24 {
                    width: 64,
                    height: 64,
                    data: data.into(),
                },
                pts: Some(i64::from(i) * 3000),
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    media.close();
    bounded(pump).await.unwrap().unwrap();
}

#[tokio::test]
async fn scope_stream_carries_video_through_the_effect() {
    let h = devnet(plain()).await;
    let r = start_scope(&h).await;
    let job: Value = r.json().await.unwrap();
    let (control, mut events) = job_channels(&job);
    control
        .send(&json!({"type":"start_stream","request_id":"s","params":{"prompt":"neon"}}))
        .await
        .unwrap();
    let started = next_of(&mut events, "stream_started").await;
    let chans = started["channels"].as_array().unwrap();
    let url = |d: &str| {
        chans.iter().find(|c| c["direction"] == d).unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (input, output) = (url("in"), url("out"));
    let mut out = lpgw_trickle::client::Subscriber::new(
        &output,
        SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
    )
    .unwrap();
    let publisher = tokio::spawn(async move { publish_video(&input).await });
    // The processed output starts streaming as MPEG-TS (the segment itself ends only at the
    // runner's next keyframe).
    let mut seg = bounded(out.next_segment())
        .await
        .unwrap()
        .expect("output segment");
    let mut bytes = Vec::new();
    while bytes.len() < 188 {
        match bounded(seg.chunk()).await.unwrap() {
            Some(c) => bytes.extend_from_slice(&c),
            None => break,
        }
    }
    assert!(
        bytes.len() >= 188 && bytes[0] == 0x47,
        "{} bytes",
        bytes.len()
    );
    bounded(publisher).await.unwrap();
    control
        .send(&json!({"type":"stop_stream","request_id":"x"}))
        .await
        .unwrap();
    next_of(&mut events, "stream_stopped").await;
    h.shutdown().await;
}
