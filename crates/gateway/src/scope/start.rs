//! The Scope start sequence as a pure state machine (`shared/spec/scope-protocol.md`):
//! wait (bounded) for `runner_ready`, check what is loaded, load the pipelines, poll their
//! status until `loaded`, learn the input mode when the caller left it open, then
//! `start_stream` and wait for its `stream_started`.
//!
//! Drive it like quinn's `Connection`: feed every event with [`StartMachine::handle_event`]
//! and expired deadlines with [`StartMachine::handle_timeout`], then drain
//! [`StartMachine::poll_step`] until it returns `None`; [`StartMachine::outcome`] says when
//! it is over. Time is always passed in. Every answer is matched by `request_id`: an event
//! without one never completes a request, however it looks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::plan::{InputMode, StartPlan, default_mode};

/// How long each wait may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// For `runner_ready`; the start goes on without it afterwards.
    pub(crate) ready: Duration,
    /// For the pipelines to reach `loaded`.
    pub(crate) load: Duration,
    /// Between status polls.
    pub(crate) poll: Duration,
    /// For any one answer (`api_response`, `stream_started`).
    pub(crate) answer: Duration,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Write this message on the control channel.
    Send(Value),
    /// Tell the client how the start is going (an event of the job's own).
    Progress(Value),
}

/// How the start ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// `stream_started` arrived: its `channels`, and the input mode the stream runs in.
    Started(Value, InputMode),
    /// The start failed, with the runner's own words where it gave any.
    Failed(String),
    /// The runner refused what was asked (pipeline unknown or failed to load, the load or
    /// the stream refused): another runner would refuse it too.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    WaitReady {
        until: Instant,
    },
    /// Waiting for the first status answer.
    Status {
        rid: String,
        until: Instant,
    },
    /// Waiting for the load request's answer.
    Load {
        rid: String,
        until: Instant,
    },
    /// Polling the status: an answer pending (`rid`) or the next poll due at `next`.
    Poll {
        rid: Option<String>,
        next: Instant,
        until: Instant,
    },
    Schemas {
        rid: String,
        until: Instant,
    },
    Starting {
        rid: String,
        until: Instant,
    },
    /// A load failed with no words yet: the runner sends its log lines in batches
    /// (every 500 ms), often after the status that says `error`. Waits for them until
    /// `until`, then refuses with `why` and whatever arrived.
    Grace {
        why: String,
        until: Instant,
    },
    Done,
}

/// Polls answered `not_loaded` before any `loading` after which the load counts as failed
/// (the real runner reports a failed load as `error` once, then `not_loaded`).
const MAX_NOT_LOADED: u32 = 8;
/// Runner restarts one start survives before it gives up.
const MAX_RESTARTS_IN_START: u32 = 2;
/// Runner error lines kept for the failure message.
const MAX_ERRORS: usize = 4;
/// How long a failed load waits for the runner's log lines: three of the real runner's
/// 500 ms log batches.
const LOGS_GRACE: Duration = Duration::from_millis(1500);

/// One Scope start.
#[derive(Debug)]
pub(crate) struct StartMachine {
    plan: StartPlan,
    t: Timeouts,
    prefix: String,
    seq: u64,
    state: State,
    steps: VecDeque<Step>,
    outcome: Option<Outcome>,
    load_deadline: Option<Instant>,
    seen_loading: bool,
    not_loaded: u32,
    stage: Option<String>,
    mode: Option<InputMode>,
    saw_ready: bool,
    /// `runner_ready`s after the first: restarts of the runner during the start.
    restarts: u32,
    /// Error lines from `logs` and uncorrelated `error` events, newest last.
    errors: VecDeque<String>,
}

/// Strips URLs (trickle URLs are bearer capabilities) from a runner line.
pub(crate) fn redact(line: &str) -> String {
    line.split(' ')
        .map(|w| if w.contains("://") { "<url>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The message of a runner log line (`<time> - <logger> - ERROR - [(<id>)] <message>`).
fn log_message(line: &str) -> &str {
    let msg = line.rsplit_once(" - ERROR - ").map_or(line, |(_, m)| m);
    match msg.strip_prefix("[(").and_then(|m| m.split_once(")] ")) {
        Some((_, rest)) => rest,
        None => msg,
    }
}

/// Whether a runner log line reports a failure worth naming.
fn is_error_line(line: &str) -> bool {
    line.contains(" - ERROR - ")
        || line.contains("Failed to load pipeline")
        || line.contains("Pipeline setup failed")
}

impl StartMachine {
    /// A start of `plan`; request IDs begin with `prefix`.
    pub(crate) fn new(plan: StartPlan, t: Timeouts, prefix: &str, now: Instant) -> Self {
        let mode = plan.mode;
        Self {
            plan,
            t,
            prefix: prefix.to_owned(),
            seq: 0,
            state: State::WaitReady {
                until: now + t.ready,
            },
            steps: VecDeque::new(),
            outcome: None,
            load_deadline: None,
            seen_loading: false,
            not_loaded: 0,
            stage: None,
            mode,
            saw_ready: false,
            restarts: 0,
            errors: VecDeque::new(),
        }
    }

    /// A start on a runner known to be ready (it just said `runner_ready` after a
    /// restart): straight to the status check.
    pub(crate) fn after_ready(plan: StartPlan, t: Timeouts, prefix: &str, now: Instant) -> Self {
        let mut m = Self::new(plan, t, prefix, now);
        m.saw_ready = true;
        m.check_status(now);
        m
    }

    /// Whether `runner_ready` was seen.
    pub(crate) fn saw_ready(&self) -> bool {
        self.saw_ready
    }

    /// The next thing to do, if any.
    pub(crate) fn poll_step(&mut self) -> Option<Step> {
        self.steps.pop_front()
    }

    /// The outcome, once (then `None`).
    pub(crate) fn outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    /// When [`Self::handle_timeout`] must be called next; `None` once done.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::WaitReady { until }
            | State::Status { until, .. }
            | State::Load { until, .. }
            | State::Schemas { until, .. }
            | State::Starting { until, .. }
            | State::Grace { until, .. } => Some(*until),
            State::Poll {
                rid: None, next, ..
            } => Some(*next),
            State::Poll { until, .. } => Some(*until),
            State::Done => None,
        }
    }

    fn rid(&mut self, kind: &str) -> String {
        self.seq += 1;
        format!("{}-{kind}-{}", self.prefix, self.seq)
    }

    fn api(&mut self, kind: &str, method: &str, path: &str, body: Option<Value>) -> String {
        let rid = self.rid(kind);
        let mut msg = json!({"type": "api", "request_id": rid, "method": method, "path": path});
        if let Some(b) = body {
            msg["body"] = b;
        }
        self.steps.push_back(Step::Send(msg));
        rid
    }

    fn message(&self, why: String) -> String {
        if self.errors.is_empty() {
            return why;
        }
        let said: Vec<String> = self.errors.iter().cloned().collect();
        format!("{why}; runner said: {}", said.join(" | "))
    }

    /// A failure of the runner or the transport (time-outs, missing answers).
    fn fail(&mut self, why: impl Into<String>) {
        self.outcome = Some(Outcome::Failed(self.message(why.into())));
        self.state = State::Done;
    }

    /// A refusal of what was asked.
    fn refuse(&mut self, why: impl Into<String>) {
        self.outcome = Some(Outcome::Refused(self.message(why.into())));
        self.state = State::Done;
    }

    /// A refusal that waits (bounded) for the runner's log lines when it has none yet.
    fn refuse_with_logs(&mut self, now: Instant, why: impl Into<String>) {
        if self.errors.is_empty() {
            self.state = State::Grace {
                why: why.into(),
                until: now + LOGS_GRACE,
            };
        } else {
            self.refuse(why);
        }
    }

    fn note_error(&mut self, text: String) {
        if self.errors.len() == MAX_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(text);
    }

    fn check_status(&mut self, now: Instant) {
        let rid = self.api("status", "GET", "/api/v1/pipeline/status", None);
        self.state = State::Status {
            rid,
            until: now + self.t.answer,
        };
    }

    fn load(&mut self, now: Instant) {
        let body = self.plan.load_body();
        let rid = self.api("load", "POST", "/api/v1/pipeline/load", Some(body));
        self.load_deadline = Some(now + self.t.load);
        self.steps.push_back(Step::Progress(json!({
            "type": "pipeline_loading",
            "pipeline_ids": self.plan.pipeline_ids(),
            "status": "requested",
        })));
        self.state = State::Load {
            rid,
            until: now + self.t.answer,
        };
    }

    fn poll(&mut self, now: Instant) {
        let rid = self.api("status", "GET", "/api/v1/pipeline/status", None);
        let until = self.load_deadline.unwrap_or(now + self.t.load);
        self.state = State::Poll {
            rid: Some(rid),
            next: now,
            until,
        };
    }

    fn loaded(&mut self, now: Instant) {
        self.steps.push_back(Step::Progress(json!({
            "type": "pipeline_loaded",
            "pipeline_ids": self.plan.pipeline_ids(),
        })));
        if self.mode.is_some() {
            self.start(now);
        } else {
            let rid = self.api("schemas", "GET", "/api/v1/pipelines/schemas", None);
            self.state = State::Schemas {
                rid,
                until: now + self.t.answer,
            };
        }
    }

    fn start(&mut self, now: Instant) {
        let mode = self.mode.unwrap_or(InputMode::Video);
        self.mode = Some(mode);
        let rid = self.rid("start");
        let params = self.plan.start_params(mode);
        self.steps.push_back(Step::Send(
            json!({"type": "start_stream", "request_id": rid, "params": params}),
        ));
        self.state = State::Starting {
            rid,
            until: now + self.t.answer,
        };
    }

    /// An event from the runner.
    pub(crate) fn handle_event(&mut self, now: Instant, ev: &Value) {
        if self.state == State::Done {
            return;
        }
        let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
        let rid = ev.get("request_id").and_then(Value::as_str);
        match kind {
            "logs" => {
                let lines = ev.get("lines").and_then(Value::as_array);
                for l in lines.into_iter().flatten().filter_map(Value::as_str) {
                    if is_error_line(l) {
                        self.note_error(redact(log_message(l.trim())));
                    }
                }
                if let State::Grace { why, .. } = &self.state
                    && !self.errors.is_empty()
                {
                    let why = why.clone();
                    self.refuse(why);
                }
                return;
            }
            "error" if rid.is_none() => {
                // Not the answer to anything of ours; remembered for the failure message.
                let text = ev.get("error").and_then(Value::as_str).unwrap_or("error");
                self.note_error(format!("uncorrelated error: {}", redact(text)));
                return;
            }
            "runner_ready" => {
                let waiting = matches!(self.state, State::WaitReady { .. });
                if !waiting && self.saw_ready {
                    // The runner restarted under the start: whatever it loaded is gone.
                    // Start over from the status check; pending answers are stale.
                    self.restarts += 1;
                    if self.restarts > MAX_RESTARTS_IN_START {
                        self.fail(format!(
                            "the runner restarted {} times during the start",
                            self.restarts
                        ));
                        return;
                    }
                    self.load_deadline = None;
                    self.seen_loading = false;
                    self.not_loaded = 0;
                    self.stage = None;
                    self.check_status(now);
                } else if waiting {
                    self.check_status(now);
                }
                self.saw_ready = true;
                return;
            }
            _ => {}
        }
        let Some(rid) = rid else { return };
        match self.state.clone() {
            State::Status { rid: want, .. } if want == rid => {
                if kind != "api_response" {
                    return self.fail(format!("pipeline status refused: {}", error_text(ev)));
                }
                let data = &ev["data"];
                if ev["status"] == 200 && self.plan.is_loaded(data) {
                    self.loaded(now);
                } else {
                    self.load(now);
                }
            }
            State::Load { rid: want, .. } if want == rid => {
                if kind != "api_response" || ev["status"] != 200 {
                    return self.refuse(format!(
                        "pipeline load refused ({}): {}",
                        ev["status"],
                        error_text(ev)
                    ));
                }
                let next = now + self.t.poll;
                let until = self.load_deadline.unwrap_or(now + self.t.load);
                self.state = State::Poll {
                    rid: None,
                    next,
                    until,
                };
            }
            State::Poll {
                rid: Some(want),
                until,
                ..
            } if want == rid => {
                if kind != "api_response" || ev["status"] != 200 {
                    return self.fail(format!("pipeline status failed: {}", error_text(ev)));
                }
                let data = &ev["data"];
                match data["status"].as_str().unwrap_or("") {
                    "loaded" => return self.loaded(now),
                    "loading" => {
                        self.seen_loading = true;
                        let stage = data["loading_stage"].as_str().map(str::to_owned);
                        if stage.is_some() && stage != self.stage {
                            self.stage.clone_from(&stage);
                            self.steps.push_back(Step::Progress(json!({
                                "type": "pipeline_loading",
                                "pipeline_ids": self.plan.pipeline_ids(),
                                "status": "loading",
                                "loading_stage": stage,
                            })));
                        }
                    }
                    "error" => {
                        // The real runner leaves `error` null: its words are in `logs`.
                        return match data["error"].as_str() {
                            Some(text) => {
                                self.refuse(format!("pipeline load failed: {}", redact(text)));
                            }
                            None => self.refuse_with_logs(now, "pipeline load failed"),
                        };
                    }
                    _ => {
                        self.not_loaded += 1;
                        if self.seen_loading || self.not_loaded >= MAX_NOT_LOADED {
                            return self.refuse_with_logs(
                                now,
                                "pipeline load failed: the runner reports nothing loaded",
                            );
                        }
                    }
                }
                self.state = State::Poll {
                    rid: None,
                    next: now + self.t.poll,
                    until,
                };
            }
            State::Schemas { rid: want, .. } if want == rid => {
                let id = self.plan.pipelines[0].pipeline_id.clone();
                self.mode = Some(default_mode(&ev["data"], &id).unwrap_or(InputMode::Video));
                self.start(now);
            }
            State::Starting { rid: want, .. } if want == rid => match kind {
                "stream_started" if ev["status"] == "already_running" => {
                    self.fail("the runner already runs a stream for this session");
                }
                "stream_started" => {
                    let channels = ev.get("channels").cloned().unwrap_or(Value::Null);
                    self.outcome = Some(Outcome::Started(
                        channels,
                        self.mode.unwrap_or(InputMode::Video),
                    ));
                    self.state = State::Done;
                }
                _ => self.refuse(format!("runner error: {}", error_text(ev))),
            },
            _ => {}
        }
    }

    /// Time has passed `now`; a deadline may have expired.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.poll_timeout() else {
            return;
        };
        if now < due {
            return;
        }
        match self.state.clone() {
            // A runner that never announces itself is asked anyway.
            State::WaitReady { .. } => self.check_status(now),
            State::Status { .. } => self.fail(format!(
                "no answer to the pipeline status within {} ms",
                self.t.answer.as_millis()
            )),
            State::Load { .. } => self.fail(format!(
                "no answer to the pipeline load within {} ms",
                self.t.answer.as_millis()
            )),
            State::Poll { rid, until, .. } if now < until => {
                if rid.is_none() {
                    self.poll(now);
                }
            }
            State::Poll { .. } => {
                let stage = self.stage.as_deref().unwrap_or("none");
                self.fail(format!(
                    "pipelines {:?} did not load within {} s (last stage: {stage})",
                    self.plan.pipeline_ids(),
                    self.t.load.as_secs()
                ));
            }
            State::Schemas { .. } => {
                // The schemas are a hint; video is the safe default for a video gateway.
                self.mode = Some(InputMode::Video);
                self.start(now);
            }
            State::Starting { .. } => self.fail(format!(
                "no stream_started within {} ms",
                self.t.answer.as_millis()
            )),
            State::Grace { why, .. } => self.refuse(why),
            State::Done => {}
        }
    }
}

/// The words of an `error` or failed `api_response`.
fn error_text(ev: &Value) -> String {
    for k in ["error", "message"] {
        if let Some(s) = ev.get(k).and_then(Value::as_str) {
            return redact(s);
        }
    }
    match ev.get("data") {
        Some(Value::String(s)) => redact(s),
        Some(Value::Null) | None => "no details".into(),
        Some(v) => {
            let mut s = v.to_string();
            s.truncate(300);
            redact(&s)
        }
    }
}

#[cfg(test)]
mod tests;
