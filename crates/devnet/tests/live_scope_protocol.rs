//! The built-in Scope runners' control protocol, message by message, as the real Scope live
//! runner answers: refusals before a pipeline is loaded, the load forms and status rules,
//! schemas, unknown messages, ping, parameters, the silent setup failure, restart, text mode,
//! and the Scope fault knobs.

mod common;

use std::time::Duration;

use common::scope::*;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn refusals_load_forms_status_and_schemas() {
    let h = devnet(plain()).await;
    let (_, mut c) = persistent_client(&h, "scope").await;
    let fresh = c.status().await;
    assert_eq!(
        fresh,
        json!({"status":"not_loaded","pipeline_id":null,"load_params":null,"loaded_lora_adapters":null,
            "error":null,"loading_stage":null,"produces_video":true,"produces_audio":false})
    );
    // No pipeline_ids: refused, whatever is loaded.
    c.send(json!({"type":"start_stream","request_id":"s0","params":{"prompt":"x"}}))
        .await;
    assert_eq!(
        c.next_event().await,
        json!({"type":"error","request_id":"s0","error":"No pipeline loaded. Load a pipeline before start_stream."})
    );
    c.send(json!({"type":"start_stream","request_id":"s1","params":[1]}))
        .await;
    assert_eq!(
        c.next_event().await["error"],
        "start_stream params must be an object"
    );
    // Load forms.
    let r = c
        .api(
            "POST",
            "/api/v1/pipeline/load",
            Some(json!({"load_params": {}})),
        )
        .await;
    assert_eq!(
        (r["status"].as_u64(), &r["data"]),
        (
            Some(400),
            &json!({"detail":"Either 'pipelines' or 'pipeline_ids' must be provided"})
        )
    );
    let r = c
        .api(
            "POST",
            "/api/v1/pipeline/load",
            Some(json!({"pipelines": [{"pipeline_id": "gray"}]})),
        )
        .await;
    assert_eq!(r["status"], 422);
    assert_eq!(
        r["data"]["detail"][0]["loc"],
        json!(["body", "pipelines", 0, "node_id"])
    );
    let r = c
        .api(
            "POST",
            "/api/v1/pipeline/load",
            Some(json!({"pipelines": [{"node_id": "g1", "pipeline_id": "gray", "load_params": {"width": 64}}]})),
        )
        .await;
    assert_eq!(r["status"], 200);
    let s = c.status().await;
    assert_eq!(
        (
            &s["status"],
            &s["pipeline_id"],
            &s["loading_stage"],
            &s["load_params"]
        ),
        (
            &json!("loading"),
            &Value::Null,
            &json!("Initializing pipeline..."),
            &json!({"width": 64})
        )
    );
    let s = c.wait_status("loaded").await;
    assert_eq!(
        (&s["pipeline_id"], &s["error"]),
        (&json!("g1"), &Value::Null)
    );
    // An unknown id: `error` once, then `not_loaded`; the reason only in the logs.
    let r = c
        .api(
            "POST",
            "/api/v1/pipeline/load",
            Some(json!({"pipeline_ids": ["bogus"]})),
        )
        .await;
    assert_eq!(r["status"], 200);
    let mut saw_error = None;
    for _ in 0..100 {
        let s = c.status().await;
        if s["status"] != "loading" {
            saw_error = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = saw_error.expect("load finished");
    assert_eq!((&s["status"], &s["error"]), (&json!("error"), &Value::Null));
    assert_eq!(c.status().await["status"], "not_loaded");
    let l = c.log_containing("Failed to load pipeline bogus: ").await;
    assert!(
        l.contains(" - ERROR - [(") && l.contains("Invalid pipeline ID: bogus"),
        "{l}"
    );
    // Schemas and FastAPI's answers elsewhere.
    let s = c.api("GET", "/api/v1/pipelines/schemas", None).await;
    let p = &s["data"]["pipelines"];
    for (id, mode) in [
        ("gray", "video"),
        ("passthrough", "video"),
        ("streamdiffusionv2", "video"),
        ("longlive", "text"),
        ("krea-realtime-video", "text"),
        ("reward-forcing", "text"),
        ("memflow", "text"),
    ] {
        assert_eq!(p[id]["default_mode"], mode, "{id}");
        for k in [
            "id",
            "name",
            "description",
            "version",
            "supported_modes",
            "supports_prompts",
            "produces_video",
            "produces_audio",
            "usage",
            "inputs",
            "outputs",
            "plugin_name",
        ] {
            assert!(p[id].get(k).is_some(), "{id}.{k}");
        }
    }
    let r = c.api("GET", "/api/v1/nothing", None).await;
    assert_eq!(
        (r["status"].as_u64(), &r["data"]),
        (Some(404), &json!({"detail":"Frontend not built"}))
    );
    let r = c.api("DELETE", "/api/v1/nothing", None).await;
    assert_eq!(
        (r["status"].as_u64(), &r["data"]),
        (Some(405), &json!({"detail":"Method Not Allowed"}))
    );
    let l = c
        .log_containing("HTTP Request: GET http://runner/api/v1/pipeline/status")
        .await;
    assert!(l.ends_with("\"HTTP/1.1 200 OK\""), "{l}");
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_messages_ping_and_parameters_without_a_stream() {
    let h = devnet(plain()).await;
    let (_, mut c) = persistent_client(&h, "scope").await;
    c.send(json!({"keep":"alive"})).await;
    assert_eq!(
        c.next_event().await,
        json!({"type":"error","request_id":null,"error":"Unknown message type: None"})
    );
    c.send(json!({"type":"foo","request_id":"f"})).await;
    assert_eq!(
        c.next_event().await,
        json!({"type":"error","request_id":"f","error":"Unknown message type: foo"})
    );
    c.send(json!({"type":"ping","timestamp":1.5})).await;
    assert_eq!(
        c.next_event().await,
        json!({"type":"pong","request_id":null,"timestamp":1.5})
    );
    c.send(json!({"type":"parameters","params":{"prompt":"x"}}))
        .await;
    assert_eq!(
        c.next_event().await,
        json!({"type":"error","request_id":null,"error":"No active stream"})
    );
    c.send(json!({"type":"parameters","request_id":"p","params":"x"}))
        .await;
    assert_eq!(
        c.next_event().await["error"],
        "parameters params must be an object"
    );
    c.send(json!({"type":"stop_stream","request_id":"s"})).await;
    assert_eq!(
        c.next_event().await,
        json!({"type":"stream_stopped","request_id":"s"})
    );
    let l = c
        .log_containing("Unknown control message type: None payload={'keep': 'alive'}")
        .await;
    assert!(
        l.contains(" - scope.cloud.livepeer_app - WARNING - "),
        "{l}"
    );
    assert!(
        c.seen.iter().all(|e| e["type"] != "status"),
        "no devnet status events"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn silent_failures_answer_stream_started_and_log() {
    let h = devnet(plain()).await;
    let (_, mut c) = persistent_client(&h, "scope").await;
    // Not loaded: channels are made, nothing is ever produced.
    let started = c.start_linear(&["gray"], "video").await;
    assert_eq!(started["channels"].as_array().map(Vec::len), Some(2));
    let (input, output) = (channel_url(&started, "in"), channel_url(&started, "out"));
    let publisher = tokio::spawn(async move { publish_rgb(&input, [0, 0, 255], 30).await });
    c.log_containing("Pipeline setup failed: Pipeline gray not loaded")
        .await;
    assert!(!any_segment_within(&output, Duration::from_secs(2)).await);
    bounded(publisher).await.unwrap();
    c.send(json!({"type":"start_stream","request_id":"again","params":{"pipeline_ids":["gray"]}}))
        .await;
    assert_eq!(
        c.next_event().await,
        json!({"type":"stream_started","request_id":"again","status":"already_running"})
    );
    c.send(json!({"type":"parameters","request_id":"u","params":{"prompt":"y"}}))
        .await;
    assert_eq!(c.next_event().await["type"], "parameters_ack");
    c.send(json!({"type":"stop_stream","request_id":"x"})).await;
    assert_eq!(
        c.next_event().await,
        json!({"type":"stream_stopped","request_id":"x"})
    );
    c.send(json!({"type":"ping","request_id":"after"})).await;
    assert_eq!(
        c.next_event().await["type"],
        "pong",
        "no notification when nothing ran"
    );
    // A malformed graph fails the same way.
    let mut graph = linear_graph(&["gray"]);
    graph["nodes"][2] = json!({"id": "input", "type": "sink"});
    c.send(json!({"type":"start_stream","request_id":"g","params":{"pipeline_ids":["gray"],"graph":graph}}))
        .await;
    assert_eq!(c.next_of("stream_started").await["request_id"], "g");
    c.log_containing("Pipeline setup failed: Invalid graph: Duplicate node ID: 'input'")
        .await;
    h.shutdown().await;
}

#[tokio::test]
async fn restart_unloads_and_sends_runner_ready_again() {
    let h = devnet(plain()).await;
    let (_, mut c) = persistent_client(&h, "scope").await;
    c.load(&["gray"]).await;
    let r = c.api("POST", "/api/v1/restart", None).await;
    assert_eq!(
        (r["status"].as_u64(), &r["data"]),
        (Some(200), &json!({"message":"Server restarting..."}))
    );
    assert_eq!(
        c.next_event().await,
        json!({"type":"runner_ready","runner_job_id":null})
    );
    assert!(c.seen.iter().all(|e| e["type"] != "restarting"));
    assert_eq!(c.status().await["status"], "not_loaded");
    h.shutdown().await;
}

#[tokio::test]
async fn text_mode_generates_video_without_input() {
    let h = devnet(plain()).await;
    let (_, mut c) = persistent_client(&h, "scope").await;
    c.api(
        "POST",
        "/api/v1/pipeline/load",
        Some(json!({"pipeline_ids": ["longlive"], "load_params": {"width": 96, "height": 64}})),
    )
    .await;
    c.wait_status("loaded").await;
    let started = c.start_linear(&["longlive"], "text").await;
    let chans = started["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 1, "text mode: no input channel: {started}");
    let f = first_frame(&channel_url(&started, "out")).await;
    assert_eq!((f.width, f.height), (96, 64));
    c.send(json!({"type":"stop_stream","request_id":"x"})).await;
    c.next_of("stream_stopped").await;
    h.shutdown().await;
}

#[tokio::test]
async fn fault_knobs() {
    let h = devnet(plain()).await;
    // A slower load.
    h.faults()
        .set_scope_load_delay(Some(Duration::from_millis(1500)));
    let (a, mut c) = persistent_client(&h, "scope").await;
    c.api(
        "POST",
        "/api/v1/pipeline/load",
        Some(json!({"pipeline_ids": ["gray"]})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(c.status().await["status"], "loading");
    c.wait_status("loaded").await;
    h.faults().set_scope_load_delay(None);
    // Failing loads: `error` once, then `not_loaded`, the reason in the logs.
    h.faults().set_scope_load_fail(true);
    c.api(
        "POST",
        "/api/v1/pipeline/load",
        Some(json!({"pipeline_ids": ["passthrough"]})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = c.status().await;
    assert_eq!((&s["status"], &s["error"]), (&json!("error"), &Value::Null));
    assert_eq!(c.status().await["status"], "not_loaded");
    c.log_containing("Failed to load pipeline passthrough: ")
        .await;
    h.faults().set_scope_load_fail(false);
    // An uncorrelated error right before the start answer.
    h.faults()
        .set_scope_uncorrelated_error(Some("CUDA error: device-side assert triggered".into()));
    c.load(&["gray"]).await;
    c.send(
        json!({"type":"start_stream","request_id":"s","params":{"pipeline_ids":["gray"],
        "input_mode":"video","graph":linear_graph(&["gray"])}}),
    )
    .await;
    assert_eq!(
        c.next_event().await,
        json!({"type":"error","request_id":null,"error":"CUDA error: device-side assert triggered"})
    );
    assert_eq!(c.next_event().await["type"], "stream_started");
    h.faults().set_scope_uncorrelated_error(None);
    let r = send(http().post(format!("{}/stop", a["control_url"].as_str().unwrap()))).await;
    assert_eq!(r.status().as_u16(), 204);
    // No runner_ready: the first event of a new job is the answer to a ping.
    h.faults().set_scope_no_runner_ready(true);
    let (_, r) = persistent_job(&h, "scope-2").await;
    let mut c = ScopeClient::new(r.json().await.unwrap());
    c.send(json!({"type":"ping","request_id":"p"})).await;
    assert_eq!(c.next_event().await["type"], "pong");
    h.shutdown().await;
}
