//! Interop with the official Python SDK's live-runner API: a runner written with its
//! `register_runner` / `create_trickle_channels` registers with devnet, is listed in
//! `/discovery`, reserved with `reserve_session`, called with `call_runner` and stopped; and
//! its `start_scope` starts a Scope job on devnet (offchain and paid) and speaks the control
//! protocol. Skips (passing) without the SDK venv unless `LPGW_REQUIRE_INTEROP=1`.

mod common;

use std::path::Path;

use common::*;
use lpgw_devnet::{DevnetConfig, DevnetHandle, LiveConfig, ScopeRunnerConfig};
use lpgw_testkit::python;
use serde_json::{Value, json};

async fn run(py: &Path, args: &[&str]) -> Value {
    let script = lpgw_testkit::interop_script("live_devnet.py");
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(script).args(args);
    run_python_json(cmd).await
}

#[tokio::test]
async fn sdk_runner_registers_is_discovered_reserved_and_called() {
    let Some(py) = python() else { return };
    let h = devnet(plain()).await;
    let v = run(
        &py,
        &[
            "runner",
            "--orch",
            h.orchestrator_url(),
            "--runner-base",
            h.runner_url(),
            "--secret",
            h.orch_secret().unwrap(),
        ],
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let rid = v["runner_id"].as_str().unwrap();
    let sid = v["session_id"].as_str().unwrap();
    let svc = h.orchestrator_url();
    assert_eq!(
        v["discovery"][0]["url"],
        format!("{svc}/apps/{rid}/session")
    );
    assert_eq!(v["discovery"][0]["capacity_available"], 1);
    assert_eq!(v["app_url"], format!("{svc}/apps/{rid}/session/{sid}/app"));
    assert_eq!(v["echo"]["session"], sid);
    assert_eq!(v["echo"]["in"], format!("{svc}/ai/trickle/{sid}-in"));
    assert_eq!(v["echo_channels"], json!([["in", "out"]]));
    assert_eq!(v["events"], json!([["reserved", sid], ["released", sid]]));
    // The SDK unregistered on close.
    assert!(h.live_sessions(rid).is_empty());
    h.shutdown().await;
}

/// The script reads events with the SDK's `job.events()`, go-livepeer's reader of one
/// document per segment (the real runner streams JSON lines into 10 s segments, which only
/// its `JSONLReader` reads): one event per segment for it.
fn sdk_scope() -> ScopeRunnerConfig {
    ScopeRunnerConfig {
        events_rotate: std::time::Duration::ZERO,
        ..ScopeRunnerConfig::default()
    }
}

async fn scope(h: &DevnetHandle, py: &Path) -> Value {
    let mut args = vec!["scope", "--orch", h.orchestrator_url()];
    if let Some(s) = h.signer_url() {
        args.extend(["--signer", s]);
    }
    let v = run(py, &args).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["runner_ready"], true, "{v}");
    assert_eq!(
        v["pong"],
        json!({"type":"pong","timestamp":42,"request_id":"p1"})
    );
    assert_eq!(
        v["early"],
        json!({"type":"error","error":"No pipeline loaded. Load a pipeline before start_stream."})
    );
    assert_eq!(
        (&v["load_status"], &v["loaded"]),
        (&json!(200), &json!("loaded"))
    );
    assert_eq!(
        v["stream_started"],
        json!({"request_id":"s1","directions":["in","out"],"roles":["input","output"]})
    );
    assert_eq!(v["stream_stopped"], "stream_stopped");
    v
}

#[tokio::test]
async fn sdk_start_scope_offchain_persistent_and_serverless() {
    let Some(py) = python() else { return };
    // Only the persistent live runner: the job is its session.
    let h = devnet(DevnetConfig {
        live: LiveConfig {
            scope: Some(ScopeRunnerConfig {
                serverless: false,
                ..sdk_scope()
            }),
            ..LiveConfig::default()
        },
        ..plain()
    })
    .await;
    let v = scope(&h, &py).await;
    let mid = v["job"]["manifest_id"].as_str().unwrap();
    assert!(mid.starts_with("session_"), "{mid}");
    // The SDK picks one of the persistent runners.
    let holders: Vec<String> = h
        .scope_runners()
        .into_iter()
        .filter(|r| h.live_sessions(r) == [mid.to_string()])
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    h.shutdown().await;
    // Only the serverless entry: an 8-hex manifest from `POST /scope`.
    let h = devnet(DevnetConfig {
        live: LiveConfig {
            scope: Some(ScopeRunnerConfig {
                persistent: false,
                ..sdk_scope()
            }),
            ..LiveConfig::default()
        },
        ..plain()
    })
    .await;
    let v = scope(&h, &py).await;
    assert_eq!(v["job"]["manifest_id"].as_str().unwrap().len(), 8);
    h.shutdown().await;
}

#[tokio::test]
async fn sdk_start_scope_paid_through_signer() {
    let Some(py) = python() else { return };
    let mut cfg = priced_with_signer();
    cfg.live.scope = Some(sdk_scope());
    let h = devnet(cfg).await;
    let v = scope(&h, &py).await;
    let mid = v["job"]["manifest_id"].as_str().unwrap();
    assert!(h.balance(h.signer_address(), mid) > 0, "the job was paid");
    h.shutdown().await;
}
