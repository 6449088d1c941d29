//! The Scope runner's control protocol as a sans-IO core (livepeer_app.py:896-1206): one
//! control message in, the answers and the work for the I/O layer out. Messages are handled
//! strictly in order; `start_stream` is split around the channel creation the caller does.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::{Value, json};

use super::graph::{self, Routes};
use super::pipelines::{self, Kind, LoadKnobs, SharedPipelines};
use super::wire::{py_repr, py_str};

/// Log lines a session queues before dropping new ones (livepeer_app.py:1709-1751).
pub(crate) const LOG_QUEUE: usize = 200;

/// The logger of the runner itself.
pub(crate) const LA: &str = "scope.cloud.livepeer_app";
/// The logger of the frame processor.
pub(crate) const FP: &str = "scope.server.frame_processor";

/// A log record's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Error,
    Info,
    Warning,
}

impl Level {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
        }
    }
}

/// One log record, formatted into a `logs` line by the I/O layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub(crate) logger: &'static str,
    pub(crate) level: Level,
    pub(crate) message: String,
}

impl LogRecord {
    pub(crate) fn info(logger: &'static str, message: impl Into<String>) -> Self {
        Self {
            logger,
            level: Level::Info,
            message: message.into(),
        }
    }

    pub(crate) fn warning(logger: &'static str, message: impl Into<String>) -> Self {
        Self {
            logger,
            level: Level::Warning,
            message: message.into(),
        }
    }

    pub(crate) fn error(logger: &'static str, message: impl Into<String>) -> Self {
        Self {
            logger,
            level: Level::Error,
            message: message.into(),
        }
    }
}

/// Run-time knobs of one message (from the fault knobs).
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub(crate) load: LoadKnobs,
    /// An uncorrelated `error` to emit as soon as a `start_stream` arrives.
    pub(crate) stray_error: Option<String>,
}

/// One output channel `start_stream` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutSlot {
    /// A video sink (`None`: no graph sink).
    Sink(Option<String>),
    /// A record node.
    Record(String),
    /// The audio output.
    Audio,
}

/// A `start_stream` that passed the checks: the channels to make.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StartPlan {
    pub(crate) rid: Value,
    pub(crate) params: Value,
    /// Source node ids that get an `in` channel.
    pub(crate) inputs: Vec<String>,
    pub(crate) outputs: Vec<OutSlot>,
}

/// A channel made for a plan: public URL (told to the client) and internal URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MadeChannel {
    pub(crate) url: String,
    pub(crate) internal: String,
}

/// Where a stream's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Decoded from this input channel (internal URL).
    Input(String),
    /// Generated (text mode) at this size.
    Synthetic { width: u32, height: u32 },
}

/// The media a successfully set-up stream runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MediaSpec {
    /// `None`: the pipelines wait for frames that never come (video-only pipelines in text
    /// mode).
    pub(crate) source: Option<Source>,
    /// Video outputs (internal URLs).
    pub(crate) outputs: Vec<String>,
    /// What each pipeline stage does, in stream order.
    pub(crate) stages: Vec<Kind>,
    /// The `start_stream` params (initial prompt, strength).
    pub(crate) params: Value,
}

/// What the I/O layer does for one control message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Send these events.
    Send(Vec<Value>),
    /// Send this answer, then restart the runner shortly.
    Restart(Value),
    /// Send `pre`, make the plan's channels, then call [`Core::started`].
    Start { pre: Vec<Value>, plan: StartPlan },
    /// Stop the media, then call [`Core::stopped`].
    Stop { rid: Value },
    /// Apply `params` to the running effect and send `reply`.
    Parameters { reply: Value, params: Value },
}

fn error(rid: &Value, text: &str) -> Value {
    json!({"type": "error", "request_id": rid, "error": text})
}

/// Python truthiness of a decoded JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// One session of a runner: its stream, log queue and the runner's pipelines.
#[derive(Debug)]
pub(crate) struct Core {
    pipelines: SharedPipelines,
    /// A frame processor exists; `true` when its setup succeeded (it runs).
    stream: Option<bool>,
    logs: VecDeque<LogRecord>,
}

impl Core {
    /// A session of a runner whose pipelines are `pipelines`.
    pub(crate) fn new(pipelines: SharedPipelines) -> Self {
        Self {
            pipelines,
            stream: None,
            logs: VecDeque::new(),
        }
    }

    /// Queues a log line (dropped when the queue is full).
    pub(crate) fn log(&mut self, r: LogRecord) {
        if self.logs.len() < LOG_QUEUE {
            self.logs.push_back(r);
        }
    }

    fn log_all(&mut self, rs: Vec<LogRecord>) {
        for r in rs {
            self.log(r);
        }
    }

    /// Up to `max` queued log lines, oldest first.
    pub(crate) fn drain_logs(&mut self, max: usize) -> Vec<LogRecord> {
        let n = self.logs.len().min(max);
        self.logs.drain(..n).collect()
    }

    /// Whether a stream exists.
    #[cfg(test)]
    pub(crate) fn streaming(&self) -> bool {
        self.stream.is_some()
    }

    /// Finishes the loads due by `now`.
    pub(crate) fn tick(&mut self, now: Instant) {
        let logs = pipelines::lock(&self.pipelines).tick(now);
        self.log_all(logs);
    }

    /// When the next load finishes.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        pipelines::lock(&self.pipelines).next_deadline()
    }

    /// The runner process restarted: pipelines unloaded, stream and queued logs gone.
    pub(crate) fn restart(&mut self) {
        *pipelines::lock(&self.pipelines) = pipelines::Pipelines::default();
        self.stream = None;
        self.logs.clear();
    }

    /// Handles one control message.
    pub(crate) fn handle(&mut self, msg: &Value, now: Instant, knobs: &Knobs) -> Step {
        let rid = msg.get("request_id").cloned().unwrap_or(Value::Null);
        let kind = msg.get("type").cloned().unwrap_or(Value::Null);
        match kind.as_str() {
            Some("ping") => Step::Send(vec![json!({
                "type": "pong",
                "request_id": rid,
                "timestamp": msg.get("timestamp").cloned().unwrap_or(Value::Null),
            })]),
            Some("api") => {
                let (outcome, logs) = {
                    let mut p = pipelines::lock(&self.pipelines);
                    super::api::handle(msg, &mut p, now, knobs.load)
                };
                self.log_all(logs);
                match outcome {
                    super::api::Outcome::Answer(v) => Step::Send(vec![v]),
                    super::api::Outcome::Restart(v) => Step::Restart(v),
                }
            }
            Some("start_stream") => {
                let pre: Vec<Value> = knobs
                    .stray_error
                    .iter()
                    .map(|e| error(&Value::Null, e))
                    .collect();
                match self.begin_start(rid, msg.get("params")) {
                    Ok(plan) => Step::Start { pre, plan },
                    Err(e) => Step::Send(pre.into_iter().chain([e]).collect()),
                }
            }
            Some("stop_stream") => Step::Stop { rid },
            Some("parameters") => {
                let params = match msg.get("params") {
                    None | Some(Value::Null) => json!({}),
                    Some(p) => p.clone(),
                };
                if !params.is_object() {
                    return Step::Send(vec![error(&rid, "parameters params must be an object")]);
                }
                if self.stream.is_none() {
                    return Step::Send(vec![error(&rid, "No active stream")]);
                }
                Step::Parameters {
                    reply: json!({"type": "parameters_ack", "request_id": rid, "status": "ok"}),
                    params,
                }
            }
            _ => {
                let t = py_str(&kind);
                self.log(LogRecord::warning(
                    LA,
                    format!("Unknown control message type: {t} payload={}", py_repr(msg)),
                ));
                Step::Send(vec![error(&rid, &format!("Unknown message type: {t}"))])
            }
        }
    }

    /// The checks of livepeer_app.py:913-1000, up to the channels to make.
    fn begin_start(&mut self, rid: Value, params: Option<&Value>) -> Result<StartPlan, Value> {
        let params = match params {
            Some(p) if truthy(p) => p.clone(),
            _ => json!({}),
        };
        if !params.is_object() {
            return Err(error(&rid, "start_stream params must be an object"));
        }
        if self.stream.is_some() {
            return Err(
                json!({"type": "stream_started", "request_id": rid, "status": "already_running"}),
            );
        }
        if pipeline_ids(&params).is_empty() {
            return Err(error(
                &rid,
                "No pipeline loaded. Load a pipeline before start_stream.",
            ));
        }
        let flag =
            |k: &str, default: bool| params.get(k).and_then(Value::as_bool).unwrap_or(default);
        let (video, audio) = (flag("produces_video", true), flag("produces_audio", false));
        let Routes {
            sources,
            sinks,
            records,
        } = graph::routes(params.get("graph"));
        let mut outputs = Vec::new();
        if video {
            if !sinks.is_empty() {
                outputs.extend(sinks.into_iter().map(|s| OutSlot::Sink(Some(s))));
            } else if !audio {
                outputs.push(OutSlot::Sink(None));
            }
            outputs.extend(records.into_iter().map(OutSlot::Record));
        }
        if audio {
            outputs.push(OutSlot::Audio);
        }
        let text = params.get("input_mode").and_then(Value::as_str) == Some("text");
        let inputs = if text { Vec::new() } else { sources };
        Ok(StartPlan {
            rid,
            params,
            inputs,
            outputs,
        })
    }

    /// The channels of `plan` were made: sets up the frame processor (silently failing as
    /// Scope's does) and answers `stream_started`. Returns the media to run, if any.
    pub(crate) fn started(
        &mut self,
        plan: &StartPlan,
        made: &[MadeChannel],
        now: Instant,
    ) -> (Value, Option<MediaSpec>) {
        let mut channels = Vec::new();
        let mut it = made.iter();
        for (i, src) in plan.inputs.iter().enumerate() {
            if let Some(c) = it.next() {
                channels.push(
                    json!({"url": c.url, "direction": "in", "mime_type": super::MIME_TS,
                    "role": "input", "input_track_index": i, "source_node_id": src}),
                );
            }
        }
        let mut video_out = Vec::new();
        let mut index = 0;
        for slot in &plan.outputs {
            let Some(c) = it.next() else { break };
            let ch = match slot {
                OutSlot::Sink(sink) => {
                    video_out.push(c.internal.clone());
                    json!({"url": c.url, "direction": "out", "mime_type": super::MIME_TS, "role": "output",
                        "output_track_index": index, "sink_node_id": sink, "record_node_id": null})
                }
                OutSlot::Record(r) => {
                    json!({"url": c.url, "direction": "out", "mime_type": super::MIME_TS,
                    "role": "output", "output_track_index": index, "sink_node_id": null, "record_node_id": r})
                }
                OutSlot::Audio => {
                    json!({"url": c.url, "direction": "out", "mime_type": super::MIME_AUDIO,
                    "role": "output_audio", "output_media_kind": "audio"})
                }
            };
            if !matches!(slot, OutSlot::Audio) {
                index += 1;
            }
            channels.push(ch);
        }
        let reply = json!({"type": "stream_started", "request_id": plan.rid, "channels": channels});
        let input = made.first().filter(|_| !plan.inputs.is_empty());
        let spec = self.setup(plan, input.map(|c| c.internal.clone()), video_out, now);
        self.stream = Some(spec.is_some());
        (reply, spec)
    }

    /// `FrameProcessor.start()`: any failure is only logged.
    fn setup(
        &mut self,
        plan: &StartPlan,
        input: Option<String>,
        outputs: Vec<String>,
        now: Instant,
    ) -> Option<MediaSpec> {
        self.tick(now);
        let ids = pipeline_ids(&plan.params);
        let given = plan.params.get("graph").filter(|g| g.is_object());
        let g = given.cloned().unwrap_or_else(|| graph::linear(&ids));
        let result = {
            let p = pipelines::lock(&self.pipelines);
            graph::setup(&g, |k| p.loaded(k).map(str::to_string)).map(|stages| {
                let size = stages
                    .first()
                    .and_then(|s| p.params_of(&s.node_id))
                    .map(size_of);
                (stages, size.unwrap_or((512, 512)))
            })
        };
        let (stages, (width, height)) = match result {
            Ok(x) => x,
            Err(e) => {
                self.log(LogRecord::error(FP, format!("Pipeline setup failed: {e}")));
                return None;
            }
        };
        let infos: Vec<&pipelines::Info> = stages
            .iter()
            .filter_map(|s| pipelines::find(&s.pipeline_id))
            .collect();
        let has_source = !graph::routes(Some(&g)).sources.is_empty();
        let video_mode =
            has_source && plan.params.get("input_mode").and_then(Value::as_str) == Some("video");
        let source = match infos.first() {
            Some(i) if i.supports_text() && !video_mode => {
                Some(Source::Synthetic { width, height })
            }
            _ => input.map(Source::Input),
        };
        let names: Vec<&str> = stages.iter().map(|s| s.node_id.as_str()).collect();
        self.log(LogRecord::info(
            FP,
            format!(
                "Frame processor started with pipelines {} (mode: {})",
                py_repr(&json!(names)),
                if video_mode { "video" } else { "text" }
            ),
        ));
        Some(MediaSpec {
            source,
            outputs,
            stages: infos.iter().map(|i| i.kind).collect(),
            params: plan.params.clone(),
        })
    }

    /// The media of a stop is gone: the answers (`stream_stopped`, and the notification when
    /// the frame processor ran).
    pub(crate) fn stopped(&mut self, rid: Value) -> Vec<Value> {
        let mut out = vec![json!({"type": "stream_stopped", "request_id": rid})];
        if self.stream.take() == Some(true) {
            self.log(LogRecord::info(FP, "Frame processor stopped"));
            out.push(json!({"type": "notification", "payload": {"type": "stream_stopped"}}));
        }
        out
    }
}

/// `params.pipeline_ids` as strings (a single string counts as one).
fn pipeline_ids(params: &Value) -> Vec<String> {
    match params.get("pipeline_ids") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The generated picture size from load params (`width`/`height`, even, 16..=1280).
fn size_of(params: &Value) -> (u32, u32) {
    let dim = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_u64)
            .map_or(512, |v| (v.clamp(16, 1280) as u32) & !1)
    };
    (dim("width"), dim("height"))
}

#[cfg(test)]
mod tests;
