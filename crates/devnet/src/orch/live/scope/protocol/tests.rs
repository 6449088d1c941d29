use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::orch::live::scope::pipelines::{LoadEntry, Pipelines};

const KNOBS: Knobs = Knobs {
    load: LoadKnobs {
        delay: Duration::from_millis(300),
        fail: false,
    },
    stray_error: None,
};

fn core() -> Core {
    Core::new(Arc::new(Mutex::new(Pipelines::default())))
}

fn send(step: Step) -> Vec<Value> {
    match step {
        Step::Send(v) => v,
        other => panic!("not a send: {other:?}"),
    }
}

/// A core with `gray` loaded under its own id.
fn with_gray(now: Instant) -> Core {
    let c = core();
    let entry = LoadEntry {
        node_id: "gray".into(),
        pipeline_id: "gray".into(),
        load_params: Value::Null,
    };
    let mut p = pipelines::lock(&c.pipelines);
    p.load(&[entry], now, KNOBS.load);
    p.tick(now + Duration::from_secs(1));
    drop(p);
    c
}

fn made(n: usize) -> Vec<MadeChannel> {
    (0..n)
        .map(|i| MadeChannel {
            url: format!("pub{i}"),
            internal: format!("int{i}"),
        })
        .collect()
}

fn start_msg(params: Value) -> Value {
    json!({"type": "start_stream", "request_id": "s", "params": params})
}

#[test]
fn ping_unknown_and_keepalive() {
    let mut c = core();
    let now = Instant::now();
    assert_eq!(
        send(c.handle(&json!({"type": "ping", "timestamp": 1.5}), now, &KNOBS)),
        [json!({"type": "pong", "request_id": null, "timestamp": 1.5})]
    );
    assert_eq!(
        send(c.handle(&json!({"keep": "alive"}), now, &KNOBS)),
        [json!({"type": "error", "request_id": null, "error": "Unknown message type: None"})]
    );
    assert_eq!(
        send(c.handle(&json!({"type": "foo", "request_id": 3}), now, &KNOBS)),
        [json!({"type": "error", "request_id": 3, "error": "Unknown message type: foo"})]
    );
    let logs = c.drain_logs(50);
    assert_eq!(logs.len(), 2);
    assert_eq!(
        logs[0].message,
        "Unknown control message type: None payload={'keep': 'alive'}"
    );
    assert_eq!(logs[0].level, Level::Warning);
}

#[test]
fn start_checks_in_order() {
    let mut c = core();
    let now = Instant::now();
    let err = |v: &str| json!({"type": "error", "request_id": "s", "error": v});
    assert_eq!(
        send(c.handle(&start_msg(json!([1])), now, &KNOBS)),
        [err("start_stream params must be an object")]
    );
    assert_eq!(
        send(c.handle(&start_msg(Value::Null), now, &KNOBS)),
        [err(
            "No pipeline loaded. Load a pipeline before start_stream."
        )]
    );
    let stray = Knobs {
        stray_error: Some("boom".into()),
        ..KNOBS
    };
    let Step::Start { pre, plan } = c.handle(
        &start_msg(json!({"pipeline_ids": ["gray"], "input_mode": "text",
            "graph": graph::linear(&["gray".into()])})),
        now,
        &stray,
    ) else {
        panic!("start")
    };
    assert_eq!(
        pre,
        [json!({"type": "error", "request_id": null, "error": "boom"})]
    );
    assert!(plan.inputs.is_empty(), "text mode: no input channel");
    assert_eq!(plan.outputs, [OutSlot::Sink(Some("output".into()))]);
}

#[test]
fn linear_graph_start_runs_gray_on_the_input() {
    let now = Instant::now();
    let mut c = with_gray(now);
    let params = json!({"pipeline_ids": ["gray"], "input_mode": "video",
        "graph": graph::linear(&["gray".into()]), "prompts": [{"text": "x"}]});
    let Step::Start { plan, .. } = c.handle(&start_msg(params), now, &KNOBS) else {
        panic!("start")
    };
    let (reply, spec) = c.started(&plan, &made(2), now);
    assert_eq!(
        reply,
        json!({"type": "stream_started", "request_id": "s", "channels": [
            {"url": "pub0", "direction": "in", "mime_type": "video/MP2T", "role": "input",
                "input_track_index": 0, "source_node_id": "input"},
            {"url": "pub1", "direction": "out", "mime_type": "video/MP2T", "role": "output",
                "output_track_index": 0, "sink_node_id": "output", "record_node_id": null}]})
    );
    let spec = spec.expect("set up");
    assert_eq!(spec.source, Some(Source::Input("int0".into())));
    assert_eq!(
        (spec.outputs, spec.stages),
        (vec!["int1".into()], vec![Kind::Gray])
    );
    assert!(c.streaming());
    // A second start is refused; parameters are acknowledged.
    assert_eq!(
        send(c.handle(&start_msg(json!({})), now, &KNOBS)),
        [json!({"type": "stream_started", "request_id": "s", "status": "already_running"})]
    );
    let Step::Parameters { reply, params } = c.handle(
        &json!({"type": "parameters", "params": {"prompt": "y"}}),
        now,
        &KNOBS,
    ) else {
        panic!("parameters")
    };
    assert_eq!(
        reply,
        json!({"type": "parameters_ack", "request_id": null, "status": "ok"})
    );
    assert_eq!(params, json!({"prompt": "y"}));
    assert_eq!(
        c.handle(
            &json!({"type": "stop_stream", "request_id": "x"}),
            now,
            &KNOBS
        ),
        Step::Stop { rid: json!("x") }
    );
    assert_eq!(
        c.stopped(json!("x")),
        [
            json!({"type": "stream_stopped", "request_id": "x"}),
            json!({"type": "notification", "payload": {"type": "stream_stopped"}})
        ]
    );
    assert_eq!(
        c.stopped(json!("y")),
        [json!({"type": "stream_stopped", "request_id": "y"})]
    );
}

#[test]
fn not_loaded_pipeline_fails_silently() {
    let now = Instant::now();
    let mut c = core();
    let params = json!({"pipeline_ids": ["gray"], "input_mode": "video",
        "graph": graph::linear(&["gray".into()])});
    let Step::Start { plan, .. } = c.handle(&start_msg(params), now, &KNOBS) else {
        panic!("start")
    };
    let (reply, spec) = c.started(&plan, &made(2), now);
    assert_eq!(reply["channels"].as_array().map(Vec::len), Some(2));
    assert!(spec.is_none());
    assert!(c.streaming(), "the frame processor stays set");
    let logs = c.drain_logs(50);
    assert_eq!(
        logs.last().map(|l| (l.level, l.message.as_str())),
        Some((
            Level::Error,
            "Pipeline setup failed: Pipeline gray not loaded"
        ))
    );
    assert_eq!(c.stopped(Value::Null).len(), 1, "no notification");
}

#[test]
fn text_mode_generates_only_for_text_pipelines() {
    let now = Instant::now();
    let c0 = core();
    {
        let mut p = pipelines::lock(&c0.pipelines);
        let e = |k: &str| LoadEntry {
            node_id: k.into(),
            pipeline_id: k.into(),
            load_params: json!({"width": 320, "height": 240}),
        };
        p.load(&[e("longlive"), e("gray")], now, KNOBS.load);
        p.tick(now + Duration::from_secs(1));
    }
    let mut c = c0;
    for (ids, want) in [
        (
            vec!["longlive".to_string()],
            Some(Source::Synthetic {
                width: 320,
                height: 240,
            }),
        ),
        (vec!["gray".to_string()], None),
    ] {
        let params =
            json!({"pipeline_ids": ids, "input_mode": "text", "graph": graph::linear(&ids)});
        let Step::Start { plan, .. } = c.handle(&start_msg(params), now, &KNOBS) else {
            panic!("start")
        };
        let (_, spec) = c.started(&plan, &made(1), now);
        assert_eq!(spec.expect("set up").source, want, "{ids:?}");
        c.stopped(Value::Null);
    }
}

#[test]
fn parameters_errors_and_restart() {
    let now = Instant::now();
    let mut c = with_gray(now);
    assert_eq!(
        send(c.handle(&json!({"type": "parameters", "params": 3}), now, &KNOBS)),
        [
            json!({"type": "error", "request_id": null, "error": "parameters params must be an object"})
        ]
    );
    assert_eq!(
        send(c.handle(&json!({"type": "parameters", "request_id": 1}), now, &KNOBS)),
        [json!({"type": "error", "request_id": 1, "error": "No active stream"})]
    );
    let restart =
        json!({"type": "api", "request_id": "r", "method": "POST", "path": "/api/v1/restart"});
    assert!(matches!(c.handle(&restart, now, &KNOBS), Step::Restart(_)));
    c.restart();
    assert_eq!(
        pipelines::lock(&c.pipelines).status()["status"],
        "not_loaded"
    );
}

#[test]
fn log_queue_is_bounded() {
    let mut c = core();
    for i in 0..LOG_QUEUE + 5 {
        c.log(LogRecord::info(LA, format!("{i}")));
    }
    assert_eq!(c.drain_logs(50).len(), 50);
    assert_eq!(c.drain_logs(500).len(), LOG_QUEUE - 50);
    assert!(c.drain_logs(50).is_empty());
}
