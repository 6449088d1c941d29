//! Selection under faults: each bad orchestrator yields the right rejection, the next one is
//! tried, and nothing hangs.

mod common;

use std::time::Duration;

use common::{Knobs, dead_url, lock, orch, within};
use lpgw_gateway::{Error, Gateway, MaxPrice, RejectReason, Settings, StartRequest};

fn settings(orchestrators: Vec<String>) -> Settings {
    Settings {
        orchestrators,
        probe_timeout: Duration::from_millis(800),
        start_timeout: Duration::from_millis(800),
        ..Settings::default()
    }
}

fn reason_of<'a>(err: &'a Error, url: &str) -> &'a RejectReason {
    &err.rejections()
        .iter()
        .find(|r| r.url == url)
        .unwrap_or_else(|| panic!("no rejection for {url}: {err}"))
        .reason
}

#[tokio::test]
async fn every_fault_gets_its_reason_and_the_healthy_one_wins() {
    let dead = dead_url().await;
    let slow = orch(Knobs {
        grpc_delay: Duration::from_secs(5),
        ..Knobs::default()
    })
    .await;
    let garbage = orch(Knobs {
        grpc_garbage: true,
        ..Knobs::default()
    })
    .await;
    let capped = orch(Knobs {
        grpc_error: Some("OrchestratorCapped".into()),
        ..Knobs::default()
    })
    .await;
    let full = orch(Knobs {
        capacity: 0,
        ..Knobs::default()
    })
    .await;
    let slow_start = orch(Knobs {
        start_delay: Duration::from_secs(5),
        ..Knobs::default()
    })
    .await;
    let expired = orch(Knobs {
        token_ttl: -10,
        ..Knobs::default()
    })
    .await;
    let urls = vec![
        dead.clone(),
        slow.url.clone(),
        garbage.url.clone(),
        capped.url.clone(),
        full.url.clone(),
        slow_start.url.clone(),
        expired.url.clone(),
    ];
    let gw = Gateway::new(settings(urls.clone())).unwrap();
    let err = within(20, gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NoOrchestratorAvailable { .. }),
        "{err}"
    );
    assert_eq!(err.rejections().len(), urls.len(), "{err}");
    assert!(matches!(
        reason_of(&err, &dead),
        RejectReason::Unreachable(_)
    ));
    assert_eq!(reason_of(&err, &slow.url), &RejectReason::Timeout(800));
    assert!(
        matches!(
            reason_of(&err, &garbage.url),
            RejectReason::InvalidResponse(_)
        ),
        "{err}"
    );
    assert!(
        matches!(reason_of(&err, &capped.url), RejectReason::Rpc { message, .. } if message.contains("OrchestratorCapped")),
        "{err}"
    );
    assert_eq!(
        reason_of(&err, &full.url),
        &RejectReason::InsufficientCapacity
    );
    assert_eq!(
        reason_of(&err, &slow_start.url),
        &RejectReason::Timeout(800)
    );
    assert_eq!(
        reason_of(&err, &expired.url),
        &RejectReason::AuthTokenExpired
    );
    assert!(err.is_retryable());
    // Nothing was started anywhere.
    for o in [&slow, &garbage, &capped, &full, &expired] {
        assert!(lock(&o.state.manifests).is_empty());
    }

    // The same set plus one healthy orchestrator: it is picked.
    let good = orch(Knobs::default()).await;
    let mut with_good = urls.clone();
    with_good.insert(3, good.url.clone());
    let gw = Gateway::new(settings(with_good)).unwrap();
    let job = within(20, gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .unwrap();
    assert_eq!(job.orchestrator_url(), good.url);
    within(10, job.close()).await;
}

#[tokio::test]
async fn start_failure_falls_through_to_the_next_candidate() {
    // Both answer GetOrchestrator; the faster one has no capacity at start.
    let full = orch(Knobs {
        capacity: 0,
        ..Knobs::default()
    })
    .await;
    let good = orch(Knobs {
        grpc_delay: Duration::from_millis(200),
        ..Knobs::default()
    })
    .await;
    let gw = Gateway::new(settings(vec![good.url.clone(), full.url.clone()])).unwrap();
    let job = within(10, gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .unwrap();
    assert_eq!(job.orchestrator_url(), good.url);
    assert_eq!(
        lock(&full.state.starts).len(),
        0,
        "503 comes before payment checks"
    );
    within(10, job.close()).await;
}

#[tokio::test]
async fn over_the_price_ceiling_is_never_started() {
    let dear = orch(Knobs {
        price: Some((100, 1)),
        ..Knobs::default()
    })
    .await;
    let mut s = settings(vec![dear.url.clone()]);
    s.ceiling.wei_per_pixel = Some(MaxPrice {
        price_per_unit: 10,
        pixels_per_unit: 1,
    });
    let gw = Gateway::new(s).unwrap();
    let err = within(10, gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .unwrap_err();
    let RejectReason::OverPriceCeiling(why) = reason_of(&err, &dear.url) else {
        panic!("{err}");
    };
    assert!(
        why.contains("price 100 wei/pixel") && why.contains("ceiling 10 wei/pixel"),
        "{why}"
    );
    assert!(!err.is_retryable());
    assert!(lock(&dear.state.starts).is_empty());
}

#[tokio::test]
async fn probe_all_orders_by_response_time() {
    let slower = orch(Knobs {
        grpc_delay: Duration::from_millis(300),
        ..Knobs::default()
    })
    .await;
    let fast = orch(Knobs::default()).await;
    let dead = dead_url().await;
    let gw = Gateway::new(settings(vec![])).unwrap();
    let (ok, rejected) = within(
        10,
        gw.probe_all(&[slower.url.clone(), dead.clone(), fast.url.clone()], None),
    )
    .await;
    let order: Vec<_> = ok.iter().map(|(u, _)| u.clone()).collect();
    assert_eq!(order, [fast.url.clone(), slower.url.clone()]);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].url, dead);
}

#[tokio::test]
async fn empty_list_and_invalid_model_are_clear_errors() {
    let gw = Gateway::new(Settings::default()).unwrap();
    let err = gw.start_lv2v(&StartRequest::new("noop")).await.unwrap_err();
    assert!(matches!(err, Error::NoDiscoverySource));
    let err = gw.start_lv2v(&StartRequest::new(" ")).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)));
}
