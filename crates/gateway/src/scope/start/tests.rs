//! Table tests of the Scope start sequence: every order, time-out, error and restart path
//! the real runner can produce.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn timeouts() -> Timeouts {
    Timeouts {
        ready: 1000 * MS,
        load: 5000 * MS,
        poll: 100 * MS,
        answer: 2000 * MS,
    }
}

fn machine(params: Value, t0: Instant) -> StartMachine {
    let plan = StartPlan::from_params(Some(&params), &["streamdiffusionv2".into()]).unwrap();
    StartMachine::new(plan, timeouts(), "m1", t0)
}

/// Drains the steps: (messages sent, progress events).
fn drain(m: &mut StartMachine) -> (Vec<Value>, Vec<Value>) {
    let (mut sent, mut progress) = (Vec::new(), Vec::new());
    while let Some(s) = m.poll_step() {
        match s {
            Step::Send(v) => sent.push(v),
            Step::Progress(v) => progress.push(v),
        }
    }
    (sent, progress)
}

fn rid(v: &Value) -> String {
    v["request_id"].as_str().unwrap().to_owned()
}

fn api(rid: &str, status: u16, data: Value) -> Value {
    json!({"type": "api_response", "request_id": rid, "status": status, "data": data})
}

fn status(s: &str, stage: Option<&str>) -> Value {
    json!({"status": s, "pipeline_id": if s == "loaded" { json!("gray") } else { Value::Null },
        "load_params": {}, "loading_stage": stage, "error": null})
}

/// Runs the sequence up to the `start_stream`, answering the status check with `first`.
fn to_start(m: &mut StartMachine, t0: Instant, first: Value) -> Value {
    m.handle_event(t0, &json!({"type": "runner_ready", "runner_job_id": null}));
    let (sent, _) = drain(m);
    assert_eq!(sent[0]["path"], "/api/v1/pipeline/status");
    m.handle_event(t0, &api(&rid(&sent[0]), 200, first));
    let (sent, _) = drain(m);
    sent[0].clone()
}

#[test]
fn the_whole_sequence_loads_polls_learns_the_mode_and_starts() {
    let t0 = Instant::now();
    let mut m = machine(json!({"pipeline_ids": ["gray"], "prompt": "x"}), t0);
    // Nothing happens before runner_ready or its deadline.
    assert_eq!(drain(&mut m).0.len(), 0);
    assert_eq!(m.poll_timeout(), Some(t0 + 1000 * MS));
    let load = to_start(&mut m, t0, status("not_loaded", None));
    assert_eq!(load["method"], "POST");
    assert_eq!(load["path"], "/api/v1/pipeline/load");
    assert_eq!(
        load["body"],
        json!({"pipeline_ids": ["gray"], "load_params": null})
    );
    let (_, progress) = drain(&mut m);
    assert!(progress.is_empty());
    m.handle_event(
        t0,
        &api(
            &rid(&load),
            200,
            json!({"message": "Pipeline loading initiated successfully"}),
        ),
    );
    // The first poll waits one poll interval.
    assert_eq!(m.poll_timeout(), Some(t0 + 100 * MS));
    let t1 = t0 + 100 * MS;
    m.handle_timeout(t1);
    let (sent, _) = drain(&mut m);
    assert_eq!(sent[0]["path"], "/api/v1/pipeline/status");
    m.handle_event(
        t1,
        &api(
            &rid(&sent[0]),
            200,
            status("loading", Some("Loading VAE...")),
        ),
    );
    let (_, progress) = drain(&mut m);
    assert_eq!(progress[0]["loading_stage"], "Loading VAE...");
    let t2 = t1 + 100 * MS;
    m.handle_timeout(t2);
    let (sent, _) = drain(&mut m);
    // The same stage again is not reported twice.
    m.handle_event(
        t2,
        &api(
            &rid(&sent[0]),
            200,
            status("loading", Some("Loading VAE...")),
        ),
    );
    assert!(drain(&mut m).1.is_empty());
    let t3 = t2 + 100 * MS;
    m.handle_timeout(t3);
    let (sent, _) = drain(&mut m);
    m.handle_event(t3, &api(&rid(&sent[0]), 200, status("loaded", None)));
    let (sent, progress) = drain(&mut m);
    assert_eq!(progress[0]["type"], "pipeline_loaded");
    // The mode was left open: the schemas decide.
    assert_eq!(sent[0]["path"], "/api/v1/pipelines/schemas");
    m.handle_event(
        t3,
        &api(
            &rid(&sent[0]),
            200,
            json!({"pipelines": {"gray": {"default_mode": "video"}}}),
        ),
    );
    let (sent, _) = drain(&mut m);
    let start = &sent[0];
    assert_eq!(start["type"], "start_stream");
    assert_eq!(start["params"]["pipeline_ids"], json!(["gray"]));
    assert_eq!(start["params"]["input_mode"], "video");
    assert_eq!(start["params"]["prompt"], "x");
    assert_eq!(start["params"]["graph"]["nodes"][1]["id"], "gray");
    // Someone else's answer, and an untagged one, do not complete the start.
    m.handle_event(
        t3,
        &json!({"type": "stream_started", "request_id": "other", "channels": []}),
    );
    m.handle_event(t3, &json!({"type": "stream_started", "channels": []}));
    assert_eq!(m.outcome(), None);
    let ch = json!([{"url": "/in", "direction": "in"}]);
    m.handle_event(
        t3,
        &json!({"type": "stream_started", "request_id": rid(start), "channels": ch}),
    );
    assert_eq!(m.outcome(), Some(Outcome::Started(ch, InputMode::Video)));
    assert!(m.saw_ready());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_pipeline_loaded_with_the_same_parameters_is_not_reloaded() {
    let t0 = Instant::now();
    let mut m = machine(json!({"pipeline_ids": ["gray"], "input_mode": "video"}), t0);
    let next = to_start(&mut m, t0, status("loaded", None));
    // Straight to start_stream: the mode was given, nothing to load.
    assert_eq!(next["type"], "start_stream");
}

#[test]
fn a_runner_that_never_says_ready_is_asked_anyway() {
    let t0 = Instant::now();
    let mut m = machine(json!({"pipeline_ids": ["gray"]}), t0);
    m.handle_timeout(t0 + 999 * MS);
    assert!(drain(&mut m).0.is_empty());
    m.handle_timeout(t0 + 1000 * MS);
    let (sent, _) = drain(&mut m);
    assert_eq!(sent[0]["path"], "/api/v1/pipeline/status");
    assert!(!m.saw_ready());
}

/// Loads the pipeline and returns the machine waiting for its first status poll answer,
/// with that poll's request ID.
fn polling(params: Value, t0: Instant) -> (StartMachine, String) {
    let mut m = machine(params, t0);
    let load = to_start(&mut m, t0, status("not_loaded", None));
    m.handle_event(t0, &api(&rid(&load), 200, json!({})));
    m.handle_timeout(t0 + 100 * MS);
    let (sent, _) = drain(&mut m);
    let r = rid(&sent[0]);
    (m, r)
}

#[test]
fn load_failures_end_the_start_with_the_runners_words() {
    let t0 = Instant::now();
    let (mut m, r) = polling(json!({"pipeline_ids": ["nope"]}), t0);
    m.handle_event(t0, &json!({"type": "logs", "lines": [
        "2026-05-01 12:00:00,123 - scope.server.pipeline_manager - INFO - loading",
        "2026-05-01 12:00:00,124 - scope.server.pipeline_manager - ERROR - Failed to load pipeline nope: Invalid pipeline ID: nope. See http://secret.example/x",
    ]}));
    m.handle_event(t0, &api(&r, 200, status("error", None)));
    let Some(Outcome::Refused(why)) = m.outcome() else {
        panic!("not refused")
    };
    assert!(why.starts_with("pipeline load failed"), "{why}");
    assert!(why.contains("Invalid pipeline ID: nope"), "{why}");
    assert!(
        !why.contains("scope.server"),
        "only the message is kept: {why}"
    );
    assert!(!why.contains("secret.example"), "URLs are redacted: {why}");
}

#[test]
fn not_loaded_after_loading_is_a_failure_and_so_is_never_starting() {
    let t0 = Instant::now();
    let (mut m, r) = polling(json!({"pipeline_ids": ["gray"]}), t0);
    m.handle_event(t0, &api(&r, 200, status("loading", None)));
    m.handle_timeout(t0 + 200 * MS);
    let (sent, _) = drain(&mut m);
    m.handle_event(t0, &api(&rid(&sent[0]), 200, status("not_loaded", None)));
    // No runner words yet: the refusal waits for the runner's log batch, bounded.
    assert_eq!(m.outcome(), None);
    m.handle_timeout(t0 + 200 * MS + LOGS_GRACE);
    assert!(matches!(m.outcome(), Some(Outcome::Refused(_))));

    // A load that never even starts: a few `not_loaded` answers, then failure.
    let (mut m, mut r) = polling(json!({"pipeline_ids": ["gray"]}), t0);
    let mut now = t0 + 100 * MS;
    for i in 0..MAX_NOT_LOADED {
        m.handle_event(now, &api(&r, 200, status("not_loaded", None)));
        if i + 1 == MAX_NOT_LOADED {
            break;
        }
        assert_eq!(m.outcome(), None, "failed after {i} polls");
        now += 100 * MS;
        m.handle_timeout(now);
        r = rid(&drain(&mut m).0[0]);
    }
    m.handle_timeout(now + LOGS_GRACE);
    assert!(matches!(m.outcome(), Some(Outcome::Refused(_))));
}

#[test]
fn a_failed_load_waits_for_the_log_batch_that_follows_its_status() {
    // The real runner reports `error` in the status before its log forwarder (a 500 ms
    // batch) has sent the reason.
    let t0 = Instant::now();
    let (mut m, r) = polling(json!({"pipeline_ids": ["streamdiffusionv2"]}), t0);
    m.handle_event(t0, &api(&r, 200, status("error", None)));
    assert_eq!(m.outcome(), None, "refused before the runner's words");
    assert_eq!(m.poll_timeout(), Some(t0 + LOGS_GRACE));
    // Lines that are not errors do not end the wait.
    m.handle_event(
        t0,
        &json!({"type": "logs", "lines": ["x - y - INFO - still here"]}),
    );
    assert_eq!(m.outcome(), None);
    m.handle_event(t0 + 400 * MS, &json!({"type": "logs", "lines": [
        "2026-12-03 09:01:57,376 - scope.server.pipeline_manager - ERROR - [(session_x)] Failed to load pipeline streamdiffusionv2: No module named 'flash_attn'.",
    ]}));
    let Some(Outcome::Refused(why)) = m.outcome() else {
        panic!("not refused once the words came")
    };
    assert!(why.starts_with("pipeline load failed"), "{why}");
    assert!(why.contains("No module named 'flash_attn'"), "{why}");

    // Without any words the refusal comes when the grace ends, not before.
    let (mut m, r) = polling(json!({"pipeline_ids": ["streamdiffusionv2"]}), t0);
    m.handle_event(t0, &api(&r, 200, status("error", None)));
    m.handle_timeout(t0 + LOGS_GRACE - MS);
    assert_eq!(m.outcome(), None);
    m.handle_timeout(t0 + LOGS_GRACE);
    assert!(matches!(m.outcome(), Some(Outcome::Refused(w)) if w == "pipeline load failed"));
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_load_that_takes_too_long_times_out_naming_its_stage() {
    let t0 = Instant::now();
    let (mut m, mut r) = polling(json!({"pipeline_ids": ["longlive"]}), t0);
    let mut now = t0 + 100 * MS;
    loop {
        m.handle_event(
            now,
            &api(
                &r,
                200,
                status("loading", Some("Loading diffusion model...")),
            ),
        );
        now += 100 * MS;
        m.handle_timeout(now);
        if let Some(o) = m.outcome() {
            let Outcome::Failed(why) = o else {
                panic!("{o:?}")
            };
            assert!(why.contains("did not load within 5 s"), "{why}");
            assert!(why.contains("Loading diffusion model..."), "{why}");
            assert!(now >= t0 + 5000 * MS);
            break;
        }
        r = rid(&drain(&mut m).0[0]);
    }
}

#[test]
fn refusals_and_missing_answers_fail() {
    let t0 = Instant::now();
    let mut m = machine(json!({"pipeline_ids": ["gray"]}), t0);
    let load = to_start(&mut m, t0, status("not_loaded", None));
    m.handle_event(
        t0,
        &api(
            &rid(&load),
            422,
            json!({"detail": [{"msg": "Field required"}]}),
        ),
    );
    let Some(Outcome::Refused(why)) = m.outcome() else {
        panic!()
    };
    assert!(
        why.contains("422") && why.contains("Field required"),
        "{why}"
    );

    // No answer to the status check.
    let mut m = machine(json!({"pipeline_ids": ["gray"]}), t0);
    m.handle_event(t0, &json!({"type": "runner_ready"}));
    drain(&mut m);
    m.handle_timeout(t0 + 2000 * MS);
    assert!(matches!(m.outcome(), Some(Outcome::Failed(w)) if w.contains("pipeline status")));
}

#[test]
fn start_errors_timeouts_and_uncorrelated_errors() {
    let t0 = Instant::now();
    let params = json!({"pipeline_ids": ["gray"], "input_mode": "video"});
    let mut m = machine(params.clone(), t0);
    let start = to_start(&mut m, t0, status("loaded", None));
    // An error with no request_id is not the answer.
    m.handle_event(
        t0,
        &json!({"type": "error", "request_id": null, "error": "Unknown message type: None"}),
    );
    assert_eq!(m.outcome(), None);
    m.handle_event(
        t0,
        &json!({"type": "error", "request_id": rid(&start),
            "error": "No pipeline loaded. Load a pipeline before start_stream."}),
    );
    let Some(Outcome::Refused(why)) = m.outcome() else {
        panic!()
    };
    assert!(why.contains("No pipeline loaded"), "{why}");
    assert!(why.contains("Unknown message type: None"), "{why}");

    let mut m = machine(params.clone(), t0);
    let start = to_start(&mut m, t0, status("loaded", None));
    m.handle_event(
        t0,
        &json!({"type": "stream_started", "request_id": rid(&start), "status": "already_running"}),
    );
    assert!(matches!(m.outcome(), Some(Outcome::Failed(w)) if w.contains("already")));

    let mut m = machine(params, t0);
    to_start(&mut m, t0, status("loaded", None));
    m.handle_timeout(t0 + 1999 * MS);
    assert_eq!(m.outcome(), None);
    m.handle_timeout(t0 + 2000 * MS);
    assert!(matches!(m.outcome(), Some(Outcome::Failed(w)) if w.contains("no stream_started")));
}

#[test]
fn text_pipelines_start_without_an_input() {
    let t0 = Instant::now();
    let mut m = machine(json!({"pipeline_ids": ["longlive"]}), t0);
    let load = to_start(&mut m, t0, status("not_loaded", None));
    m.handle_event(t0, &api(&rid(&load), 200, json!({})));
    m.handle_timeout(t0 + 100 * MS);
    let (sent, _) = drain(&mut m);
    let mut loaded = status("loaded", None);
    loaded["pipeline_id"] = json!("longlive");
    m.handle_event(t0, &api(&rid(&sent[0]), 200, loaded));
    let (sent, _) = drain(&mut m);
    m.handle_event(
        t0,
        &api(
            &rid(&sent[0]),
            200,
            json!({"pipelines": {"longlive": {"default_mode": "text"}}}),
        ),
    );
    let (sent, _) = drain(&mut m);
    assert_eq!(sent[0]["params"]["input_mode"], "text");
    let nodes = sent[0]["params"]["graph"]["nodes"].as_array().unwrap();
    assert!(nodes.iter().all(|n| n["type"] != "source"));
    m.handle_event(
        t0,
        &json!({"type": "stream_started", "request_id": rid(&sent[0]), "channels": []}),
    );
    assert!(matches!(
        m.outcome(),
        Some(Outcome::Started(_, InputMode::Text))
    ));
}

#[test]
fn schemas_that_do_not_answer_leave_video_mode() {
    let t0 = Instant::now();
    let mut m = machine(json!({"pipeline_ids": ["gray"]}), t0);
    let next = to_start(&mut m, t0, status("loaded", None));
    assert_eq!(next["path"], "/api/v1/pipelines/schemas");
    m.handle_timeout(t0 + 2000 * MS);
    let (sent, _) = drain(&mut m);
    assert_eq!(sent[0]["params"]["input_mode"], "video");
}

#[test]
fn events_after_the_end_change_nothing() {
    let t0 = Instant::now();
    let mut m = machine(json!({"pipeline_ids": ["gray"], "input_mode": "video"}), t0);
    let start = to_start(&mut m, t0, status("loaded", None));
    m.handle_event(
        t0,
        &json!({"type": "stream_started", "request_id": rid(&start), "channels": []}),
    );
    assert!(m.outcome().is_some());
    m.handle_event(t0, &json!({"type": "runner_ready"}));
    m.handle_timeout(t0 + 60_000 * MS);
    assert!(drain(&mut m).0.is_empty());
    assert_eq!(m.outcome(), None);
}

#[test]
fn a_start_after_a_restart_begins_with_the_status_check() {
    let t0 = Instant::now();
    let plan = StartPlan::from_params(
        Some(&json!({"pipeline_ids": ["gray"], "input_mode": "video"})),
        &[],
    )
    .unwrap();
    let mut m = StartMachine::after_ready(plan, timeouts(), "m1-r1", t0);
    assert!(m.saw_ready());
    let (sent, _) = drain(&mut m);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["path"], "/api/v1/pipeline/status");
    assert!(rid(&sent[0]).starts_with("m1-r1-"), "{}", sent[0]);
    // The restarted runner has nothing loaded: load, then start.
    m.handle_event(t0, &api(&rid(&sent[0]), 200, status("not_loaded", None)));
    let (sent, _) = drain(&mut m);
    assert_eq!(sent[0]["path"], "/api/v1/pipeline/load");
    m.handle_event(t0, &api(&rid(&sent[0]), 200, json!({"message": "ok"})));
    m.handle_timeout(t0 + 100 * MS);
    let (sent, _) = drain(&mut m);
    m.handle_event(t0, &api(&rid(&sent[0]), 200, status("loaded", None)));
    let (sent, _) = drain(&mut m);
    assert_eq!(sent[0]["type"], "start_stream");
}

#[test]
fn a_runner_that_restarts_during_the_start_is_asked_again_then_given_up_on() {
    let t0 = Instant::now();
    let mut m = machine(json!({"pipeline_ids": ["gray"], "input_mode": "video"}), t0);
    m.handle_event(t0, &json!({"type": "runner_ready"}));
    let (first, _) = drain(&mut m);
    m.handle_event(t0, &api(&rid(&first[0]), 200, status("not_loaded", None)));
    let (load, _) = drain(&mut m);
    assert_eq!(load[0]["path"], "/api/v1/pipeline/load");
    // The runner restarts while loading: the sequence starts over with a new request id,
    // and the answer to the old load no longer counts.
    m.handle_event(t0, &json!({"type": "runner_ready"}));
    let (again, _) = drain(&mut m);
    assert_eq!(again[0]["path"], "/api/v1/pipeline/status");
    assert_ne!(rid(&again[0]), rid(&first[0]));
    m.handle_event(t0, &api(&rid(&load[0]), 200, json!({"message": "ok"})));
    assert!(drain(&mut m).0.is_empty(), "a stale answer moved the start");
    m.handle_event(t0, &api(&rid(&again[0]), 200, status("loaded", None)));
    let (start, _) = drain(&mut m);
    assert_eq!(start[0]["type"], "start_stream");
    // Two more restarts are one too many.
    m.handle_event(t0, &json!({"type": "runner_ready"}));
    assert_eq!(m.outcome(), None);
    m.handle_event(t0, &json!({"type": "runner_ready"}));
    match m.outcome() {
        Some(Outcome::Failed(why)) => assert!(why.contains("restarted 3 times"), "{why}"),
        other => panic!("{other:?}"),
    }
}
