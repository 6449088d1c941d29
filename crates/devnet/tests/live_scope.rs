//! Scope out of the box, as the real Scope live runner behaves: several persistent runners of
//! capacity 1 and the serverless `/scope`; `runner_ready`, pipeline load and status polling,
//! schemas, `start_stream` with the linear graph (in/out channels with roles) and gray video
//! out; 409 for a session already active; pipelines kept across sessions; the
//! live-runner-only orchestrator and the stale-session fault.

mod common;

use std::time::Duration;

use common::scope::*;
use common::*;
use lpgw_devnet::{DevnetConfig, LiveConfig};
use serde_json::{Value, json};

/// The sequence a gateway runs, on a fresh job: ping, status, load, poll, schemas, start
/// with the linear graph, parameters, stop.
async fn drive(c: &mut ScopeClient) {
    c.send(json!({"type":"ping","timestamp":1234,"request_id":"p1"}))
        .await;
    assert_eq!(
        c.next_of("pong").await,
        json!({"type":"pong","timestamp":1234,"request_id":"p1"})
    );
    assert_eq!(c.status().await["status"], "not_loaded");
    c.load(&["gray"]).await;
    let schemas = c.api("GET", "/api/v1/pipelines/schemas", None).await;
    let mode = schemas["data"]["pipelines"]["gray"]["default_mode"].clone();
    assert_eq!(mode, "video");
    let started = c.start_linear(&["gray"], "video").await;
    assert_eq!(started["request_id"], "start");
    let chans = started["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 2, "{started}");
    let (i, o) = (&chans[0], &chans[1]);
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(i),
        [
            "direction",
            "input_track_index",
            "mime_type",
            "role",
            "source_node_id",
            "url"
        ]
    );
    assert_eq!(
        (
            &i["direction"],
            &i["role"],
            &i["input_track_index"],
            &i["source_node_id"]
        ),
        (&json!("in"), &json!("input"), &json!(0), &json!("input"))
    );
    assert_eq!(
        keys(o),
        [
            "direction",
            "mime_type",
            "output_track_index",
            "record_node_id",
            "role",
            "sink_node_id",
            "url"
        ]
    );
    assert_eq!(
        (
            &o["direction"],
            &o["role"],
            &o["sink_node_id"],
            &o["record_node_id"]
        ),
        (
            &json!("out"),
            &json!("output"),
            &json!("output"),
            &Value::Null
        )
    );
    assert_eq!(
        (&i["mime_type"], &o["mime_type"]),
        (&json!("video/MP2T"), &json!("video/MP2T"))
    );
    assert!(i["url"].as_str().unwrap().contains("/ai/trickle/"));
    assert_ne!(i["url"], o["url"]);

    c.send(json!({"type":"parameters","params":{"prompts":[{"text":"dog","weight":1}]},"request_id":"u1"}))
        .await;
    assert_eq!(
        c.next_of("parameters_ack").await,
        json!({"type":"parameters_ack","status":"ok","request_id":"u1"})
    );
    c.send(json!({"type":"stop_stream","request_id":"x1"}))
        .await;
    assert_eq!(
        c.next_of("stream_stopped").await,
        json!({"type":"stream_stopped","request_id":"x1"})
    );
    assert_eq!(
        c.next_of("notification").await,
        json!({"type":"notification","payload":{"type":"stream_stopped"}})
    );
    let l = c.log_containing("Frame processor started").await;
    assert!(
        l.contains(" - scope.server.frame_processor - INFO - [("),
        "{l}"
    );
}

#[tokio::test]
async fn persistent_scope_runners_out_of_the_box() {
    let h = devnet(plain()).await;
    let routes = h.scope_runners();
    assert_eq!(routes, ["scope", "scope-2", "scope-3", "scope-4"]);
    assert_eq!(h.scope_runner().as_deref(), Some("scope"));
    let svc = h.orchestrator_url().to_string();
    let d = discovery_json(&h).await;
    let runners = d[0]["runners"].as_array().unwrap();
    let persistent: Vec<&Value> = runners
        .iter()
        .filter(|r| r["mode"] == "persistent")
        .collect();
    assert_eq!(persistent.len(), 4);
    for p in &persistent {
        assert_eq!(p["app"], "live-video-to-video/scope");
        assert_eq!(
            (p["capacity"].as_u64(), p["capacity_available"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(p.get("price_info").is_none(), "offchain: no price");
    }
    assert!(
        persistent
            .iter()
            .any(|p| p["url"] == format!("{svc}/apps/scope/session"))
    );
    let serverless = runners
        .iter()
        .find(|r| r["url"] == format!("{svc}/scope"))
        .unwrap();
    assert_eq!(serverless["gpu"], json!({"name":"H100"}));

    let (a, r) = persistent_job(&h, "scope").await;
    assert_eq!(r.status().as_u16(), 200);
    let job: Value = r.json().await.unwrap();
    let sid = a["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        job,
        json!({"manifest_id": sid, "session_id": sid,
            "control_url": format!("{svc}/ai/trickle/{sid}-control"),
            "events_url": format!("{svc}/ai/trickle/{sid}-events")})
    );
    let mut c = ScopeClient::new(job);
    assert_eq!(
        c.next_event().await,
        json!({"type":"runner_ready","runner_job_id":null})
    );
    drive(&mut c).await;
    let r = send(http().post(format!("{}/stop", a["control_url"].as_str().unwrap()))).await;
    assert_eq!(r.status().as_u16(), 204);
    assert!(!h.has_channel(&format!("{sid}-control")));
    h.shutdown().await;
}

#[tokio::test]
async fn serverless_scope_offchain() {
    let h = devnet(plain()).await;
    let r = send(
        http()
            .post(format!("{}/scope", h.orchestrator_url()))
            .json(&json!({"params":{}})),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let job: Value = r.json().await.unwrap();
    assert_eq!(
        (&job["publish_url"], &job["subscribe_url"]),
        (&json!(""), &json!(""))
    );
    let mid = job["manifest_id"].as_str().unwrap().to_string();
    assert_eq!(mid.len(), 8);
    assert!(h.has_channel(&format!("{mid}-control")) && h.has_channel(&format!("{mid}-events")));
    let mut c = ScopeClient::new(job);
    assert_eq!(c.next_event().await["type"], "runner_ready");
    drive(&mut c).await;
    assert!(
        !h.has_channel(&format!("{mid}-0-in")),
        "stop removed the media channels"
    );
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
async fn gray_pipeline_turns_the_input_gray() {
    let h = devnet(plain()).await;
    let (_, mut c) = persistent_client(&h, "scope").await;
    c.load(&["gray"]).await;
    let started = c.start_linear(&["gray"], "video").await;
    let (input, output) = (channel_url(&started, "in"), channel_url(&started, "out"));
    let publisher = tokio::spawn(async move { publish_rgb(&input, [255, 0, 0], 45).await });
    let f = first_frame(&output).await;
    assert_eq!((f.width, f.height), (64, 64), "resolution kept");
    // Pure red: BT.601 luma 0.299 * 219 + 16 ≈ 81; gray means neutral chroma.
    let (y, u, v) = (mean(&f.y), mean(&f.u), mean(&f.v));
    assert!((y - 81.5).abs() < 6.0, "luma {y}");
    assert!(
        (u - 128.0).abs() < 3.0 && (v - 128.0).abs() < 3.0,
        "chroma {u} {v}"
    );
    bounded(publisher).await.unwrap();
    h.shutdown().await;
}

#[tokio::test]
async fn capacity_one_per_runner_409_and_pipelines_outlive_sessions() {
    let h = devnet(plain()).await;
    let svc = h.orchestrator_url().to_string();
    let (a, mut c) = persistent_client(&h, "scope").await;
    // Capacity 1: the orchestrator refuses a second reservation.
    let (s, b) = status_text(http().post(format!("{svc}/apps/scope/session"))).await;
    assert_eq!((s, b.as_str()), (503, "no capacity available for runner\n"));
    // The same session again: the wrapper answers 409.
    let r = scope_call(&a).await;
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail":"session already active"})
    );
    // Other runners take more streams at once.
    let (_, mut other) = persistent_client(&h, "scope-2").await;
    assert_eq!(
        other.status().await["status"],
        "not_loaded",
        "own pipelines"
    );
    c.load(&["passthrough"]).await;
    let r = send(http().post(format!("{}/stop", a["control_url"].as_str().unwrap()))).await;
    assert_eq!(r.status().as_u16(), 204);
    // The next session on the same runner finds the pipeline still loaded.
    let (_, mut next) = persistent_client(&h, "scope").await;
    let s = next.status().await;
    assert_eq!(
        (&s["status"], &s["pipeline_id"]),
        (&json!("loaded"), &json!("passthrough"))
    );
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
        (Some(1), Some(0))
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
