//! Payments through the remote signer: signed GetOrchestrator, the opaque state, 480/481/482
//! and failures, and periodic payments driven by output segments.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{Knobs, Orch, Signer, lock, orch, signer, start_noop, within};
use lpgw_gateway::{EndReason, Error, Gateway, Lv2vJob, RejectReason, Settings, proto};
use lpgw_trickle::client::{Publisher, PublisherConfig};

fn settings(orchs: &[&Orch], signer: &Signer) -> Settings {
    Settings {
        orchestrators: orchs.iter().map(|o| o.url.clone()).collect(),
        signer_url: Some(signer.url.clone()),
        payment_interval: Duration::from_millis(200),
        ..Settings::default()
    }
}

fn priced() -> Knobs {
    Knobs {
        price: Some((10, 1)),
        ..Knobs::default()
    }
}

/// A priced orchestrator, a signer and a gateway paying it, with a started `noop` job.
async fn started_job() -> (Orch, Signer, Gateway, Lv2vJob) {
    let o = orch(priced()).await;
    let s = signer().await;
    let gw = Gateway::new(settings(&[&o], &s)).unwrap();
    let job = start_noop(&gw).await.unwrap();
    (o, s, gw, job)
}

/// Publishes to the job's output channel, as its runner would.
fn output_publisher(job: &Lv2vJob) -> Publisher {
    Publisher::new(
        &job.urls().subscribe_url,
        "video/MP2T",
        PublisherConfig::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn onchain_start_pays_with_the_signers_headers() {
    let (o, s, _gw, job) = started_job().await;

    // GetOrchestrator was signed with the signer's material.
    let req = lock(&o.state.requests)[0].clone();
    assert_eq!(req.address, vec![0x11; 20]);
    assert_eq!(req.sig, vec![0x22; 65]);
    // The start carried the signer's payment and credentials.
    let (payment, seg) = lock(&o.state.starts)[0].clone();
    let payment = proto::decode_payment(&payment).unwrap();
    assert_eq!(payment.sender, vec![0x11; 20]);
    assert_eq!(payment.expected_price.unwrap().price_per_unit, 10);
    assert!(proto::decode_seg_data(&seg).unwrap().auth_token.is_some());
    // The opening request: LV2V type, capabilities, no state, no manifest yet.
    let first = lock(&s.state.requests)[0].clone();
    assert_eq!(first["type"], "lv2v");
    assert!(first.get("state").is_none());
    assert!(first.get("ManifestID").is_none());
    assert!(first["capabilities"].is_string());
    // The signer is told the most it may pay: the price plus 1.2 %, in the lv2v unit.
    assert_eq!(
        first["maxPrice"],
        serde_json::json!({"price": 11, "currency": "wei", "unit": "720p-pixel-seconds"})
    );
    assert_eq!(job.payment_stats().paid, 1);
    within(10, job.close()).await;
}

#[tokio::test]
async fn signer_material_is_fetched_once() {
    let a = orch(priced()).await;
    let b = orch(priced()).await;
    let s = signer().await;
    let gw = Gateway::new(settings(&[], &s)).unwrap();
    for _ in 0..3 {
        within(10, gw.orchestrator_info(&a.url, None))
            .await
            .unwrap();
        within(10, gw.orchestrator_info(&b.url, None))
            .await
            .unwrap();
    }
    assert_eq!(s.state.sign_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refresh_480_then_pay() {
    let o = orch(priced()).await;
    let s = signer().await;
    lock(&s.state.script).extend([480, 480]);
    let gw = Gateway::new(settings(&[&o], &s)).unwrap();
    let job = start_noop(&gw).await.unwrap();
    assert_eq!(o.state.refresh_calls.load(Ordering::SeqCst), 2);
    assert_eq!(lock(&s.state.requests).len(), 3);
    assert_eq!(job.payment_stats().refreshes, 2);
    assert_eq!(lock(&o.state.starts).len(), 1);
    within(10, job.close()).await;
}

#[tokio::test]
async fn refresh_is_bounded() {
    let o = orch(priced()).await;
    let s = signer().await;
    lock(&s.state.script).extend([480; 10]);
    let mut st = settings(&[&o], &s);
    st.max_refreshes = 2;
    let gw = Gateway::new(st).unwrap();
    let err = start_noop(&gw).await.unwrap_err();
    assert_eq!(err.rejections()[0].reason, RejectReason::RefreshLimit(2));
    assert_eq!(lock(&s.state.requests).len(), 3);
    assert!(lock(&o.state.starts).is_empty());
}

#[tokio::test]
async fn signer_failures_reject_and_the_next_orchestrator_is_tried() {
    for (status, check) in [
        (
            481u16,
            (|r: &RejectReason| matches!(r, RejectReason::SignerPriceExceeded(m) if m == "price exceeded"))
                as fn(&RejectReason) -> bool,
        ),
        (
            482,
            |r| matches!(r, RejectReason::Signer(m) if m.contains("482")),
        ),
        (
            500,
            |r| matches!(r, RejectReason::Signer(m) if m.contains("500")),
        ),
    ] {
        let first = orch(priced()).await;
        let second = orch(Knobs {
            grpc_delay: Duration::from_millis(300),
            ..priced()
        })
        .await;
        let s = signer().await;
        lock(&s.state.script).push_back(status);
        let gw = Gateway::new(settings(&[&first, &second], &s)).unwrap();
        let job = start_noop(&gw).await.unwrap();
        assert_eq!(job.orchestrator_url(), second.url, "status {status}");
        // The refused orchestrator was never sent a payment.
        assert!(lock(&first.state.starts).is_empty(), "status {status}");
        within(10, job.close()).await;

        // Alone, it is a rejection with the right reason.
        let lone = orch(priced()).await;
        lock(&s.state.script).push_back(status);
        let gw = Gateway::new(settings(&[&lone], &s)).unwrap();
        let err = start_noop(&gw).await.unwrap_err();
        assert!(matches!(err, Error::NoOrchestratorAvailable { .. }));
        assert!(check(&err.rejections()[0].reason), "status {status}: {err}");
        assert!(lock(&lone.state.starts).is_empty());
    }
}

#[tokio::test]
async fn periodic_payments_follow_output_segments_and_echo_the_state() {
    let (o, s, _gw, job) = started_job().await;
    let job_mid = job.manifest_id().to_owned();

    // No output, no periodic payment.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(lock(&o.state.payments).is_empty());

    // The runner's output: one segment every 100 ms; payments at most every 200 ms.
    let mut out = output_publisher(&job);
    within(10, async {
        while lock(&o.state.payments).len() < 2 {
            out.write_segment(Bytes::from_static(b"ts")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    within(10, job.close()).await;

    // Every signer call after the first sends back the previous reply's state unchanged,
    // with the manifest ID.
    let reqs = lock(&s.state.requests).clone();
    assert!(reqs.len() >= 3);
    let b64 = |n: usize| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("state-{n}"))
    };
    for (i, r) in reqs.iter().enumerate().skip(1) {
        assert_eq!(r["state"]["State"], b64(i - 1), "request {i}");
        assert_eq!(r["ManifestID"], job_mid, "request {i}");
    }
    // One payment per signed cycle, nothing paid twice (a cycle cut by close may be unposted).
    let periodic_signed = reqs.len() - 1;
    let posted = lock(&o.state.payments).len();
    assert!(
        posted <= periodic_signed && periodic_signed <= posted + 1,
        "{posted} vs {periodic_signed}"
    );
    let after = lock(&o.state.payments).len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(lock(&o.state.payments).len(), after, "payments after close");
}

#[tokio::test]
async fn session_gone_stops_payments_and_the_job() {
    let (o, _s, _gw, job) = started_job().await;
    lock(&o.state.knobs).payment_status = 404;
    let mut out = output_publisher(&job);
    let token = job.cancellation_token();
    within(10, async {
        while !token.is_cancelled() {
            let _ = out.write_segment(Bytes::from_static(b"ts")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(lock(&o.state.payments).len(), 1);
    assert!(job.is_closed());
    assert_eq!(job.end_reason(), Some(EndReason::SessionGone));
    within(10, job.close()).await;
}

#[tokio::test]
async fn price_exceeded_mid_session_ends_the_job_unpaid() {
    let (o, s, _gw, job) = started_job().await;
    assert_eq!(job.end_reason(), None);
    lock(&s.state.script).push_back(481);
    let mut out = output_publisher(&job);
    within(10, async {
        while !job.is_closed() {
            let _ = out.write_segment(Bytes::from_static(b"ts")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    within(5, job.ended()).await;
    assert_eq!(job.end_reason(), Some(EndReason::PriceExceeded));
    assert!(lock(&o.state.payments).is_empty(), "nothing paid after 481");
    assert_eq!(lock(&s.state.requests).len(), 2);
    within(10, job.close()).await;
}

/// An orchestrator that raises its price above the ceiling in a payment answer is never
/// paid at the new price: the next cycle stops without asking the signer, and the job ends.
#[tokio::test]
async fn a_price_raised_above_the_ceiling_is_never_paid() {
    let o = orch(priced()).await;
    let s = signer().await;
    let mut set = settings(&[&o], &s);
    set.ceiling.wei_per_pixel = Some(lpgw_gateway::MaxPrice {
        price_per_unit: 20,
        pixels_per_unit: 1,
    });
    let gw = Gateway::new(set).unwrap();
    let job = start_noop(&gw).await.unwrap();
    // The signer's maxPrice never exceeds the ceiling: 10 × 1.012 rounds up to 11 < 20.
    assert_eq!(lock(&s.state.requests)[0]["maxPrice"]["price"], 11);
    // From now on the orchestrator's answers carry 30 wei per pixel.
    lock(&o.state.knobs).price = Some((30, 1));
    let mut out = output_publisher(&job);
    within(10, async {
        while !job.is_closed() {
            let _ = out.write_segment(Bytes::from_static(b"ts")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(job.end_reason(), Some(EndReason::PriceExceeded));
    // One periodic payment went out at the old price and its answer raised the price; the
    // cycle after it asked nobody to pay 30.
    assert_eq!(lock(&o.state.payments).len(), 1);
    assert_eq!(lock(&s.state.requests).len(), 2);
    within(10, job.close()).await;
}
