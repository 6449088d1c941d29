//! The seed's scenario against devnet: an orchestrator that runs only live runners (no
//! AI-worker capacity) with a healthy, priced, idle Scope runner. The legacy path is refused
//! with `insufficient capacity`; the live-runner path discovers, reserves, answers the 402,
//! is admitted and starts the Scope stream; without fallback the error lists every attempt.

use std::time::Duration;

use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle, LiveConfig, PriceConfig, ScopeRunnerConfig};
use lpgw_gateway::{
    Ceiling, Error, Fallback, FundingEnd, RejectReason, Route, RunnerFilter, RunnerMode,
    RunnerOffer, Settings, StartRequest,
};
use serde_json::json;

async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

/// Priced devnet with a signer whose orchestrator runs only live runners.
fn live_only_config() -> DevnetConfig {
    DevnetConfig {
        price: Some(PriceConfig {
            per_unit: 1,
            pixels_per_unit: 1,
        }),
        signer: true,
        payment_interval: Duration::from_millis(500),
        live: LiveConfig {
            live_only: true,
            // One Scope runner (capacity 1, as the real one), so each test knows where its
            // session is.
            scope: Some(ScopeRunnerConfig {
                runners: 1,
                ..ScopeRunnerConfig::default()
            }),
            ..LiveConfig::default()
        },
        ..DevnetConfig::default()
    }
}

/// Discovers Scope runners and returns the persistent one.
async fn persistent_scope_offer(gw: &lpgw_gateway::Gateway) -> RunnerOffer {
    let found = within(
        20,
        gw.discover_runners(&RunnerFilter::app("live-video-to-video/scope")),
    )
    .await
    .unwrap();
    found
        .offers
        .iter()
        .find(|o| o.mode == RunnerMode::Persistent)
        .expect("a persistent scope runner")
        .clone()
}

async fn live_only_devnet() -> DevnetHandle {
    Devnet::start(live_only_config())
        .await
        .expect("devnet starts")
}

/// No AI-worker capacity: go-livepeer refuses GetOrchestrator with `OrchestratorCapped`
/// (rpc.go, spec §5.1) or the start with `503 insufficient capacity`.
fn no_capacity(r: &lpgw_gateway::Rejection) -> bool {
    match &r.reason {
        RejectReason::InsufficientCapacity => true,
        RejectReason::Rpc { message, .. } => message.contains("OrchestratorCapped"),
        _ => false,
    }
}

fn settings(d: &DevnetHandle, fallback: Fallback) -> Settings {
    let mut s = Settings {
        orchestrators: vec![d.orchestrator_url().to_owned()],
        signer_url: d.signer_url().map(str::to_owned),
        ..Settings::default()
    };
    s.live.fallback = fallback;
    s.live.payment_interval = Duration::from_millis(300);
    // devnet's Scope runner (2 USD/hour) is within the default ceiling (5 USD/hour).
    assert_eq!(s.ceiling, Ceiling::default());
    s
}

/// A ceiling below devnet's Scope runner price (2 USD/hour).
fn low_ceiling() -> Ceiling {
    Ceiling {
        usd_per_hour: 1.0,
        ..Ceiling::default()
    }
}

#[tokio::test]
async fn legacy_is_refused_but_the_live_runner_path_is_admitted() {
    let d = live_only_devnet().await;
    let gw = lpgw_gateway::Gateway::new(settings(&d, Fallback::none())).unwrap();

    // The legacy AI-worker path sees no capacity.
    let err = within(20, gw.start_lv2v(&StartRequest::new("scope")))
        .await
        .unwrap_err();
    assert!(err.rejections().iter().any(no_capacity), "{err}");

    // Discovery shows the runner priced and idle.
    let persistent = persistent_scope_offer(&gw).await;
    assert!(persistent.capacity_available > 0);
    assert_eq!(persistent.price.unwrap().wei, 277_777_777_777);

    // The live-runner path: discover, reserve, pay the challenge, start the stream.
    let mut req = StartRequest::new("scope");
    req.params = Some(json!({"prompt": "a cat"}));
    let job = within(30, gw.start(&req)).await.unwrap();
    assert_eq!(job.route(), Route::LiveRunner);
    let Ok(mut job) = job.into_scope() else {
        panic!("not a scope job")
    };
    let mut events = job.take_events().unwrap();
    let media = job.media().expect("stream started");
    assert!(media.input.as_deref().unwrap().contains("/ai/trickle/"));
    assert!(media.output.contains("/ai/trickle/"));
    let session = job.runner_session().expect("persistent session");
    assert!(session.payment_stats().paid >= 1);
    assert!(
        session.payment_stats().value_wei > 0,
        "the reservation's payment has a value"
    );
    let route = d.scope_runner().unwrap();
    assert_eq!(
        d.live_sessions(&route),
        vec![session.session_id().to_owned()]
    );
    job.update_params(&json!({"prompt": "a dog"}))
        .await
        .unwrap();
    // The runner answered `start_stream`, then acknowledges the parameters.
    let mut seen = Vec::new();
    while !seen.iter().any(|t| t == "parameters_ack") {
        let ev = within(10, events.recv()).await.expect("events open");
        seen.push(ev["type"].as_str().unwrap_or_default().to_owned());
    }
    assert!(seen.iter().any(|t| t == "stream_started"), "{seen:?}");

    // Payments keep the session funded while it runs.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(job.funding_end().is_none());
    within(20, job.close()).await;
    // Closing stopped the session at the orchestrator.
    assert!(d.live_sessions(&route).is_empty());
    d.shutdown().await;
}

#[tokio::test]
async fn every_attempt_is_listed_in_the_error() {
    let d = live_only_devnet().await;
    let mut s = settings(&d, Fallback::none());
    // Every runner is above this ceiling.
    s.ceiling = low_ceiling();
    s.live.fallback.legacy = true;
    let gw = lpgw_gateway::Gateway::new(s).unwrap();
    let err = within(30, gw.start(&StartRequest::new("scope")))
        .await
        .unwrap_err();
    let Error::StartFailed { model, rejections } = &err else {
        panic!("{err}")
    };
    assert_eq!(model, "scope");
    let reasons: Vec<String> = rejections.iter().map(|r| r.to_string()).collect();
    // The persistent runner was over the ceiling, naming both prices...
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("277777777777 wei/seconds")
                && r.contains("138888888888 wei/seconds")),
        "{reasons:#?}"
    );
    // ...and the legacy fallback had no capacity.
    assert!(rejections.iter().any(no_capacity), "{reasons:#?}");
    assert!(err.to_string().contains("could not start scope"));

    // With fallback disabled, only the live-runner attempt is made and listed.
    let mut s = settings(&d, Fallback::none());
    s.ceiling = low_ceiling();
    let gw = lpgw_gateway::Gateway::new(s).unwrap();
    let err = within(30, gw.start(&StartRequest::new("scope")))
        .await
        .unwrap_err();
    let rejections = err.rejections();
    assert_eq!(rejections.len(), 1, "{err}");
    assert!(rejections[0].url.ends_with("/apps/scope/session"));
    assert!(matches!(
        rejections[0].reason,
        RejectReason::OverRunnerCeiling(_)
    ));
    d.shutdown().await;
}

#[tokio::test]
async fn stale_session_runner_is_paid_once_then_cooled_down() {
    let d = live_only_devnet().await;
    d.faults().set_live_stale_session(true);
    let gw = lpgw_gateway::Gateway::new(settings(&d, Fallback::none())).unwrap();
    let route = d.scope_runner().unwrap();
    let err = within(30, gw.start(&StartRequest::new("scope")))
        .await
        .unwrap_err();
    let reasons: Vec<String> = err.rejections().iter().map(|r| r.to_string()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("409") && r.contains("active session")),
        "{reasons:#?}"
    );
    // The paid session was stopped at once.
    assert!(d.live_sessions(&route).is_empty());
    // A second start does not pay the broken runner again: it is on cool-down.
    let err = within(30, gw.start(&StartRequest::new("scope")))
        .await
        .unwrap_err();
    assert!(
        err.rejections()
            .iter()
            .any(|r| matches!(r.reason, RejectReason::CoolingDown(_))),
        "{err}"
    );
    d.shutdown().await;
}

async fn reserve_scope(d: &DevnetHandle) -> (lpgw_gateway::Gateway, lpgw_gateway::RunnerSession) {
    let gw = lpgw_gateway::Gateway::new(settings(d, Fallback::none())).unwrap();
    let offer = persistent_scope_offer(&gw).await;
    let session = within(20, gw.reserve_session(&offer)).await.unwrap();
    (gw, session)
}

#[tokio::test]
async fn signer_481_mid_session_stops_payments() {
    let d = live_only_devnet().await;
    let (_gw, session) = reserve_scope(&d).await;
    d.faults().push_signer_answers(&[481]);
    within(20, session.ended()).await;
    assert_eq!(session.funding_end(), Some(FundingEnd::PriceExceeded));
    within(20, session.close()).await;
    assert!(d.live_sessions(&d.scope_runner().unwrap()).is_empty());
    d.shutdown().await;
}

#[tokio::test]
async fn payment_running_out_releases_the_session_and_the_gateway_notices() {
    let d = live_only_devnet().await;
    let (_gw, session) = reserve_scope(&d).await;
    let route = d.scope_runner().unwrap();
    assert_eq!(d.live_sessions(&route).len(), 1);
    // The signer fails long enough for the prepaid balance (10 s) to run out; the meter
    // releases the session, and the next payment finds it gone.
    d.faults().push_signer_answers(&[500; 45]);
    within(30, session.ended()).await;
    assert_eq!(session.funding_end(), Some(FundingEnd::Released));
    assert!(d.live_sessions(&route).is_empty());
    within(20, session.close()).await;
    d.shutdown().await;
}

#[tokio::test]
async fn signer_480_mid_session_refreshes_and_keeps_paying() {
    let d = live_only_devnet().await;
    let (_gw, session) = reserve_scope(&d).await;
    d.faults().push_signer_answers(&[480]);
    let t0 = std::time::Instant::now();
    // The signer's 480 makes the loop fetch fresh parameters from `/refresh-payment`; a
    // failed cycle afterwards is skipped, never fatal.
    while session.payment_stats().refreshes == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{:?}",
            session.payment_stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(session.payment_stats().refreshes, 1);
    assert!(session.funding_end().is_none());
    within(20, session.close()).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_full_runner_is_refused_with_503() {
    let d = live_only_devnet().await;
    let (gw, first) = reserve_scope(&d).await;
    let offer = first.runner().clone();
    // A Scope runner holds one session, as the real one does.
    let err = within(20, gw.reserve_session(&offer)).await.unwrap_err();
    assert_eq!(
        err.rejections()[0].reason,
        RejectReason::RunnerFull,
        "{err}"
    );
    within(20, first.close()).await;
    assert!(d.live_sessions(&d.scope_runner().unwrap()).is_empty());
    d.shutdown().await;
}

#[tokio::test]
async fn serverless_scope_is_the_fallback_when_no_live_runner_is_left() {
    // Paid: the gateway caps the signer at the serverless runner's per-pixel discovery price.
    let mut cfg = live_only_config();
    cfg.live.scope = Some(lpgw_devnet::ScopeRunnerConfig {
        persistent: false,
        ..lpgw_devnet::ScopeRunnerConfig::default()
    });
    let d = Devnet::start(cfg).await.unwrap();
    let gw = lpgw_gateway::Gateway::new(settings(
        &d,
        Fallback {
            serverless: true,
            ..Fallback::none()
        },
    ))
    .unwrap();
    let job = within(30, gw.start(&StartRequest::new("scope")))
        .await
        .unwrap();
    assert_eq!(job.route(), Route::Serverless);
    let Ok(job) = job.into_scope() else {
        panic!("not a scope job")
    };
    assert!(job.media().is_some());
    assert!(job.runner_url().ends_with("/scope"));
    job.update_params(&json!({"prompt": "rain"})).await.unwrap();
    within(20, job.close()).await;
    d.shutdown().await;
}

/// Payments the orchestrator credited to `session`, by its own ledger.
fn credited(d: &DevnetHandle, session: &lpgw_gateway::RunnerSession) -> u128 {
    d.balance(d.signer_address(), session.session_id())
}

/// What real orchestrators do now (spec §10), each through a devnet knob: a JSON payment
/// answer keeps the session paid, as does a challenge without `payment_url`.
#[tokio::test]
async fn json_answers_and_challenges_without_payment_url_keep_sessions_paid() {
    let d = live_only_devnet().await;
    d.faults().set_session_payment_json(true);
    d.faults().set_challenge_without_payment_url(true);
    let (_gw, session) = reserve_scope(&d).await;
    let t0 = std::time::Instant::now();
    while session.payment_stats().paid < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{:?}",
            session.payment_stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(session.funding_end().is_none());
    assert!(credited(&d, &session) > 0);
    within(20, session.close()).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_challenge_payment_interval_and_a_409_are_obeyed() {
    let d = live_only_devnet().await;
    d.faults().set_challenge_payment_interval_ms(Some(2000));
    let (_gw, session) = reserve_scope(&d).await;
    // 60 % of 2 s, not the configured 300 ms: no funding cycle in the first second.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        session.payment_stats().paid,
        1,
        "{:?}",
        session.payment_stats()
    );
    // A 409 on a session payment: a fixed-price session, payments stop, the session stays.
    d.faults().set_session_payment_status(Some(409));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(session.funding_end().is_none());
    assert_eq!(d.scope_sessions(), vec![session.session_id().to_owned()]);
    within(20, session.close()).await;
    d.shutdown().await;
}

#[tokio::test]
async fn the_signers_482_wedge_ends_the_session() {
    let d = live_only_devnet().await;
    let mut s = settings(&d, Fallback::none());
    s.wedge_after = Duration::from_millis(500);
    let gw = lpgw_gateway::Gateway::new(s).unwrap();
    let offer = persistent_scope_offer(&gw).await;
    let session = within(20, gw.reserve_session(&offer)).await.unwrap();
    // After the reservation's payment, every cycle is 482 (go-livepeer #4077).
    d.faults().push_signer_answers(&[482; 60]);
    within(20, session.ended()).await;
    assert_eq!(session.funding_end(), Some(FundingEnd::Wedged));
    within(20, session.close()).await;
    d.shutdown().await;
}

#[tokio::test]
async fn signer_discovery_without_runners_falls_back_to_each_orchestrator() {
    let d = live_only_devnet().await;
    d.faults().set_signer_discovery_without_runners(true);
    let mut s = settings(&d, Fallback::none());
    s.orchestrators.clear();
    let gw = lpgw_gateway::Gateway::new(s).unwrap();
    let found = within(
        20,
        gw.discover_runners(&RunnerFilter::app("live-video-to-video/scope")),
    )
    .await
    .unwrap();
    assert!(
        found
            .offers
            .iter()
            .any(|o| o.mode == RunnerMode::Persistent),
        "{:?}",
        found.rejections
    );
    d.shutdown().await;
}

#[tokio::test]
async fn an_app_no_runner_offers_is_rejected_at_the_urls_that_were_asked() {
    let d = live_only_devnet().await;
    let mut s = settings(&d, Fallback::none());
    s.live.fallback.legacy = true;
    // The legacy model's start goes on to live runners offering the same app.
    s.live.fallback.live_runner_for_legacy = true;
    let gw = lpgw_gateway::Gateway::new(s).unwrap();
    let err = within(30, gw.start(&StartRequest::new("no-such-app")))
        .await
        .unwrap_err();
    let rejections = err.rejections();
    assert!(!rejections.is_empty(), "{err}");
    // Every rejection names a place that was asked, never a placeholder.
    for r in rejections {
        let u = url::Url::parse(&r.url).unwrap_or_else(|e| panic!("{r}: {e}"));
        assert!(matches!(u.scheme(), "http" | "https"), "{r}");
    }
    assert!(
        rejections.iter().any(|r| r.url == d.orchestrator_url()
            && r.reason
                .to_string()
                .contains("no live runner offers live-video-to-video/no-such-app")),
        "{err}"
    );
    d.shutdown().await;
}

#[tokio::test]
async fn nothing_to_ask_is_a_configuration_error_not_a_rejection() {
    let gw = lpgw_gateway::Gateway::new(Settings::default()).unwrap();
    let err = within(10, gw.start(&StartRequest::new("noop")))
        .await
        .unwrap_err();
    assert!(err.rejections().is_empty(), "{err}");
    assert!(
        matches!(err, Error::NoOrchestrators | Error::NoDiscoverySource),
        "{err}"
    );
}
