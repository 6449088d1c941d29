//! Offchain LV2V start: GetOrchestrator over h2c, empty payment, auth-token credentials,
//! and a clean close.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Knobs, Orch, lock, orch, start_noop, within};
use lpgw_gateway::{Gateway, Lv2vJob, Settings, proto};

/// An unpriced orchestrator, a gateway using it and a started `noop` job.
async fn offchain_job() -> (Orch, Gateway, Lv2vJob) {
    let o = orch(Knobs::default()).await;
    let gw = Gateway::new(Settings {
        orchestrators: vec![o.url.clone()],
        ..Settings::default()
    })
    .unwrap();
    let job = start_noop(&gw).await.unwrap();
    (o, gw, job)
}

#[tokio::test]
async fn offchain_job_starts_and_closes_its_channels() {
    let (o, _gw, job) = offchain_job().await;

    let mid = job.manifest_id().to_owned();
    assert_eq!(*lock(&o.state.manifests), vec![mid.clone()]);
    assert_eq!(
        job.urls().publish_url,
        format!("{}/ai/trickle/{mid}", o.url)
    );
    assert_eq!(
        job.urls().subscribe_url,
        format!("{}/ai/trickle/{mid}-out", o.url)
    );
    assert_eq!(job.orchestrator_url(), o.url);

    // The request named the LV2V capability with the model, and was not a refresh.
    let req = lock(&o.state.requests)[0].clone();
    assert!(!req.ignore_capacity_check);
    let caps = req.capabilities.expect("capabilities");
    assert!(proto::caps::has(&caps.bitstring, 35));
    assert!(
        caps.constraints.unwrap().per_capability[&35]
            .models
            .contains_key("noop")
    );

    // Offchain: empty payment, segment credentials carrying the orchestrator's auth token.
    let (payment, seg) = lock(&o.state.starts)[0].clone();
    assert_eq!(payment, "");
    let seg = proto::decode_seg_data(&seg).unwrap();
    assert_eq!(seg.auth_token, job.orchestrator_info().auth_token);
    assert_eq!(job.payment_stats().paid, 0);

    let trickle = o.state.trickle();
    assert!(trickle.has_channel(&mid));
    within(15, job.close()).await;
    // Closing deletes the publish channel and the control channel.
    assert!(!trickle.has_channel(&mid), "publish channel still there");
    assert!(
        !trickle.has_channel(&format!("{mid}-control")),
        "control channel still there"
    );
    assert_eq!(o.state.info_calls.load(Ordering::SeqCst), 1);
    assert!(lock(&o.state.payments).is_empty());
}

#[tokio::test]
async fn orchestrator_info_is_fetched_over_h2c() {
    let o = orch(Knobs {
        price: Some((7, 3)),
        ..Knobs::default()
    })
    .await;
    let gw = Gateway::new(Settings::default()).unwrap();
    let info = within(10, gw.orchestrator_info(&o.url, None))
        .await
        .unwrap();
    assert_eq!(info.transcoder, o.url);
    let price = info.price_info.unwrap();
    assert_eq!((price.price_per_unit, price.pixels_per_unit), (7, 3));
    // Offchain requests carry no signer material.
    let req = lock(&o.state.requests)[0].clone();
    assert!(req.address.is_empty() && req.sig.is_empty());
}

#[tokio::test]
async fn dropping_a_job_cancels_it() {
    let (o, _gw, job) = offchain_job().await;
    let token = job.cancellation_token();
    let mid = job.manifest_id().to_owned();
    drop(job);
    assert!(token.is_cancelled());
    let trickle = o.state.trickle();
    within(10, async {
        while trickle.has_channel(&mid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
