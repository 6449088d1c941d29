//! The built `lpgw` binary against an in-test devnet: `orch-info --json`, `start` (stopped
//! by SIGTERM and by the end of stdin), a failing `start`, and `lpgw devnet` itself.

use std::process::Stdio;
use std::time::Duration;

use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle, PriceConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Every step is bounded by this, so a bug fails instead of hanging.
const STEP: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

fn lpgw() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lpgw"));
    c.env("LPGW_LOG", "warn")
        .env_remove("LIVEPEER_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    c
}

async fn devnet(cfg: DevnetConfig) -> DevnetHandle {
    bounded(
        "devnet start",
        Devnet::start(DevnetConfig {
            status_interval: Duration::from_millis(200),
            ..cfg
        }),
    )
    .await
    .expect("devnet starts")
}

async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = bounded("reading a line", lines.next_line())
        .await
        .expect("stdout readable")
        .expect("a line before the end of output");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Reads lines until one has `"type": ty`, returning it.
async fn until_type(lines: &mut Lines<BufReader<ChildStdout>>, ty: &str) -> Value {
    loop {
        let v = next_json(lines).await;
        if v["type"] == ty {
            return v;
        }
    }
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("child still running");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -TERM {pid} failed");
}

async fn sessions_drain(h: &DevnetHandle) {
    bounded("devnet session teardown", async {
        while h.active_sessions() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn orch_info_json_describes_a_tls_devnet() {
    let h = devnet(DevnetConfig::default()).await;
    let out = bounded(
        "orch-info",
        lpgw()
            .args([
                "orch-info",
                "--json",
                "--model",
                "noop",
                h.orchestrator_url(),
            ])
            .output(),
    )
    .await
    .expect("lpgw runs");
    assert!(out.status.success(), "exit {}", out.status);
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let entry = &v[0];
    assert_eq!(entry["ok"], true, "{v}");
    assert_eq!(entry["url"], h.orchestrator_url());
    assert_eq!(entry["info"]["transcoder"], h.orchestrator_url());
    assert_eq!(entry["info"]["price"], Value::Null);
    let models: Vec<&str> = entry["info"]["lv2v_models"]
        .as_array()
        .expect("model list")
        .iter()
        .filter_map(|m| m["model"].as_str())
        .collect();
    assert_eq!(models, ["noop", "streamdiffusion"]);
    assert_eq!(entry["info"]["lv2v_models"][0]["capacity"], 4);
    // The auth token is a credential: never printed.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("auth_token\""));
    h.shutdown().await;
}

#[tokio::test]
async fn orch_info_reports_a_dead_orchestrator_and_fails() {
    let h = devnet(DevnetConfig::default()).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", l.local_addr().unwrap())
    };
    let out = bounded(
        "orch-info",
        lpgw()
            .args(["orch-info", "--json", h.orchestrator_url(), &dead])
            .output(),
    )
    .await
    .expect("lpgw runs");
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[1]["url"], dead.as_str());
    assert_eq!(v[1]["ok"], false);
    assert!(
        v[1]["error"].as_str().unwrap().contains("unreachable"),
        "{v}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn start_runs_until_sigterm_then_closes_the_session() {
    let h = devnet(DevnetConfig {
        price: Some(PriceConfig {
            per_unit: 1,
            pixels_per_unit: 1,
        }),
        signer: true,
        ..DevnetConfig::default()
    })
    .await;
    let mut child = lpgw()
        .args([
            "start",
            "--model",
            "noop",
            "--orch",
            h.orchestrator_url(),
            "--signer",
            h.signer_url().unwrap(),
        ])
        .spawn()
        .expect("lpgw starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let job = next_json(&mut lines).await;
    assert_eq!(job["type"], "started", "{job}");
    assert_eq!(job["orchestrator"], h.orchestrator_url());
    let mid = job["manifest_id"].as_str().expect("manifest id").to_owned();
    assert_eq!(
        job["publish_url"],
        format!("{}/ai/trickle/{mid}", h.orchestrator_url())
    );
    assert_eq!(h.active_sessions(), 1);
    assert!(h.has_channel(&format!("{mid}-control")));
    // Paid through the signer emulator: the opening payment is credited.
    assert!(h.balance(h.signer_address(), &mid) > 0);
    // Events flow (the runner's status events every 200 ms).
    let ev = until_type(&mut lines, "event").await;
    assert_eq!(ev["event"]["type"], "status", "{ev}");

    sigterm(&child);
    let closed = until_type(&mut lines, "closed").await;
    assert_eq!(closed["manifest_id"], mid.as_str());
    assert_eq!(closed["why"], "signal");
    let status = bounded("exit", child.wait()).await.expect("wait");
    assert!(status.success(), "exit {status}");
    sessions_drain(&h).await;
    assert!(!h.has_channel(&mid));
    h.shutdown().await;
}

#[tokio::test]
async fn start_sends_stdin_control_and_stops_at_end_of_input() {
    let h = devnet(DevnetConfig::default()).await;
    let mut child = lpgw()
        .args(["start", "--model", "streamdiffusion", "--control-stdin"])
        .args(["--orch", h.orchestrator_url()])
        .stdin(Stdio::piped())
        .spawn()
        .expect("lpgw starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let job = next_json(&mut lines).await;
    assert_eq!(job["type"], "started", "{job}");
    let msg = json!({"prompt": "from-stdin"});
    bounded(
        "write stdin",
        stdin.write_all(format!("{msg}\n").as_bytes()),
    )
    .await
    .unwrap();
    let sent = until_type(&mut lines, "control_sent").await;
    assert_eq!(sent["message"], msg);
    // The runner reports the parameters it received in its status events.
    loop {
        let ev = until_type(&mut lines, "event").await;
        if ev["event"]["inference_status"]["last_params"]["prompt"] == "from-stdin" {
            break;
        }
    }
    drop(stdin);
    let closed = until_type(&mut lines, "closed").await;
    assert_eq!(closed["why"], "end of input");
    let status = bounded("exit", child.wait()).await.expect("wait");
    assert!(status.success(), "exit {status}");
    sessions_drain(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn start_scope_reserves_a_live_runner_and_stops_it_at_the_end() {
    let h = devnet(DevnetConfig::default()).await;
    let mut child = lpgw()
        .args(["start", "--model", "scope", "--control-stdin"])
        .args(["--orch", h.orchestrator_url()])
        .stdin(Stdio::piped())
        .spawn()
        .expect("lpgw starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let job = next_json(&mut lines).await;
    assert_eq!(job["type"], "started", "{job}");
    assert_eq!(job["flow"], "live-runner", "{job}");
    assert!(
        job["publish_url"].is_string() && job["subscribe_url"].is_string(),
        "{job}"
    );
    assert_eq!(h.scope_sessions().len(), 1);
    let msg = json!({"type": "parameters", "params": {"prompt": "a heron"}});
    bounded(
        "write stdin",
        stdin.write_all(format!("{msg}\n").as_bytes()),
    )
    .await
    .unwrap();
    // The Scope runner acknowledges parameter updates on the events channel.
    loop {
        let ev = until_type(&mut lines, "event").await;
        if ev["event"]["type"] == "parameters_ack" {
            break;
        }
    }
    drop(stdin);
    let closed = until_type(&mut lines, "closed").await;
    assert_eq!(closed["why"], "end of input");
    let status = bounded("exit", child.wait()).await.expect("wait");
    assert!(status.success(), "exit {status}");
    // Closing the job stopped the reserved session at the orchestrator.
    for _ in 0..50 {
        if h.scope_sessions().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(h.scope_sessions().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn start_without_capacity_lists_rejections_and_fails() {
    let h = devnet(DevnetConfig::default()).await;
    h.faults().set_capacity(Some(0));
    let out = bounded(
        "start",
        lpgw()
            .args(["start", "--model", "noop", "--orch", h.orchestrator_url()])
            .output(),
    )
    .await
    .expect("lpgw runs");
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["type"], "failed");
    assert_eq!(v["rejections"][0]["url"], h.orchestrator_url());
    assert_eq!(h.active_sessions(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn devnet_command_prints_urls_and_stops_on_sigterm() {
    let mut child = lpgw()
        .args(["devnet", "--listen", "127.0.0.1:0", "--signer", "--json"])
        .args(["--price", "2/1", "--models", "noop"])
        .spawn()
        .expect("lpgw devnet starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let urls = next_json(&mut lines).await;
    let orch = urls["orchestrator"].as_str().expect("orchestrator url");
    assert!(orch.starts_with("https://127.0.0.1:"), "{urls}");
    assert!(urls["signer"].as_str().unwrap().starts_with("http://"));
    assert!(urls["signer_address"].as_str().unwrap().starts_with("0x"));
    // External live runners register at the runner URL with the orchestrator secret.
    assert!(urls["runner_url"].as_str().unwrap().starts_with("http"));
    assert!(!urls["orch_secret"].as_str().unwrap().is_empty());
    assert!(urls["scope_runner"].is_string(), "{urls}");
    // The printed token is enough for a gateway: it names the orchestrator and signer.
    let token = urls["token"].as_str().unwrap();
    let out = bounded(
        "orch-info",
        lpgw()
            .args(["orch-info", "--json", "--model", "noop", "--token", token])
            .output(),
    )
    .await
    .expect("lpgw runs");
    assert!(out.status.success(), "exit {}", out.status);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v[0]["url"], orch);
    assert_eq!(v[0]["info"]["price"]["price_per_unit"], 2);
    assert_eq!(v[0]["info"]["onchain"], true);
    sigterm(&child);
    let status = bounded("devnet exit", child.wait()).await.expect("wait");
    assert!(status.success(), "exit {status}");
}

#[tokio::test]
async fn discover_asks_the_signer_and_filters_by_model() {
    let h = devnet(DevnetConfig {
        models: vec!["noop".into()],
        signer: true,
        ..DevnetConfig::default()
    })
    .await;
    let signer = h.signer_url().unwrap();
    let run = |model: &'static str| {
        lpgw()
            .args(["discover", "--json", "--probe", "--signer", signer])
            .args(["--model", model])
            .output()
    };
    let out = bounded("discover", run("noop")).await.expect("lpgw runs");
    assert!(out.status.success(), "exit {}", out.status);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["usable"][0]["url"], h.orchestrator_url(), "{v}");
    assert_eq!(v["rejected"], json!([]));
    let out = bounded("discover", run("other")).await.expect("lpgw runs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["usable"], json!([]), "{v}");
    h.shutdown().await;
}
