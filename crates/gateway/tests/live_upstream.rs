//! What real orchestrators and signers do now (spec §10), each against the live-runner
//! fixture: session payments answered in JSON, challenges without `payment_url` or with
//! `payment_interval_ms`, a 409 on a session payment, the signer's 482 wedge, and signer
//! discovery that lists orchestrators without their runners.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::live::{APP, Fixture, live_orch, paid_gateway, reserve_first, settings};
use common::{lock, signer, within};
use lpgw_gateway::{FundingEnd, Gateway, RunnerFilter, RunnerSession};

/// Waits until the fixture has taken `n` session payments.
async fn payments(f: &Fixture, n: u32) {
    within(10, async {
        while f.state.payments.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Waits until the session's payments stop on their own.
async fn funding_ends(session: &RunnerSession) -> FundingEnd {
    within(10, async {
        loop {
            if let Some(end) = session.funding_end() {
                return end;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn json_payment_answers_carry_the_next_parameters() {
    let f = live_orch().await;
    f.state.payment_json.store(true, Ordering::SeqCst);
    let (_s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    payments(&f, 2).await;
    assert_eq!(session.funding_end(), None);
    // The next answer carries a price above the default ceiling (5 USD/hour is
    // 694 444 444 444 wei/s): read from the JSON, it stops the payments unpaid.
    *lock(&f.state.challenge_price) = 1_000_000_000_000;
    assert_eq!(funding_ends(&session).await, FundingEnd::PriceExceeded);
    let paid = f.state.payments.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.state.payments.load(Ordering::SeqCst), paid);
    within(10, session.close()).await;
}

#[tokio::test]
async fn a_challenge_without_payment_url_pays_the_session_path() {
    let f = live_orch().await;
    f.state.no_payment_url.store(true, Ordering::SeqCst);
    let (_s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    // The funding loop found `{orchestrator}/apps/r1/session/{id}/payment` by itself.
    payments(&f, 2).await;
    assert_eq!(session.funding_end(), None);
    within(10, session.close()).await;
}

#[tokio::test]
async fn a_challenge_payment_interval_sets_the_cadence() {
    let f = live_orch().await;
    // 1 s asked; the gateway pays at 60 % of it, not at its own 100 ms.
    *lock(&f.state.payment_interval_ms) = Some(1000);
    let (_s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    payments(&f, 3).await;
    within(10, session.close()).await;
    let times = lock(&f.state.payment_times).clone();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(500) && gap <= Duration::from_millis(900),
            "{gap:?}"
        );
    }
}

#[tokio::test]
async fn a_409_on_a_session_payment_stops_paying_but_keeps_the_session() {
    let f = live_orch().await;
    *lock(&f.state.payment_status) = 409;
    let (_s, gw) = paid_gateway(&f).await;
    let session = reserve_first(&gw).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A fixed-price session: no payment taken, none retried, and the session is not
    // treated as released.
    assert_eq!(f.state.payments.load(Ordering::SeqCst), 0);
    assert_eq!(session.funding_end(), None);
    assert_eq!(f.state.stops.load(Ordering::SeqCst), 0);
    within(10, session.close()).await;
    assert_eq!(f.state.stops.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn signer_482_cycle_after_cycle_is_a_wedge() {
    let f = live_orch().await;
    let s = signer().await;
    let mut set = settings(&f, Some(&s.url));
    set.wedge_after = Duration::from_millis(300);
    let gw = Gateway::new(set).unwrap();
    // The reservation is paid, then every cycle is 482 (go-livepeer #4077).
    {
        let mut script = lock(&s.state.script);
        script.push_back(200);
        script.extend(std::iter::repeat_n(482, 100));
    }
    let session = reserve_first(&gw).await.unwrap();
    assert_eq!(funding_ends(&session).await, FundingEnd::Wedged);
    // At least three cycles and the configured time passed before it gave up.
    assert!(lock(&s.state.requests).len() >= 4);
    within(10, session.close()).await;
}

#[tokio::test]
async fn signer_discovery_without_runners_asks_each_orchestrator() {
    let f = live_orch().await;
    let s = signer().await;
    // The signer lists the orchestrator but not its runners (go-livepeer #4087).
    lock(&s.state.discover_list).push(f.url.clone());
    let mut set = settings(&f, Some(&s.url));
    set.orchestrators.clear();
    let gw = Gateway::new(set).unwrap();
    let found = within(10, gw.discover_runners(&RunnerFilter::app(APP)))
        .await
        .unwrap();
    assert_eq!(found.offers.len(), 1, "{:?}", found.rejections);
    assert!(found.offers[0].url.ends_with("/apps/r1/session"));
    assert_eq!(lock(&s.state.discover_queries).len(), 1);
}
