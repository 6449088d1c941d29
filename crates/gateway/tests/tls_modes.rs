//! TLS modes against a self-signed orchestrator: trust on first use (and re-pinning after a
//! restart), skip verification, and system roots.

mod common;

use std::time::Duration;

use common::{Knobs, Orch, orch_tls, self_signed, start_noop, within};
use lpgw_gateway::{Error, Gateway, RejectReason, Settings, TlsMode};
use tokio::net::TcpListener;

fn settings(tls: TlsMode) -> Settings {
    Settings {
        tls,
        probe_timeout: Duration::from_secs(3),
        ..Settings::default()
    }
}

/// A default orchestrator on a fresh local port with a new self-signed certificate.
async fn self_signed_orch() -> Orch {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    orch_tls(listener, Knobs::default(), self_signed()).await
}

#[tokio::test]
async fn trust_on_first_use_pins_and_follows_a_restart() {
    let o = self_signed_orch().await;
    let gw = Gateway::new(settings(TlsMode::TrustOnFirstUse)).unwrap();
    let info = within(10, gw.orchestrator_info(&o.url, None))
        .await
        .unwrap();
    assert_eq!(info.transcoder, o.url);
    // Same certificate: fine again.
    within(10, gw.orchestrator_info(&o.url, None))
        .await
        .unwrap();

    // The orchestrator restarts on the same port with a regenerated certificate: the pin is
    // replaced once and the call succeeds.
    o.accept.abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let listener = TcpListener::bind(o.addr).await.unwrap();
    let restarted = orch_tls(listener, Knobs::default(), self_signed()).await;
    let info = within(10, gw.orchestrator_info(&restarted.url, None))
        .await
        .unwrap();
    assert_eq!(info.transcoder, o.url);
    within(10, gw.orchestrator_info(&restarted.url, None))
        .await
        .unwrap();
    assert_eq!(
        restarted
            .state
            .info_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    // A second orchestrator on another port has its own pin.
    let other = self_signed_orch().await;
    within(10, gw.orchestrator_info(&other.url, None))
        .await
        .unwrap();
}

#[tokio::test]
async fn trust_on_first_use_starts_a_job_over_tls() {
    let o = self_signed_orch().await;
    let gw = Gateway::new(Settings {
        orchestrators: vec![o.url.clone()],
        ..settings(TlsMode::TrustOnFirstUse)
    })
    .unwrap();
    let job = start_noop(&gw).await.unwrap();
    assert!(job.urls().publish_url.starts_with("https://"));
    let trickle = o.state.trickle();
    let mid = job.manifest_id().to_owned();
    within(15, job.close()).await;
    // The publish channel was deleted over the pinned TLS connection.
    assert!(!trickle.has_channel(&mid));
}

#[tokio::test]
async fn skip_verification_accepts_self_signed() {
    let o = self_signed_orch().await;
    let gw = Gateway::new(settings(TlsMode::SkipVerification)).unwrap();
    within(10, gw.orchestrator_info(&o.url, None))
        .await
        .unwrap();
}

#[tokio::test]
async fn system_roots_reject_self_signed() {
    let o = self_signed_orch().await;
    let gw = Gateway::new(settings(TlsMode::SystemRoots)).unwrap();
    let err = within(10, gw.orchestrator_info(&o.url, None))
        .await
        .unwrap_err();
    let Error::Orchestrator(r) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(&r.reason, RejectReason::Unreachable(m) if m.to_lowercase().contains("certificate")),
        "{err}"
    );
}
