//! The Scope start sequence against devnet's faithful Scope runner and its fault knobs: a
//! load that fails or never finishes, a runner that never says `runner_ready`, an error
//! that answers nothing while the start waits, and restarts under a running stream (the
//! stream started again, or the job ended when it cannot be). Every
//! failed start leaves no session behind.

use std::time::Duration;

use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle};
use lpgw_gateway::{Error, Fallback, Gateway, InputMode, RejectReason, Settings, StartRequest};
use serde_json::{Value, json};

async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

async fn devnet() -> DevnetHandle {
    Devnet::start(DevnetConfig {
        tls: false,
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts")
}

fn gateway(d: &DevnetHandle) -> Gateway {
    Gateway::new(gateway_settings(d)).unwrap()
}

fn gateway_settings(d: &DevnetHandle) -> Settings {
    let mut s = Settings {
        orchestrators: vec![d.orchestrator_url().to_owned()],
        ..Settings::default()
    };
    s.live.fallback = Fallback::none();
    s.live.scope.ready_timeout = Duration::from_millis(500);
    s.live.scope.load_timeout = Duration::from_millis(1500);
    s.live.scope.poll_interval = Duration::from_millis(50);
    s.live.scope.ping_interval = Duration::from_millis(200);
    s
}

fn gray() -> StartRequest {
    let mut r = StartRequest::new("scope");
    r.params = Some(json!({"pipeline_ids": ["gray"]}));
    r
}

/// The one rejection of a failed start, as text.
fn reason(e: &Error) -> String {
    let r = e.rejections();
    assert_eq!(r.len(), 1, "{e}");
    r[0].reason.to_string()
}

fn no_sessions(d: &DevnetHandle) -> bool {
    d.scope_runners()
        .iter()
        .all(|r| d.live_sessions(r).is_empty())
}

async fn eventually_no_sessions(d: &DevnetHandle) {
    within(10, async {
        while !no_sessions(d) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_failed_load_fails_the_start_and_stops_the_session() {
    let d = devnet().await;
    d.faults().set_scope_load_fail(true);
    let err = within(20, gateway(&d).start(&gray())).await.unwrap_err();
    let why = reason(&err);
    assert!(
        why.starts_with("scope pipeline refused: pipeline load failed"),
        "{why}"
    );
    // The runner's words come in a log batch after the status says `error`.
    assert!(why.contains("CUDA out of memory"), "{why}");
    assert!(matches!(
        err.rejections()[0].reason,
        RejectReason::PipelineRefused(_)
    ));
    eventually_no_sessions(&d).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_load_that_never_finishes_times_out() {
    let d = devnet().await;
    d.faults()
        .set_scope_load_delay(Some(Duration::from_secs(30)));
    let err = within(20, gateway(&d).start(&gray())).await.unwrap_err();
    let why = err.to_string();
    assert!(why.contains("did not load within 1 s"), "{why}");
    assert!(why.contains("Initializing pipeline..."), "{why}");
    eventually_no_sessions(&d).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_runner_that_never_says_ready_is_started_anyway() {
    let d = devnet().await;
    d.faults().set_scope_no_runner_ready(true);
    let job = within(20, gateway(&d).start(&gray())).await.unwrap();
    let Ok(job) = job.into_scope() else {
        panic!("not a scope job")
    };
    assert_eq!(job.input_mode(), Some(InputMode::Video));
    assert!(job.media().unwrap().input.is_some());
    within(20, job.close()).await;
    eventually_no_sessions(&d).await;
    d.shutdown().await;
}

#[tokio::test]
async fn an_error_that_answers_nothing_does_not_end_a_waiting_start() {
    let d = devnet().await;
    d.faults()
        .set_scope_uncorrelated_error(Some("something unrelated broke".into()));
    let job = within(20, gateway(&d).start(&gray())).await.unwrap();
    let Ok(mut job) = job.into_scope() else {
        panic!("not a scope job")
    };
    assert!(job.media().is_some());
    // The error reached the application, marked as seen during the start.
    let mut events = job.take_events().unwrap();
    let mut found: Option<Value> = None;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        if ev["type"] == "error" {
            found = Some(ev);
            break;
        }
    }
    let ev = found.expect("the uncorrelated error is passed on");
    assert_eq!(ev["during_start"], true, "{ev}");
    within(20, job.close()).await;
    d.shutdown().await;
}

/// Waits for an event of type `kind`, skipping others.
async fn event(events: &mut tokio::sync::mpsc::Receiver<Value>, kind: &str) -> Value {
    within(15, async {
        loop {
            let ev = events.recv().await.expect("events open");
            if ev["type"] == kind {
                return ev;
            }
        }
    })
    .await
}

#[tokio::test]
async fn pings_are_answered_and_a_restart_starts_the_stream_again() {
    let d = devnet().await;
    let job = within(20, gateway(&d).start(&gray())).await.unwrap();
    let Ok(mut job) = job.into_scope() else {
        panic!("not a scope job")
    };
    let mut events = job.take_events().unwrap();
    within(10, async {
        while job.health().last_pong.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(job.health().missed_pongs, 0);
    let before = job.media().expect("started");
    within(10, job.update_params(&json!({"prompt": "kept"})))
        .await
        .unwrap();
    // The raw API reaches the runner; a restart drops its pipelines and stream, and the
    // job loads them again and starts a new stream on new channels.
    let status = within(10, job.api("GET", "/api/v1/pipeline/status", None))
        .await
        .unwrap();
    assert_eq!(status["data"]["status"], "loaded", "{status}");
    let r = within(10, job.api("POST", "/api/v1/restart", None))
        .await
        .unwrap();
    assert_eq!(r["status"], 200, "{r}");
    // Between the accepted request and the runner's return the stream counts as
    // restarting, and the application hears so at once.
    assert!(
        job.is_restarting(),
        "not restarting after an accepted restart"
    );
    event(&mut events, "runner_restarting").await;
    event(&mut events, "runner_restarted").await;
    assert_eq!(job.health().restarts, 1);
    let ev = event(&mut events, "stream_restarted").await;
    assert_eq!(ev["restarts"], 1, "{ev}");
    assert!(!job.is_restarting());
    assert!(!job.is_closed());
    let after = job.media().expect("started again");
    assert_ne!(
        after.output, before.output,
        "the same output channel after a restart"
    );
    assert!(after.input.is_some());
    assert_eq!(job.input_mode(), Some(InputMode::Video));
    let status = within(10, job.api("GET", "/api/v1/pipeline/status", None))
        .await
        .unwrap();
    assert_eq!(status["data"]["status"], "loaded", "{status}");
    assert_eq!(status["data"]["pipeline_id"], "gray", "{status}");
    within(20, job.close()).await;
    eventually_no_sessions(&d).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_restart_that_cannot_load_again_or_one_too_many_ends_the_job() {
    let d = devnet().await;
    // The pipeline no longer loads after the restart: the job ends, saying why.
    let job = within(20, gateway(&d).start(&gray())).await.unwrap();
    d.faults().set_scope_load_fail(true);
    let r = within(10, job.api("POST", "/api/v1/restart", None))
        .await
        .unwrap();
    assert_eq!(r["status"], 200, "{r}");
    within(20, job.ended().cancelled()).await;
    let f = job.failure().expect("a failure");
    assert_eq!(f.code, "runner_restart_failed", "{f}");
    assert!(f.message.contains("did not start again"), "{f}");
    assert!(f.message.contains("pipeline load failed"), "{f}");
    within(20, job.close()).await;
    eventually_no_sessions(&d).await;
    d.faults().set_scope_load_fail(false);

    // With one restart allowed, the second ends the job.
    let mut s = gateway_settings(&d);
    s.live.scope.max_restarts = 1;
    let job = within(20, Gateway::new(s).unwrap().start(&gray()))
        .await
        .unwrap();
    let Ok(mut job) = job.into_scope() else {
        panic!("not a scope job")
    };
    let mut events = job.take_events().unwrap();
    within(10, job.api("POST", "/api/v1/restart", None))
        .await
        .unwrap();
    event(&mut events, "stream_restarted").await;
    within(10, job.api("POST", "/api/v1/restart", None))
        .await
        .unwrap();
    within(20, job.ended()).await;
    let why = job.restart_failure().expect("a reason");
    assert!(why.contains("restarted 2 times"), "{why}");
    within(20, job.close()).await;
    eventually_no_sessions(&d).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_runner_that_accepts_a_restart_and_stays_away_ends_the_job() {
    let d = devnet().await;
    let mut s = gateway_settings(&d);
    s.live.scope.restart_timeout = Duration::from_millis(800);
    let job = within(20, Gateway::new(s).unwrap().start(&gray()))
        .await
        .unwrap();
    // The runner answers the restart and takes far longer to come back than allowed.
    d.faults()
        .set_scope_restart_delay(Some(Duration::from_secs(30)));
    let r = within(10, job.api("POST", "/api/v1/restart", None))
        .await
        .unwrap();
    assert_eq!(r["status"], 200, "{r}");
    assert!(job.is_restarting());
    within(10, job.ended().cancelled()).await;
    let f = job.failure().expect("a failure");
    assert_eq!(f.code, "runner_restart_failed", "{f}");
    assert!(f.message.contains("did not say runner_ready"), "{f}");
    within(20, job.close()).await;
    eventually_no_sessions(&d).await;
    d.shutdown().await;
}

#[tokio::test]
async fn a_stop_waits_for_a_runner_that_takes_over_two_seconds_to_stop() {
    // The real runner answers stop_stream after its media tasks' 1 s grace periods.
    let slow = Duration::from_millis(2600);
    let d = devnet().await;
    d.faults().set_scope_stop_delay(Some(slow));
    let job = within(20, gateway(&d).start(&gray())).await.unwrap();
    let Ok(mut job) = job.into_scope() else {
        panic!("not a scope job")
    };
    let started = std::time::Instant::now();
    within(20, job.stop_stream()).await;
    // Back only once the runner said stream_stopped: not after giving up on it.
    assert!(
        started.elapsed() >= slow,
        "stopped after {:?}",
        started.elapsed()
    );
    within(20, job.close()).await;
    eventually_no_sessions(&d).await;
    d.shutdown().await;
}

#[tokio::test]
async fn malformed_scope_parameters_are_refused_before_any_session() {
    let d = devnet().await;
    let gw = gateway(&d);
    for params in [
        json!({"pipeline_ids": "gray"}),
        json!({"graph": 5}),
        json!({"load_params": [1]}),
        json!([1, 2]),
    ] {
        let mut r = StartRequest::new("scope");
        r.params = Some(params.clone());
        let err = within(10, gw.start(&r)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{params}: {err}");
        assert!(err.rejections().is_empty(), "no runner was asked: {err}");
        assert!(!err.is_retryable());
    }
    // Nothing was reserved, so nothing was paid.
    assert_eq!(d.active_sessions(), 0);
    assert!(no_sessions(&d));
    d.shutdown().await;
}
