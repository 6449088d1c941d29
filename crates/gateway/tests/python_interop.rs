//! Interop with the official Python SDK (`livepeer-gateway` 1.0.0) on a job's channels, in
//! both directions, on a TLS devnet:
//!
//! - a job started by our gateway: the SDK's `Events` (ChannelReader) reads its events and
//!   the messages our gateway writes on its control channel;
//! - a job started by the SDK's `start_lv2v`: its `Control` writes, our `JsonReader` reads;
//!   our `JsonReader` also reads the job's events.
//!
//! The SDK lives in a venv made by `scripts/interop-venv.sh`, found via `LPGW_PYTHON` or the
//! default cache path. Without it these tests say so and pass, unless
//! `LPGW_REQUIRE_INTEROP=1`, in which case a missing venv is a failure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle};
use lpgw_gateway::{Gateway, Settings, StartRequest};
use lpgw_testkit::python;
use lpgw_trickle::client::SubscriberConfig;
use lpgw_trickle::json::{JsonReader, JsonReaderConfig};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

const STEP: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

fn peer(py: &PathBuf) -> Command {
    let mut cmd = Command::new(py);
    cmd.arg(lpgw_testkit::interop_script("lv2v_peer.py"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

async fn devnet() -> DevnetHandle {
    bounded(
        "devnet start",
        Devnet::start(DevnetConfig {
            status_interval: Duration::from_millis(200),
            ..DevnetConfig::default()
        }),
    )
    .await
    .expect("devnet starts")
}

/// Runs the SDK's reader on `url` until a message has `path == value`, while `keep_writing`
/// runs next to it (the reader starts at the live edge, so writes are repeated).
async fn sdk_reads(
    py: &PathBuf,
    url: &str,
    path: &str,
    value: &str,
    keep_writing: impl Future<Output = ()>,
) -> Value {
    let child = peer(py)
        .args(["read", "--url", url, "--path", path, "--value", value])
        .spawn()
        .expect("python runs");
    let out = bounded("sdk reader", async {
        tokio::select! {
            out = child.wait_with_output() => out.expect("python output"),
            () = keep_writing => unreachable!("the writer never stops"),
        }
    })
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sdk printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(v["ok"], true, "{v}");
    assert!(out.status.success());
    v["message"].clone()
}

#[tokio::test]
async fn sdk_channel_reader_reads_our_jobs_control_and_events() {
    let Some(py) = python() else { return };
    let h = devnet().await;
    let gw = Gateway::new(Settings {
        orchestrators: vec![h.orchestrator_url().to_owned()],
        ..Settings::default()
    })
    .unwrap();
    let job = bounded("start", gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .expect("job starts");

    let msg = json!({"prompt": "from-rust", "n": 1});
    let got = sdk_reads(&py, &job.urls().control_url, "prompt", "from-rust", async {
        loop {
            job.send_control(&msg).await.expect("job alive");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    assert_eq!(got, msg);

    // The runner saw the same message: the SDK reads it back from the events channel.
    let events_url = job.urls().events_url.clone().expect("events url");
    let ev = sdk_reads(
        &py,
        &events_url,
        "inference_status.last_params.prompt",
        "from-rust",
        std::future::pending(),
    )
    .await;
    assert_eq!(ev["type"], "status");
    assert_eq!(ev["pipeline"], "noop");

    bounded("close", job.close()).await;
    bounded("teardown", async {
        while h.active_sessions() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn our_json_reader_reads_sdk_control_and_its_jobs_events() {
    let Some(py) = python() else { return };
    let h = devnet().await;
    let mut child = peer(&py)
        .args(["start", "--orch", h.orchestrator_url(), "--model", "noop"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = bounded("sdk output", lines.next_line())
            .await
            .unwrap()
            .expect("a line from the sdk");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let job = next().await;
    assert_eq!(job["ok"], true, "{job}");
    assert_eq!(h.active_sessions(), 1);
    let insecure = || JsonReaderConfig {
        subscriber: SubscriberConfig {
            start: SeqRequest::At(0),
            insecure_tls: true,
            ..SubscriberConfig::default()
        },
        ..JsonReaderConfig::default()
    };

    // The SDK's Control writes; our reader, from the start of the channel, sees it.
    let mut control = JsonReader::new(job["control_url"].as_str().unwrap(), insecure()).unwrap();
    let msg = json!({"prompt": "from-python"});
    stdin
        .write_all(format!("control {msg}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(next().await["ack"], "control");
    let seen = bounded("control message", async {
        loop {
            let v = control.next().await.expect("control readable");
            let v = v.expect("control channel open");
            if v != json!({"keep": "alive"}) {
                break v;
            }
        }
    })
    .await;
    assert_eq!(seen, msg);

    // Our reader follows the runner's events on the SDK's job, parameters included.
    let mut events = JsonReader::new(job["events_url"].as_str().unwrap(), insecure()).unwrap();
    let ev = bounded("status event with params", async {
        loop {
            let v = events.next().await.expect("events readable");
            let v = v.expect("events channel open");
            if v["inference_status"]["last_params"]["prompt"] == "from-python" {
                break v;
            }
        }
    })
    .await;
    assert_eq!(ev["type"], "status");

    stdin.write_all(b"close\n").await.unwrap();
    assert_eq!(next().await["ack"], "closed");
    let status = bounded("sdk exit", child.wait()).await.unwrap();
    assert!(status.success());
    // The SDK's close ends its control channel; our reader sees the end, not an error.
    let end = bounded("control end", async {
        loop {
            match control.next().await {
                Ok(Some(v)) if v == json!({"keep": "alive"}) => {}
                other => break other,
            }
        }
    })
    .await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    h.shutdown().await;
}
