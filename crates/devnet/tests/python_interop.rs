//! Interop with the official Python SDK: its `get_orch_info` and `start_lv2v` against a TLS
//! devnet, offchain and paying through the signer emulator, then its `Events` (ChannelReader)
//! and `Control` on the job's channels.
//!
//! The SDK lives in a venv made by `scripts/interop-venv.sh`, found via `LPGW_PYTHON` or the
//! default cache path. Without it these tests say so and pass, unless
//! `LPGW_REQUIRE_INTEROP=1`, in which case a missing venv is a failure.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use lpgw_devnet::{DevnetConfig, DevnetHandle};
use lpgw_testkit::python;
use serde_json::Value;

fn script() -> PathBuf {
    lpgw_testkit::interop_script("lv2v_devnet.py")
}

async fn run_sdk(py: &Path, h: &DevnetHandle, model: &str) -> Value {
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(script())
        .arg("--orch")
        .arg(h.orchestrator_url())
        .arg("--model")
        .arg(model);
    if let Some(s) = h.signer_url() {
        cmd.arg("--signer").arg(s);
    }
    run_python_json(cmd).await
}

#[tokio::test]
async fn python_sdk_offchain_get_orch_info_and_start_lv2v() {
    let Some(py) = python() else { return };
    let h = devnet(DevnetConfig {
        tls: true,
        ..plain()
    })
    .await;
    let v = run_sdk(&py, &h, "noop").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["orch_info"]["transcoder"], h.orchestrator_url());
    assert_eq!(v["orch_info"]["has_ticket_params"], false);
    assert_eq!(v["orch_info"]["models"]["noop"]["capacity"], 4);
    let mid = v["job"]["manifest_id"].as_str().unwrap();
    assert_eq!(
        v["job"]["publish_url"],
        format!("{}/ai/trickle/{mid}", h.orchestrator_url()).as_str()
    );
    assert_eq!(v["event"]["type"], "status");
    assert_eq!(v["event"]["pipeline"], "noop");
    assert_eq!(v["control_echo"]["prompt"], "from-control");
    h.shutdown().await;
}

#[tokio::test]
async fn python_sdk_paid_start_through_signer() {
    let Some(py) = python() else { return };
    let h = devnet(DevnetConfig {
        tls: true,
        ..priced_with_signer()
    })
    .await;
    let v = run_sdk(&py, &h, "streamdiffusion").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["orch_info"]["price_per_unit"], 1);
    assert_eq!(v["orch_info"]["has_ticket_params"], true);
    assert_eq!(v["payment_sent"], true);
    let mid = v["job"]["manifest_id"].as_str().unwrap();
    // Initial 60 s prepayment plus one follow-up ticket, minus what the meter took.
    assert!(h.balance(h.signer_address(), mid) > 0);
    h.shutdown().await;
}
