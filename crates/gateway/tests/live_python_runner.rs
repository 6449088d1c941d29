//! Interop: a live runner written with the official Python SDK (`register_runner`,
//! `create_trickle_channels`, `tests/interop/live_runner_peer.py`) registers with devnet; our
//! gateway discovers it, reserves a paid session, calls its app, and stops the session,
//! which the runner sees as o2r `reserved`/`released` events.
//!
//! The SDK lives in a venv made by `scripts/interop-venv.sh`, found via `LPGW_PYTHON` or the
//! default cache path. Without it this test says so and passes, unless
//! `LPGW_REQUIRE_INTEROP=1`, in which case a missing venv is a failure.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle, PriceConfig};
use lpgw_gateway::{
    Fallback, FundingEnd, Gateway, RunnerFilter, RunnerMode, RunnerOffer, RunnerRequest, Settings,
};
use lpgw_testkit::python;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const APP: &str = "live-video-to-video/echo";

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("python runner: no {what} in time"))
        .expect("python stdout")
        .unwrap_or_else(|| panic!("python runner exited before {what}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
}

/// devnet with a 1 wei/pixel price and its signer, as both tests need.
async fn priced_devnet() -> DevnetHandle {
    Devnet::start(DevnetConfig {
        price: Some(PriceConfig {
            per_unit: 1,
            pixels_per_unit: 1,
        }),
        signer: true,
        ..DevnetConfig::default()
    })
    .await
    .unwrap()
}

/// Starts the SDK runner peer against `d`, with piped stdin (closing it stops the peer).
fn spawn_runner(py: &Path, d: &DevnetHandle) -> Child {
    let script = lpgw_testkit::interop_script("live_runner_peer.py");
    tokio::process::Command::new(py)
        .arg(script)
        .arg(d.runner_url())
        .arg(d.orch_secret().unwrap())
        .arg(APP)
        .arg("1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts")
}

/// Gateway settings for `d`'s orchestrator and signer, with no fallback route.
fn settings(d: &DevnetHandle) -> Settings {
    let mut s = Settings {
        orchestrators: vec![d.orchestrator_url().to_owned()],
        signer_url: d.signer_url().map(str::to_owned),
        ..Settings::default()
    };
    s.live.fallback = Fallback::none();
    s
}

/// Discovers `APP` runners and returns the offer of the runner registered as `runner_id`.
async fn discover_runner(gw: &Gateway, runner_id: &str) -> RunnerOffer {
    let found = tokio::time::timeout(
        Duration::from_secs(20),
        gw.discover_runners(&RunnerFilter::app(APP)),
    )
    .await
    .unwrap()
    .unwrap();
    found
        .offers
        .iter()
        .find(|o| o.url.contains(runner_id))
        .expect("the python runner is discovered")
        .clone()
}

#[tokio::test]
async fn python_sdk_runner_is_reserved_paid_and_used_by_our_gateway() {
    let Some(py) = python() else { return };
    let d = priced_devnet().await;
    let mut child = spawn_runner(&py, &d);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let registered = next_line(&mut lines, "registration").await;
    let runner_id = registered["registered"].as_str().unwrap().to_owned();

    let gw = Gateway::new(settings(&d)).unwrap();
    let offer = discover_runner(&gw, &runner_id).await;
    assert_eq!(offer.mode, RunnerMode::Persistent);
    // 1 USD/hour at 2000 USD/ETH.
    assert_eq!(offer.price.unwrap().wei, 138_888_888_888);

    let session = tokio::time::timeout(Duration::from_secs(20), gw.reserve_session(&offer))
        .await
        .unwrap()
        .unwrap();
    let sid = session.session_id().to_owned();
    assert_eq!(
        next_line(&mut lines, "reserved event").await,
        json!({"event": "reserved", "session": sid})
    );
    assert!(session.payment_stats().paid >= 1);

    let reply = session
        .call(&RunnerRequest::json("echo", &json!({})))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body = reply.json().await.unwrap();
    assert_eq!(body["session"], sid.as_str());
    assert!(
        body["in"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/ai/trickle/{sid}-in"))
    );
    assert!(
        body["out"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/ai/trickle/{sid}-out"))
    );
    assert_eq!(
        next_line(&mut lines, "echo").await,
        json!({"echo": sid, "channels": ["in", "out"]})
    );
    assert!(d.has_channel(&format!("{sid}-in")));

    tokio::time::timeout(Duration::from_secs(20), session.close())
        .await
        .unwrap();
    assert_eq!(
        next_line(&mut lines, "released event").await,
        json!({"event": "released", "session": sid})
    );
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_python_runner_going_away_releases_the_session_and_the_gateway_notices() {
    let Some(py) = python() else { return };
    let d = priced_devnet().await;
    let mut child = spawn_runner(&py, &d);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let runner_id = next_line(&mut lines, "registration").await["registered"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut s = settings(&d);
    s.live.payment_interval = Duration::from_millis(200);
    let gw = Gateway::new(s).unwrap();
    let offer = discover_runner(&gw, &runner_id).await;
    let session = tokio::time::timeout(Duration::from_secs(20), gw.reserve_session(&offer))
        .await
        .unwrap()
        .unwrap();
    next_line(&mut lines, "reserved event").await;
    // The runner unregisters and exits: the orchestrator releases its sessions, and the next
    // payment finds the session gone.
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    tokio::time::timeout(Duration::from_secs(10), session.ended())
        .await
        .expect("the gateway notices");
    assert_eq!(session.funding_end(), Some(FundingEnd::Released));
    tokio::time::timeout(Duration::from_secs(20), session.close())
        .await
        .unwrap();
    d.shutdown().await;
}
