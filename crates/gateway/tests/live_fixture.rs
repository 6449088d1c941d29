//! The live-runner flow against a small orchestrator written from the spec (§1.6-§1.11,
//! §5.7): discovery answers (hostile ones too), the 402 challenge, signer 480 on a
//! reservation and mid-session, a runner whose session disappears, failed stops, an app call
//! failing after payment, and a challenge priced above the ceiling.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::live::{APP, live_orch, offer, paid_gateway, reserve_first, runner, settings};
use common::{lock, signer, within};
use lpgw_gateway::{Ceiling, Error, FundingEnd, Gateway, RejectReason, RunnerFilter, StartRequest};
use serde_json::json;
use tokio::net::TcpListener;

#[tokio::test]
async fn reservation_pays_the_challenge_with_typed_capped_max_price() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    assert_eq!(session.session_id(), "00000000");
    assert!(session.control_url().ends_with("/apps/r1/session/00000000"));
    let req = lock(&s.state.requests)[0].clone();
    assert_eq!(req["type"], "live");
    assert_eq!(req["ManifestID"], "00000000");
    assert_eq!(req["app"], APP);
    // 10 wei padded by 1.2 % and rounded up.
    assert_eq!(
        req["maxPrice"],
        json!({"price": 11, "currency": "wei", "unit": "seconds"})
    );
    assert!(req.get("state").is_none());
    // The payment loop keeps paying, sending the signer's state back.
    let t0 = std::time::Instant::now();
    while f.state.payments.load(Ordering::SeqCst) < 2 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lock(&s.state.requests)[1]["state"].is_object());
    within(10, session.close()).await;
    assert_eq!(f.state.stops.load(Ordering::SeqCst), 1);
    // No payment after the stop.
    let paid = f.state.payments.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.state.payments.load(Ordering::SeqCst), paid);
}

#[tokio::test]
async fn signer_480_on_reservation_takes_a_fresh_challenge() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    lock(&s.state.script).push_back(480);
    let session = reserve_first(&gw).await.unwrap();
    assert_eq!(f.state.challenges.load(Ordering::SeqCst), 2);
    assert_eq!(f.state.reservations.load(Ordering::SeqCst), 1);
    assert_eq!(session.session_id(), "00000001");
    within(10, session.close()).await;
}

#[tokio::test]
async fn signer_480_mid_session_refreshes_payment_params() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    lock(&s.state.script).push_back(480);
    let t0 = std::time::Instant::now();
    while session.payment_stats().refreshes < 1 || session.payment_stats().paid < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{:?}",
            session.payment_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.state.refreshes.load(Ordering::SeqCst), 1);
    assert!(session.funding_end().is_none());
    within(10, session.close()).await;
}

#[tokio::test]
async fn a_session_that_disappears_is_noticed_as_released() {
    let f = live_orch().await;
    let (_s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    // The runner expired: the orchestrator forgot the session.
    lock(&f.state.gone).insert(session.session_id().to_owned());
    within(5, session.ended()).await;
    assert_eq!(session.funding_end(), Some(FundingEnd::Released));
    within(10, session.close()).await;
}

#[tokio::test]
async fn a_failed_stop_is_retried() {
    let f = live_orch().await;
    f.state.stop_failures.store(2, Ordering::SeqCst);
    // Without a signer a challenge cannot be answered.
    let gw = Gateway::new(settings(&f, None)).unwrap();
    let err = reserve_first(&gw).await.unwrap_err();
    assert_eq!(err.rejections()[0].reason, RejectReason::PaymentRequired);
    let (_s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    within(10, session.close()).await;
    assert_eq!(f.state.stops.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn paid_app_failure_stops_at_once_and_is_never_paid_again() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    let req = StartRequest::new("scope");
    // Run the start on another task: the future must be Send (HTTP handlers need it).
    let g = gw.clone();
    let r = req.clone();
    let err = within(10, tokio::spawn(async move { g.start(&r).await }))
        .await
        .unwrap()
        .unwrap_err();
    let Error::StartFailed { rejections, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(&rejections[0].reason, RejectReason::AppCallFailed { status: 409, body } if body.contains("active session")),
        "{err}"
    );
    assert_eq!(lock(&s.state.requests).len(), 1, "paid once");
    assert_eq!(f.state.stops.load(Ordering::SeqCst), 1, "stopped at once");
    for _ in 0..3 {
        let err = within(10, gw.start(&req)).await.unwrap_err();
        assert!(
            matches!(err.rejections()[0].reason, RejectReason::CoolingDown(_)),
            "{err}"
        );
    }
    assert_eq!(lock(&s.state.requests).len(), 1, "never paid again");
    assert_eq!(f.state.reservations.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_challenge_above_the_ceiling_is_never_paid() {
    let f = live_orch().await;
    // Discovery says 10 wei/s, the challenge asks 1000.
    *lock(&f.state.challenge_price) = 1000;
    let s = signer().await;
    let mut set = settings(&f, Some(&s.url));
    set.ceiling = Ceiling {
        wei_per_second: Some(100),
        ..Ceiling::default()
    };
    let gw = Gateway::new(set).unwrap();
    let err = reserve_first(&gw).await.unwrap_err();
    assert!(
        matches!(&err.rejections()[0].reason, RejectReason::OverRunnerCeiling(t) if t.contains("1000 wei/seconds") && t.contains("100 wei/seconds")),
        "{err}"
    );
    assert!(lock(&s.state.requests).is_empty());
}

#[tokio::test]
async fn a_paid_reservation_refused_is_not_paid_again() {
    let f = live_orch().await;
    *lock(&f.state.full) = true;
    let (s, gw) = paid_gateway(&f).await;
    let offer = offer(&gw).await;
    // The orchestrator took the payment headers and answered 503.
    let err = within(10, gw.reserve_session(&offer)).await.unwrap_err();
    assert_eq!(err.rejections()[0].reason, RejectReason::RunnerFull);
    assert_eq!(lock(&s.state.requests).len(), 1);
    // A start skips the runner on cool-down instead of paying it again.
    *lock(&f.state.full) = false;
    let err = within(10, gw.start(&StartRequest::new("scope")))
        .await
        .unwrap_err();
    assert!(
        matches!(err.rejections()[0].reason, RejectReason::CoolingDown(_)),
        "{err}"
    );
    assert_eq!(lock(&s.state.requests).len(), 1);
}

#[tokio::test]
async fn a_full_runner_is_a_rejection() {
    let f = live_orch().await;
    *lock(&f.state.full) = true;
    let (_s, gw) = paid_gateway(&f).await;
    let err = reserve_first(&gw).await.unwrap_err();
    assert_eq!(err.rejections()[0].reason, RejectReason::RunnerFull);
}

#[tokio::test]
async fn hostile_discovery_is_survived() {
    let f = live_orch().await;
    let good = runner(&f.url, "ok", 5);
    let mut runners = vec![
        json!({"url": "x", "app": APP}),
        json!({"url": format!("{}/apps/neg/session", f.url), "app": APP,
            "price_info": {"price": -5, "currency": "wei", "unit": "seconds"}}),
        json!({"app": APP}),
        json!([1, 2, 3]),
        good,
    ];
    // A huge array of junk after the good entry.
    runners.extend(std::iter::repeat_n(
        json!({"url": "http://o/apps/j/session", "app": "other"}),
        20_000,
    ));
    *lock(&f.state.discovery) =
        json!([{"address": f.url, "runners": runners}, 7, {"runners": "no"}]);
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut s = settings(&f, None);
    s.orchestrators.push(dead_url.clone());
    let gw = Gateway::new(s).unwrap();
    let found = within(10, gw.discover_runners(&RunnerFilter::app(APP)))
        .await
        .unwrap();
    assert_eq!(found.offers.len(), 1);
    assert!(found.offers[0].url.ends_with("/apps/ok/session"));
    let reasons: Vec<String> = found.rejections.iter().map(|r| r.to_string()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("negative price")),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("runners ignored (limit 256)")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with(&dead_url)),
        "{reasons:#?}"
    );
    // Garbage instead of a list is a rejection of that orchestrator, not a crash.
    *lock(&f.state.discovery) = json!({"not": "a list"});
    let found = within(10, gw.discover_runners(&RunnerFilter::app(APP)))
        .await
        .unwrap();
    assert!(found.offers.is_empty());
    assert!(found.rejections.iter().any(|r| r.url == f.url));
}

#[tokio::test]
async fn challenge_retries_are_bounded_and_481_is_final() {
    let f = live_orch().await;
    let (s, gw) = paid_gateway(&f).await;
    lock(&s.state.script).extend([480; 50]);
    let offer = offer(&gw).await;
    let err = within(10, gw.reserve_session(&offer)).await.unwrap_err();
    // The first challenge and three fresh ones, then give up.
    assert_eq!(
        err.rejections()[0].reason,
        RejectReason::ChallengeRetries(4)
    );
    assert_eq!(f.state.challenges.load(Ordering::SeqCst), 4);
    assert_eq!(lock(&s.state.requests).len(), 4);
    assert_eq!(f.state.reservations.load(Ordering::SeqCst), 0);

    lock(&s.state.script).clear();
    lock(&s.state.script).push_back(481);
    let err = within(10, gw.reserve_session(&offer)).await.unwrap_err();
    assert!(
        matches!(
            err.rejections()[0].reason,
            RejectReason::SignerPriceExceeded(_)
        ),
        "{err}"
    );
    assert_eq!(f.state.reservations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn single_shot_call_streams_and_is_funded_while_it_runs() {
    let f = live_orch().await;
    let s = signer().await;
    let mut shot = runner(&f.url, "r2", 10);
    shot["url"] = json!(format!("{}/apps/r2/app", f.url));
    shot["mode"] = json!("single-shot");
    *lock(&f.state.discovery) = json!([{"address": f.url, "runners": [shot]}]);
    let gw = Gateway::new(settings(&f, Some(&s.url))).unwrap();
    let offer = offer(&gw).await;
    assert_eq!(offer.mode, lpgw_gateway::RunnerMode::SingleShot);
    let mut reply = within(
        10,
        gw.call_runner(
            &offer,
            &lpgw_gateway::RunnerRequest::json("v1/generate", &json!({"prompt": "x"})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.content_type(), "text/event-stream");
    assert!(!reply.is_json());
    let mut got = Vec::new();
    while let Some(c) = within(5, reply.chunk()).await.unwrap() {
        got.extend_from_slice(&c);
    }
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    );
    // The 450 ms stream outlived the 100 ms payment interval: the loop paid meanwhile.
    assert!(
        reply.payment_stats().unwrap().paid >= 2,
        "{:?}",
        reply.payment_stats()
    );
    drop(reply);
    // A payment in flight at the drop may still land; none may start afterwards.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let paid = f.state.payments.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        f.state.payments.load(Ordering::SeqCst),
        paid,
        "no payment after the reply"
    );
}
