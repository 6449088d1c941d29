//! Media keeps the TLS pins that control and events keep: over a TLS orchestrator, a job's
//! media runs on the certificate GetOrchestrator pinned, and when the orchestrator presents
//! another certificate mid-job the media requests fail with a pin error and the job says so.

mod common;

use common::{Harness, devnet_config, jpeg, publish_until};
use lpgw_devnet::DevnetConfig;
use lpgw_server::ServerConfig;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_change_mid_job_fails_media_with_a_pin_error() {
    let dn = DevnetConfig {
        tls: true,
        ..devnet_config()
    };
    let h = Harness::start_with(ServerConfig::default(), dn).await;
    assert!(h.devnet().orchestrator_url().starts_with("https://"));
    let (code, s) = h
        .post_json("/stream/start", None, json!({"model_id": "noop"}))
        .await;
    assert_eq!(code, 200, "{s}");
    let id = s["stream_id"].as_str().unwrap().to_owned();

    // Media works over the pinned certificate.
    let running = publish_until(&h, &id, &jpeg(64, 100), |st| {
        st["frames_out"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert_eq!(running["phase"], "running", "{running}");

    // The orchestrator now presents another certificate (its connections drop, as in a
    // restart): the job's media must refuse it.
    let before = h.devnet().certificate_der().unwrap();
    let after = h.devnet().rotate_certificate().unwrap();
    assert_ne!(before, after);
    let failed = publish_until(&h, &id, &jpeg(64, 100), |st| st["phase"] == "error").await;
    let err = failed["error"].as_str().unwrap_or_default();
    assert!(err.starts_with("media_failed"), "{failed}");
    assert!(
        err.contains("pinned") || err.contains("certificate"),
        "not a pin error: {err}"
    );
    h.finish().await;
}
