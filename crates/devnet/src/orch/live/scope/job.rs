//! One Scope job's I/O: reads the control channel, drives the [`Core`], writes the events
//! channel (JSON lines in Python's format, a segment per 10 s), batches `logs`, makes and
//! removes media channels, runs the media, and restarts the runner on request.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use lpgw_trickle::json::{Framing, JsonWriter, JsonWriterConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::super::Live;
use super::control::ControlReader;
use super::media;
use super::pipelines::{LoadKnobs, SharedPipelines};
use super::protocol::{Core, Knobs, LA, LogRecord, MadeChannel, OutSlot, StartPlan, Step};
use super::wire::{log_line, py_json, py_str};
use super::{Channels, MIME_AUDIO, MIME_TS};
use crate::runner_effect::SharedParams;

/// How often queued log lines are sent.
const LOG_PERIOD: Duration = Duration::from_millis(500);
/// Log lines per `logs` event.
const LOG_BATCH: usize = 50;
/// From the restart answer to the re-executed runner, unless a fault knob says otherwise.
const RESTART_DELAY: Duration = Duration::from_millis(500);
/// Bound on a channel call to the orchestrator.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What a job runs against.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) live: Arc<Live>,
    pub(crate) how: Channels,
    /// The runner's pipelines (kept across sessions of a persistent runner).
    pub(crate) pipelines: SharedPipelines,
    /// How long a load takes unless a fault knob says otherwise.
    pub(crate) load_delay: Duration,
    /// The job's manifest (session) id, in every log line.
    pub(crate) manifest_id: String,
    /// Lifetime of an events segment; zero: one event per segment.
    pub(crate) events_rotate: Duration,
}

/// The running stream's I/O side.
struct Running {
    cancel: CancellationToken,
    params: SharedParams,
    /// Channels to remove when it stops.
    names: Vec<String>,
}

struct Io {
    job: Job,
    events: JsonWriter,
    running: Option<Running>,
    /// Streams started so far (channel names).
    streams: u32,
    /// Channels made so far (session channel names).
    made: u32,
    cancel: CancellationToken,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Runs one job's control protocol until `cancel` or the control channel ends.
pub(crate) async fn run(job: Job, control: String, events: String, cancel: CancellationToken) {
    let framing = if job.events_rotate.is_zero() {
        Framing::PerSegment
    } else {
        Framing::Lines {
            rotate: job.events_rotate,
        }
    };
    let wcfg = JsonWriterConfig {
        framing,
        keepalive: None,
        ..JsonWriterConfig::default()
    };
    let Ok(events) = JsonWriter::new(&events, wcfg) else {
        tracing::warn!("scope job cannot open events");
        return;
    };
    let Ok(mut control) = ControlReader::new(&control) else {
        tracing::warn!("scope job cannot open control");
        return;
    };
    let shutdown = job.live.orch.shutdown.clone();
    let mut core = Core::new(job.pipelines.clone());
    let mut io = Io {
        job,
        events,
        running: None,
        streams: 0,
        made: 0,
        cancel: cancel.clone(),
    };
    io.ready(&mut core).await;
    let mut restart_at: Option<Instant> = None;
    let mut logs = tokio::time::interval(LOG_PERIOD);
    logs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut released = false;
    loop {
        let deadline = core.next_deadline();
        tokio::select! {
            () = cancel.cancelled() => { released = true; break }
            () = shutdown.cancelled() => { released = true; break }
            () = sleep_until(deadline) => core.tick(Instant::now()),
            () = sleep_until(restart_at) => {
                restart_at = None;
                io.restart(&mut core).await;
            }
            _ = logs.tick() => io.flush_logs(&mut core).await,
            m = control.next() => match m {
                Ok(Some(m)) => {
                    if let Some(at) = io.handle(&mut core, &m).await {
                        restart_at = Some(at);
                    }
                }
                Ok(None) => break,
                // As the Python reader's error: the control loop ends.
                Err(e) => {
                    core.log(LogRecord::error(LA, format!("Control channel subscription error: {e}")));
                    break;
                }
            },
        }
    }
    // A released session's channels are already gone at the orchestrator.
    io.stop_media(!released).await;
    io.flush_logs(&mut core).await;
    let _ = io.events.close().await;
}

impl Io {
    async fn send(&self, v: &Value) {
        if let Err(e) = self.events.send_raw(Bytes::from(py_json(v))).await {
            tracing::debug!(error = %e, "scope events ended");
        }
    }

    /// A (re)started runner: `runner_ready` and the first log line.
    async fn ready(&mut self, core: &mut Core) {
        core.log(LogRecord::info(
            LA,
            format!(
                "Session {} connected; listening for control messages",
                self.job.manifest_id
            ),
        ));
        if !self.job.live.orch.faults.get().scope_no_runner_ready {
            self.send(&json!({"type": "runner_ready", "runner_job_id": null}))
                .await;
        }
    }

    async fn flush_logs(&mut self, core: &mut Core) {
        loop {
            let batch = core.drain_logs(LOG_BATCH);
            if batch.is_empty() {
                return;
            }
            let now = SystemTime::now();
            let lines: Vec<String> = batch
                .iter()
                .map(|r| log_line(r, &self.job.manifest_id, now))
                .collect();
            self.send(&json!({"type": "logs", "lines": lines})).await;
            if batch.len() < LOG_BATCH {
                return;
            }
        }
    }

    /// The runner process re-executed itself: everything in memory is gone.
    async fn restart(&mut self, core: &mut Core) {
        if self
            .job
            .live
            .orch
            .faults
            .get()
            .scope_restart_closes_channels
        {
            self.stop_media(true).await;
        } else if let Some(r) = self.running.take() {
            r.cancel.cancel();
        }
        core.restart();
        self.ready(core).await;
    }

    /// Handles one control message; returns when to restart, if asked to.
    async fn handle(&mut self, core: &mut Core, msg: &Value) -> Option<Instant> {
        let faults = self.job.live.orch.faults.get();
        let knobs = Knobs {
            load: LoadKnobs {
                delay: faults.scope_load_delay.unwrap_or(self.job.load_delay),
                fail: faults.scope_load_fail,
            },
            stray_error: faults.scope_uncorrelated_error.clone(),
        };
        match core.handle(msg, Instant::now(), &knobs) {
            Step::Send(vs) => {
                for v in &vs {
                    self.send(v).await;
                }
            }
            Step::Restart(v) => {
                self.send(&v).await;
                let delay = faults.scope_restart_delay.unwrap_or(RESTART_DELAY);
                return Some(Instant::now() + delay);
            }
            Step::Start { pre, plan } => {
                for v in &pre {
                    self.send(v).await;
                }
                self.start(core, &plan).await;
            }
            Step::Stop { rid } => {
                if self.running.is_some() {
                    core.log(LogRecord::info(LA, "Stopping stream"));
                    if let Some(d) = faults.scope_stop_delay {
                        tokio::time::sleep(d).await;
                    }
                }
                self.stop_media(true).await;
                for v in core.stopped(rid) {
                    self.send(&v).await;
                }
            }
            Step::Parameters { reply, params } => {
                if let Some(r) = &self.running {
                    let msg = json!({"type": "parameters", "params": params});
                    r.params
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .update(&msg);
                }
                self.send(&reply).await;
            }
        }
        None
    }

    async fn start(&mut self, core: &mut Core, plan: &StartPlan) {
        let (made, names) = match self.make_channels(plan).await {
            Ok(x) => x,
            Err(e) => {
                core.log(LogRecord::error(LA, format!("Failed to start stream: {e}")));
                let err = json!({"type": "error", "request_id": plan.rid, "error": e});
                self.send(&err).await;
                return;
            }
        };
        core.log(LogRecord::info(
            LA,
            format!(
                "Starting stream with {} input(s) and {} output(s)",
                plan.inputs.len(),
                plan.outputs.len()
            ),
        ));
        let (reply, spec) = core.started(plan, &made, Instant::now());
        let params = media::initial_params(&plan.params);
        let cancel = self.cancel.child_token();
        if let Some(spec) = spec {
            media::spawn(
                &self.job.live.orch.tracker,
                spec,
                params.clone(),
                cancel.clone(),
            );
        }
        self.running = Some(Running {
            cancel,
            params,
            names,
        });
        self.send(&reply).await;
    }

    /// Makes the plan's channels in order (inputs, outputs): returns them and the names to
    /// remove at stop.
    async fn make_channels(
        &mut self,
        plan: &StartPlan,
    ) -> Result<(Vec<MadeChannel>, Vec<String>), String> {
        let mut wanted: Vec<(&str, &str)> = plan.inputs.iter().map(|_| ("in", MIME_TS)).collect();
        wanted.extend(plan.outputs.iter().map(|o| match o {
            OutSlot::Audio => ("out", MIME_AUDIO),
            _ => ("out", MIME_TS),
        }));
        let live = &self.job.live;
        match &self.job.how {
            Channels::Direct { mid } => {
                let n = self.streams;
                self.streams += 1;
                let (mut made, mut names) = (Vec::new(), Vec::new());
                let (mut ins, mut outs) = (0, 0);
                for (dir, mime) in wanted {
                    let k = if dir == "in" { &mut ins } else { &mut outs };
                    let name = match *k {
                        0 => format!("{mid}-{n}-{dir}"),
                        k => format!("{mid}-{n}-{dir}-{k}"),
                    };
                    *k += 1;
                    live.orch.trickle.create_channel(&name, mime);
                    made.push(MadeChannel {
                        url: live.public_trickle(&name),
                        internal: live.internal_trickle(&name),
                    });
                    names.push(name);
                }
                Ok((made, names))
            }
            Channels::Session { control, token } => {
                let tag: String = py_str(&plan.rid)
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                            c
                        } else {
                            '-'
                        }
                    })
                    .take(48)
                    .collect();
                let mut names = Vec::new();
                let mut req = Vec::new();
                for (dir, mime) in wanted {
                    self.made += 1;
                    let name = format!("{dir}-{tag}-{}", self.made);
                    req.push(json!({"name": name, "mime_type": mime}));
                    names.push(name);
                }
                let r = live
                    .client
                    .post(format!("{control}/channels"))
                    .header("Livepeer-Session-Token", token)
                    .timeout(CALL_TIMEOUT)
                    .json(&json!({ "channels": req }))
                    .send()
                    .await
                    .map_err(|_| "Timed out waiting for websocket response from orchestrator")?;
                let status = r.status();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if !status.is_success() {
                    return Err(format!("create_channels failed: {status}: {v}"));
                }
                let list = v["channels"]
                    .as_array()
                    .ok_or("Invalid new_channels payload: channels must be a list")?;
                let mut made = Vec::new();
                for (i, c) in list.iter().enumerate() {
                    let url = c["url"].as_str().ok_or_else(|| {
                        let what = if i < plan.inputs.len() {
                            "input"
                        } else {
                            "output"
                        };
                        format!("response did not include {what} track URL")
                    })?;
                    made.push(MadeChannel {
                        url: url.to_string(),
                        internal: c["internal_url"].as_str().unwrap_or(url).to_string(),
                    });
                }
                Ok((made, names))
            }
        }
    }

    /// Stops the media; `remove` also deletes its channels at the orchestrator.
    async fn stop_media(&mut self, remove: bool) {
        let Some(r) = self.running.take() else {
            return;
        };
        r.cancel.cancel();
        if !remove || r.names.is_empty() {
            return;
        }
        let live = &self.job.live;
        match &self.job.how {
            Channels::Direct { .. } => {
                for n in &r.names {
                    live.orch.trickle.delete_channel(n);
                }
            }
            Channels::Session { control, token } => {
                let sent = live
                    .client
                    .delete(format!("{control}/channels"))
                    .header("Livepeer-Session-Token", token)
                    .timeout(CALL_TIMEOUT)
                    .json(&json!({ "channels": r.names }))
                    .send()
                    .await;
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "scope channels not removed");
                }
            }
        }
    }
}
