//! Offchain LV2V start against devnet: the response shape, the four channels, passthrough
//! of segments by the built-in runner, status events, and teardown when the gateway deletes
//! its publish channel.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use lpgw_devnet::DevnetConfig;
use lpgw_proto::OrchestratorRequest;
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::json::{JsonReader, JsonReaderConfig};
use lpgw_trickle::wire::SeqRequest;

#[tokio::test]
async fn start_passthrough_events_and_teardown() {
    let h = devnet(DevnetConfig {
        capacity: 2,
        ..plain()
    })
    .await;
    let info = orch_info(
        &h,
        OrchestratorRequest {
            capabilities: Some(lv2v_caps("noop")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (status, body) = start_lv2v(
        &h,
        r#"{"model_id":"noop","params":{"prompt":"x"},"publish_url":"","subscribe_url":""}"#,
        "",
        &offchain_seg(&info),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.ends_with('\n'), "respondJsonOk adds no newline");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "control_url",
            "events_url",
            "manifest_id",
            "publish_url",
            "subscribe_url"
        ]
    );
    let mid = v["manifest_id"].as_str().unwrap();
    assert_eq!(mid.len(), 8);
    let base = format!("{}/ai/trickle/{mid}", h.orchestrator_url());
    assert_eq!(v["publish_url"], base.as_str());
    assert_eq!(v["subscribe_url"], format!("{base}-out").as_str());
    assert_eq!(v["control_url"], format!("{base}-control").as_str());
    assert_eq!(v["events_url"], format!("{base}-events").as_str());
    for suffix in ["", "-out", "-control", "-events"] {
        assert!(h.has_channel(&format!("{mid}{suffix}")), "channel {suffix}");
    }
    assert_eq!(h.capacity_in_use("noop"), 1);
    assert_eq!(h.active_sessions(), 1);

    // Passthrough: what goes into publish_url comes out of subscribe_url.
    let mut publ = Publisher::new(
        v["publish_url"].as_str().unwrap(),
        "video/MP2T",
        PublisherConfig::default(),
    )
    .unwrap();
    let mut sub = Subscriber::new(
        v["subscribe_url"].as_str().unwrap(),
        SubscriberConfig {
            start: SeqRequest::At(0),
            ..Default::default()
        },
    )
    .unwrap();
    let payload = Bytes::from_static(b"\x47 pretend transport stream segment");
    bounded(publ.write_segment(payload.clone())).await.unwrap();
    let seg = bounded(sub.next_segment())
        .await
        .unwrap()
        .expect("output segment");
    let out = bounded(seg.read_all(1 << 20)).await.unwrap();
    assert_eq!(out, payload);

    // Status events from the runner, one JSON document per segment.
    let mut events = JsonReader::new(
        v["events_url"].as_str().unwrap(),
        JsonReaderConfig::default(),
    )
    .unwrap();
    let ev = bounded(events.next()).await.unwrap().expect("status event");
    assert_eq!(ev["type"], "status");
    assert_eq!(ev["pipeline"], "noop");
    assert!(ev["timestamp"].as_u64().unwrap() > 0);
    assert!(ev["inference_status"].is_object() && ev["input_status"].is_object());

    // The gateway deleting its publish channel ends the session and frees the slot.
    bounded(publ.close()).await.unwrap();
    wait_until(|| h.active_sessions() == 0).await;
    assert_eq!(h.capacity_in_use("noop"), 0);
    for suffix in ["", "-out", "-control", "-events"] {
        assert!(
            !h.has_channel(&format!("{mid}{suffix}")),
            "channel {suffix} deleted"
        );
    }
    assert!(
        bounded(sub.next_segment()).await.unwrap().is_none(),
        "output ended"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn control_params_reach_the_runner_status() {
    let h = devnet(plain()).await;
    let info = orch_info(&h, OrchestratorRequest::default()).await.unwrap();
    let (status, body) = start_lv2v(
        &h,
        r#"{"model_id":"streamdiffusion"}"#,
        "",
        &offchain_seg(&info),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let control =
        lpgw_trickle::json::JsonWriter::new(v["control_url"].as_str().unwrap(), Default::default())
            .unwrap();
    bounded(control.send(&serde_json::json!({"prompt": "a cat"})))
        .await
        .unwrap();
    let mut events = JsonReader::new(
        v["events_url"].as_str().unwrap(),
        JsonReaderConfig::default(),
    )
    .unwrap();
    let seen = bounded(async {
        loop {
            let ev = events.next().await.unwrap().expect("event");
            if ev["inference_status"]["last_params"]["prompt"] == "a cat" {
                return ev;
            }
        }
    })
    .await;
    assert_eq!(seen["pipeline"], "streamdiffusion");
    h.shutdown().await;
    // Shutdown ended the session and deleted its channels.
}

#[tokio::test]
async fn idle_input_channel_is_swept_and_the_session_closes() {
    let h = devnet(DevnetConfig {
        trickle_idle_timeout: Duration::from_millis(300),
        ..plain()
    })
    .await;
    let info = orch_info(&h, OrchestratorRequest::default()).await.unwrap();
    let (status, body) = start_lv2v(&h, r#"{"model_id":"noop"}"#, "", &offchain_seg(&info)).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mid = v["manifest_id"].as_str().unwrap().to_string();
    // Nobody publishes input: the sweep removes the channel and the session ends with it.
    wait_until(|| h.active_sessions() == 0).await;
    assert!(!h.has_channel(&mid) && !h.has_channel(&format!("{mid}-control")));
    assert_eq!(h.capacity_in_use("noop"), 0);
    h.shutdown().await;
}
