//! The gateway against the devnet orchestrator and signer emulator.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{start_noop, within};
use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle, Faults, PriceConfig};
use lpgw_gateway::{Error, Gateway, Lv2vJob, RejectReason, Settings, StartRequest};
use lpgw_trickle::client::{Publisher, PublisherConfig};

async fn devnet(cfg: DevnetConfig) -> DevnetHandle {
    within(10, Devnet::start(cfg)).await.expect("devnet")
}

fn plain() -> DevnetConfig {
    DevnetConfig {
        tls: false,
        ..DevnetConfig::default()
    }
}

fn priced() -> DevnetConfig {
    DevnetConfig {
        price: Some(PriceConfig {
            per_unit: 1,
            pixels_per_unit: 1,
        }),
        signer: true,
        payment_interval: Duration::from_millis(300),
        ..plain()
    }
}

fn gateway(d: &DevnetHandle) -> Gateway {
    Gateway::new(Settings {
        orchestrators: vec![d.orchestrator_url().to_owned()],
        signer_url: d.signer_url().map(str::to_owned),
        payment_interval: Duration::from_millis(300),
        probe_timeout: Duration::from_secs(2),
        start_timeout: Duration::from_secs(2),
        ..Settings::default()
    })
    .unwrap()
}

fn only_reason(err: &Error) -> &RejectReason {
    assert_eq!(err.rejections().len(), 1, "{err}");
    &err.rejections()[0].reason
}

/// Feeds TS packets to the job's input until it has made `paid` payments (20 s at most).
async fn feed_until_paid(job: &Lv2vJob, input: &mut Publisher, paid: u64) {
    within(20, async {
        while job.payment_stats().paid < paid {
            input
                .write_segment(Bytes::from_static(&[0x47; 188]))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn offchain_over_tls_with_trust_on_first_use() {
    let d = devnet(DevnetConfig::default()).await;
    assert!(d.orchestrator_url().starts_with("https://"));
    let gw = gateway(&d);
    let job = start_noop(&gw).await.unwrap();
    let mid = job.manifest_id().to_owned();
    assert_eq!(d.active_sessions(), 1);
    assert!(d.has_channel(&mid));
    within(15, job.close()).await;
    within(10, async {
        while d.has_channel(&mid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    d.shutdown().await;
}

#[tokio::test]
async fn offchain_job_gets_runner_events() {
    let d = devnet(DevnetConfig {
        status_interval: Duration::from_millis(200),
        ..plain()
    })
    .await;
    let gw = gateway(&d);
    let mut job = start_noop(&gw).await.unwrap();
    let mut events = job.take_events().unwrap();
    let ev = within(10, events.recv()).await.expect("an event");
    let body = ev.get("event").unwrap_or(&ev);
    assert_eq!(body["type"], "status", "{ev}");
    within(15, job.close()).await;
    d.shutdown().await;
}

#[tokio::test]
async fn onchain_job_is_paid_through_the_signer() {
    let d = devnet(priced()).await;
    let gw = gateway(&d);
    let job = start_noop(&gw).await.unwrap();
    let mid = job.manifest_id().to_owned();
    assert!(
        d.balance(d.signer_address(), &mid) > 0,
        "opening payment credited"
    );
    let opening = job.payment_stats();
    assert_eq!(opening.paid, 1);
    assert!(opening.value_wei > 0, "the opening payment has a value");

    // Feed input; the built-in runner passes it to the output, which drives payments.
    let mut input = Publisher::new(
        &job.urls().publish_url,
        "video/MP2T",
        PublisherConfig::default(),
    )
    .unwrap();
    feed_until_paid(&job, &mut input, 3).await;
    assert!(
        job.payment_stats().value_wei > opening.value_wei,
        "every accepted payment adds its value"
    );
    assert!(!job.is_closed());
    within(15, job.close()).await;
    d.shutdown().await;
}

#[tokio::test]
async fn signer_answers_become_rejections() {
    for (status, want) in [(481u16, "price"), (482, "482"), (500, "500")] {
        let d = devnet(priced()).await;
        d.faults().push_signer_answers(&[status]);
        let err = start_noop(&gateway(&d)).await.unwrap_err();
        let reason = only_reason(&err).to_string();
        assert!(reason.contains(want), "status {status}: {reason}");
        assert_eq!(d.active_sessions(), 0);
        d.shutdown().await;
    }
}

#[tokio::test]
async fn signer_480_refreshes_and_the_job_starts() {
    let d = devnet(priced()).await;
    d.faults().push_signer_answers(&[480]);
    let job = start_noop(&gateway(&d)).await.unwrap();
    assert_eq!(job.payment_stats().refreshes, 1);
    assert_eq!(d.active_sessions(), 1);
    within(15, job.close()).await;
    d.shutdown().await;
}

#[tokio::test]
async fn devnet_faults_become_rejections() {
    let d = devnet(plain()).await;
    let gw = gateway(&d);

    d.faults().set(Faults {
        garbage_grpc: true,
        ..Faults::default()
    });
    let err = start_noop(&gw).await.unwrap_err();
    assert!(
        matches!(only_reason(&err), RejectReason::InvalidResponse(_)),
        "{err}"
    );

    d.faults().set(Faults {
        refuse_rate: 1.0,
        ..Faults::default()
    });
    let err = start_noop(&gw).await.unwrap_err();
    assert_eq!(
        only_reason(&err),
        &RejectReason::InsufficientCapacity,
        "{err}"
    );

    d.faults().set(Faults {
        latency: Duration::from_secs(4),
        ..Faults::default()
    });
    let err = start_noop(&gw).await.unwrap_err();
    assert!(
        matches!(only_reason(&err), RejectReason::Timeout(_)),
        "{err}"
    );

    d.faults().set(Faults::default());
    d.faults().set_capacity(Some(0));
    let err = start_noop(&gw).await.unwrap_err();
    assert!(
        matches!(only_reason(&err), RejectReason::Rpc { message, .. } if message.contains("OrchestratorCapped")),
        "{err}"
    );

    // An unknown model is refused by the capacity check too.
    d.faults().set_capacity(None);
    let err = within(10, gw.start_lv2v(&StartRequest::new("no-such-model")))
        .await
        .unwrap_err();
    assert_eq!(err.rejections().len(), 1, "{err}");
    d.shutdown().await;
}

#[tokio::test]
async fn expired_auth_token_is_rejected_before_start() {
    let d = devnet(DevnetConfig {
        auth_token_ttl: Duration::ZERO,
        ..plain()
    })
    .await;
    let err = start_noop(&gateway(&d)).await.unwrap_err();
    assert_eq!(only_reason(&err), &RejectReason::AuthTokenExpired, "{err}");
    assert_eq!(d.active_sessions(), 0);
    d.shutdown().await;
}

#[tokio::test]
async fn onchain_over_tls_pays_keeps_control_and_streams_events() {
    let d = devnet(DevnetConfig {
        tls: true,
        status_interval: Duration::from_millis(200),
        ..priced()
    })
    .await;
    assert!(d.orchestrator_url().starts_with("https://"));
    let mut job = start_noop(&gateway(&d)).await.unwrap();
    let mut events = job.take_events().unwrap();
    within(10, events.recv()).await.expect("an event over TLS");
    job.send_control(&serde_json::json!({"prompt": "x"}))
        .await
        .unwrap();

    let config = PublisherConfig {
        insecure_tls: true,
        ..PublisherConfig::default()
    };
    let mut input = Publisher::new(&job.urls().publish_url, "video/MP2T", config).unwrap();
    feed_until_paid(&job, &mut input, 2).await;
    let mid = job.manifest_id().to_owned();
    within(15, job.close()).await;
    assert!(!d.has_channel(&format!("{mid}-control")));
    d.shutdown().await;
}
