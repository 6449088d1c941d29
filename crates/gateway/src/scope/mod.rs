//! Scope jobs: the job JSON a Scope start returns, and the control/events protocol that
//! loads pipelines and creates the media channels (`shared/spec/scope-protocol.md`).
//!
//! The gateway speaks the whole protocol — the start sequence ([`start`]), `ping`
//! keepalives, requests correlated by `request_id` — and exposes the channels by role
//! once `stream_started` arrives; moving video through them is the caller's business.

mod channels;
mod plan;
mod recover;
mod rpc;
mod start;

pub use channels::{MediaChannels, ScopeChannel, ScopeUrls};
pub use plan::{InputMode, PipelineSpec};

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use lpgw_trickle::json::{
    JsonReader, JsonReaderConfig, JsonWriter, JsonWriterConfig, is_keepalive,
};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, debug_span, warn};
use url::Url;

use self::recover::{Link, Recovery, StreamState, lock};
use self::rpc::{Waiters, ask, deliver, ping_task};
use crate::error::{Error, RejectReason};
use crate::gateway::Inner;
use crate::runner::{Funding, FundingEnd, RunnerSession};

/// Bounded queue of events for the application; newer events are dropped when full.
const EVENTS_QUEUE: usize = 64;
/// How long closing may spend on `stop_stream` and the control channel.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stop waits for `stream_stopped`. The real runner gives each of its media
/// tasks a second to end before cancelling it, so its answer comes after 2 s and more.
const STOP_ANSWER: Duration = Duration::from_secs(5);

/// Whether `params` make a start plan (pipelines, graph, load parameters of the right
/// shapes), with `defaults` when they name no pipeline.
pub(crate) fn check_params(params: Option<&Value>, defaults: &[String]) -> Result<(), String> {
    plan::StartPlan::from_params(params, defaults).map(|_| ())
}

/// How the runner is doing, from its `pong`s and announcements.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct ScopeHealth {
    /// Round trip of the last answered `ping`.
    pub last_pong: Option<Duration>,
    /// Pings in a row with no `pong` in time.
    pub missed_pongs: u32,
    /// `runner_ready` seen after the stream started: the runner restarted (and lost its
    /// pipelines and stream).
    pub restarts: u32,
}

/// A running Scope job: control writer, events reader, and the live-runner session or
/// payment loop behind it. Dropping it stops the session; [`ScopeJob::close`] does it in
/// order (`stop_stream`, control channel, session).
#[must_use = "dropping a job stops it"]
pub struct ScopeJob {
    inner: Arc<Inner>,
    urls: ScopeUrls,
    runner_url: String,
    control: Option<Arc<JsonWriter>>,
    events: Option<mpsc::Receiver<Value>>,
    /// The job's own events (start progress) go to the application through this.
    app_events: mpsc::Sender<Value>,
    /// Every event, for the start sequence while it runs.
    tap: Arc<Mutex<Option<mpsc::Sender<Value>>>>,
    tap_rx: Option<mpsc::Receiver<Value>>,
    waiters: Waiters,
    token: CancellationToken,
    /// The running stream: its channels, mode and parameters, kept current across
    /// runner restarts by the recovery task.
    state: Arc<StreamState>,
    /// Restarts seen by the events reader, for the recovery task once the stream runs.
    restarts: Option<mpsc::Receiver<mpsc::Receiver<Value>>>,
    session: Option<RunnerSession>,
    funding: Option<Funding>,
    health: Arc<Mutex<ScopeHealth>>,
    started: Arc<std::sync::atomic::AtomicBool>,
    request_seq: std::sync::atomic::AtomicU64,
    /// `stop_stream` was sent (by [`ScopeJob::stop_stream`]).
    stream_stopped: bool,
}

impl std::fmt::Debug for ScopeJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeJob")
            .field("manifest_id", &self.urls.manifest_id)
            .field("runner", &self.runner_url)
            .finish_non_exhaustive()
    }
}

/// Events buffered for the start sequence.
const TAP_QUEUE: usize = 256;

impl ScopeJob {
    /// Opens the control and events channels of a started job.
    pub(crate) fn spawn(
        inner: Arc<Inner>,
        urls: ScopeUrls,
        runner_url: String,
        session: Option<RunnerSession>,
        funding: Option<Funding>,
    ) -> Result<Self, RejectReason> {
        let channel_client = |u: &str| {
            Url::parse(u)
                .ok()
                .and_then(|u| inner.clients.trickle_for(&u).ok())
        };
        // Scope runners answer `{"keep":"alive"}` with an error: they are kept alive with
        // `ping` instead (see `ping_task`).
        let mut wcfg = JsonWriterConfig {
            keepalive: None,
            ..JsonWriterConfig::default()
        };
        wcfg.publisher.http = channel_client(&urls.control_url);
        let control = JsonWriter::new(&urls.control_url, wcfg)
            .map_err(|e| RejectReason::InvalidResponse(format!("control channel: {e}")))?;
        let mut rcfg = JsonReaderConfig::default();
        // A fresh job: read the events channel from its start so no answer is missed.
        rcfg.subscriber.start = SeqRequest::At(0);
        rcfg.subscriber.http = channel_client(&urls.events_url);
        let mut reader = JsonReader::new(&urls.events_url, rcfg)
            .map_err(|e| RejectReason::InvalidResponse(format!("events channel: {e}")))?;
        let token = CancellationToken::new();
        let waiters: Waiters = Arc::default();
        let (tx, rx) = mpsc::channel(EVENTS_QUEUE);
        let (tap_tx, tap_rx) = mpsc::channel(TAP_QUEUE);
        let tap = Arc::new(Mutex::new(Some(tap_tx)));
        let health = Arc::new(Mutex::new(ScopeHealth::default()));
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (restart_tx, restarts) = mpsc::channel(4);
        let span = debug_span!("scope_job", manifest = %urls.manifest_id);
        let (t, w, app, tp, h, st) = (
            token.clone(),
            waiters.clone(),
            tx.clone(),
            tap.clone(),
            health.clone(),
            started.clone(),
        );
        tokio::spawn(
            async move {
                let mut dropped = 0u64;
                loop {
                    let next = tokio::select! {
                        () = t.cancelled() => return,
                        n = reader.next() => n,
                    };
                    let v = match next {
                        Ok(Some(v)) => v,
                        Ok(None) => {
                            debug!("events channel ended");
                            t.cancel();
                            return;
                        }
                        Err(e) => {
                            warn!(error = %e, "events channel failed");
                            t.cancel();
                            return;
                        }
                    };
                    if is_keepalive(&v) {
                        continue;
                    }
                    let mut v = v;
                    let started = st.load(std::sync::atomic::Ordering::SeqCst);
                    let recovering = started && lock(&tp).is_some();
                    let mut restarted = false;
                    if v["type"] == "runner_ready" && started && !recovering {
                        // The runner's process started again: its pipelines and the stream
                        // are gone. The recovery task starts the stream again (a restart
                        // during a recovery is the recovery's own business).
                        warn!("scope runner restarted under a running stream");
                        lock(&h).restarts += 1;
                        restarted = true;
                    }
                    if v["type"] == "error"
                        && (!started || recovering)
                        && v.get("request_id").is_none_or(Value::is_null)
                    {
                        // Seen by the start sequence, which names it if the start fails;
                        // not a fault of the stream that follows.
                        v["during_start"] = true.into();
                    }
                    deliver(&w, &v);
                    if let Some(tap) = lock(&tp).as_ref() {
                        let _ = tap.try_send(v.clone());
                    }
                    if restarted {
                        // Every event from here on goes to the recovery's start sequence.
                        let (tx, rx) = mpsc::channel(TAP_QUEUE);
                        if restart_tx.try_send(rx).is_ok() {
                            *lock(&tp) = Some(tx);
                        }
                    }
                    if v["type"] == "pong" {
                        // Answers to our own keepalives are not the application's business.
                        continue;
                    }
                    if v["type"] == "logs"
                        && let Some(lines) = v.get_mut("lines").and_then(Value::as_array_mut)
                    {
                        // At debug level runners log their channel URLs: capabilities that
                        // must not reach the application's clients.
                        for l in lines.iter_mut() {
                            if let Some(s) = l.as_str() {
                                *l = Value::String(start::redact(s));
                            }
                        }
                    }
                    if app.try_send(v).is_err() && !app.is_closed() {
                        dropped += 1;
                        debug!(dropped, "event dropped: application is not reading");
                    }
                    if restarted {
                        let _ = app.try_send(json!({"type": "runner_restarted"}));
                    }
                }
            }
            .instrument(span.clone()),
        );
        // Payments that stop on their own end the job.
        let ended = session
            .as_ref()
            .map(|s| s.ended_token())
            .or_else(|| funding.as_ref().map(Funding::ended_token));
        if let Some(ended) = ended {
            let t = token.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = ended.cancelled() => t.cancel(),
                    () = t.cancelled() => {}
                }
            });
        }
        let control = Arc::new(control);
        tokio::spawn(
            ping_task(
                Arc::downgrade(&control),
                waiters.clone(),
                health.clone(),
                inner.settings.live.scope.clone(),
                urls.manifest_id.clone(),
                token.clone(),
            )
            .instrument(span),
        );
        Ok(Self {
            inner,
            urls,
            runner_url,
            control: Some(control),
            events: Some(rx),
            app_events: tx,
            tap,
            tap_rx: Some(tap_rx),
            waiters,
            token,
            state: Arc::default(),
            restarts: Some(restarts),
            session,
            funding,
            health,
            started,
            request_seq: std::sync::atomic::AtomicU64::new(0),
            stream_stopped: false,
        })
    }

    /// The job's channels as returned by the start.
    pub fn urls(&self) -> &ScopeUrls {
        &self.urls
    }

    /// The job's ID.
    pub fn manifest_id(&self) -> &str {
        &self.urls.manifest_id
    }

    /// The runner (or serverless entry) URL the job runs on.
    pub fn runner_url(&self) -> &str {
        &self.runner_url
    }

    /// The media channels, once the stream started; after a runner restart, the ones the
    /// stream started again with.
    pub fn media(&self) -> Option<MediaChannels> {
        lock(&self.state.media).clone()
    }

    /// Whether the runner restarted and the stream is being started again: its media
    /// channels are gone until a `stream_restarted` event.
    pub fn is_restarting(&self) -> bool {
        let announced = *lock(&self.state.announced);
        self.started.load(std::sync::atomic::Ordering::SeqCst)
            && (lock(&self.tap).is_some() || announced == Some(lock(&self.health).restarts))
    }

    /// Why the stream ended after a runner restart it could not recover from.
    pub fn restart_failure(&self) -> Option<String> {
        lock(&self.state.fault).clone()
    }

    /// The live-runner session behind the job (persistent runners only).
    pub fn runner_session(&self) -> Option<&RunnerSession> {
        self.session.as_ref()
    }

    /// Why payments stopped on their own, if they did (e.g. the session was released).
    pub fn funding_end(&self) -> Option<FundingEnd> {
        self.session
            .as_ref()
            .and_then(RunnerSession::funding_end)
            .or_else(|| self.funding.as_ref().and_then(Funding::end))
    }

    /// Details of why payments stopped, where there are any (a budget's figures).
    pub fn funding_detail(&self) -> Option<String> {
        self.session
            .as_ref()
            .and_then(RunnerSession::funding_detail)
            .or_else(|| self.funding.as_ref().and_then(Funding::end_detail))
    }

    /// The HTTP client for the stream's media channels, under the gateway's TLS policy and
    /// pins (the same pin store as every other request to the orchestrator).
    pub fn channel_client(&self) -> Option<lpgw_trickle::client::HttpClient> {
        let url = crate::discovery::parse_http_url(&self.media()?.output).ok()?;
        self.inner.clients.trickle_for(&url).ok()
    }

    /// A token cancelled when the job ends (closed, events channel gone, or payments
    /// stopped); cancel a child of it to tie other work to the job.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether the job has ended (closed, events channel gone, or payments stopped).
    pub fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the job ends on its own or is closed.
    pub async fn ended(&self) {
        self.token.cancelled().await;
    }

    /// Takes the events stream (every event except keepalives, start answers included).
    /// `None` after the first call.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<Value>> {
        self.events.take()
    }

    /// Sends one control message. Parameter updates are remembered, to be replayed when the
    /// stream starts again after a runner restart.
    pub async fn send_control(&self, msg: &Value) -> Result<(), Error> {
        let c = self.control.as_ref().ok_or(Error::JobClosed)?;
        self.state.note_control(msg);
        rpc::write(c, msg).await
    }

    /// A live parameter update: `{"type":"parameters","params":{...}}`.
    pub async fn update_params(&self, params: &Value) -> Result<(), Error> {
        self.send_control(&json!({"type": "parameters", "params": params}))
            .await
    }

    /// Prepares and starts the stream (`shared/spec/scope-protocol.md`): waits (bounded)
    /// for `runner_ready`, loads the pipelines `params` name (`pipeline_ids`,
    /// `pipeline_id`, `pipeline`, `pipelines` or the graph's nodes; else the configured
    /// defaults) unless they are loaded already, polls their status until `loaded`
    /// (reporting `loading_stage` as `pipeline_loading` events), picks the input mode (the
    /// caller's, its graph's, else the pipeline's default), sends `start_stream` with
    /// `pipeline_ids`, `input_mode` and the caller's graph or the linear one, and waits for
    /// the matching `stream_started`. Every wait is bounded; a failure carries the runner's
    /// own words. A start that already returned media URLs needs none of it.
    pub async fn start_stream(&mut self, params: &Value) -> Result<MediaChannels, Error> {
        let fail = |reason: String| Error::Runner { reason };
        if let (Some(i), Some(o)) = (&self.urls.publish_url, &self.urls.subscribe_url) {
            let m = MediaChannels {
                input: Some(i.clone()),
                output: o.clone(),
                output_audio: None,
                all: Vec::new(),
            };
            *lock(&self.state.media) = Some(m.clone());
            return Ok(m);
        }
        let sc = &self.inner.settings.live.scope;
        let plan =
            plan::StartPlan::from_params(Some(params), &sc.default_pipelines).map_err(|e| {
                Error::ScopeRefused {
                    reason: format!("bad scope parameters: {e}"),
                }
            })?;
        let timeouts = start::Timeouts {
            ready: sc.ready_timeout,
            load: sc.load_timeout,
            poll: sc.poll_interval,
            answer: self.inner.settings.live.stream_start_timeout,
        };
        let mut tap = self
            .tap_rx
            .take()
            .ok_or_else(|| fail("the stream was already started".into()))?;
        let link = self.link();
        let mut m = start::StartMachine::new(
            plan.clone(),
            timeouts,
            &self.urls.manifest_id,
            Instant::now(),
        );
        let outcome = recover::drive(&mut m, &mut tap, &link, &self.token).await;
        // The start is over: events no longer need a second reader.
        *lock(&self.tap) = None;
        if !m.saw_ready() {
            debug!(manifest = %self.urls.manifest_id, "runner never sent runner_ready");
        }
        let base = Url::parse(&self.urls.events_url).map_err(|e| fail(e.to_string()))?;
        let (media, mode) = recover::started_media(outcome, &base)?;
        debug!(manifest = %self.urls.manifest_id, mode = mode.as_str(), "scope stream started");
        *lock(&self.state.mode) = Some(mode);
        *lock(&self.state.media) = Some(media.clone());
        self.started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(restarts) = self.restarts.take() {
            let mut plan = plan;
            plan.mode = Some(mode);
            let recovery = Recovery {
                link,
                plan,
                timeouts,
                manifest: self.urls.manifest_id.clone(),
                base,
                state: self.state.clone(),
                tap: self.tap.clone(),
                restarts,
                max_restarts: sc.max_restarts,
                token: self.token.clone(),
            };
            let span = debug_span!("scope_recovery", manifest = %self.urls.manifest_id);
            tokio::spawn(recovery.run().instrument(span));
        }
        Ok(media)
    }

    /// How a start sequence reaches the runner and the application.
    fn link(&self) -> Link {
        Link {
            control: self.control.as_ref().map_or_else(Weak::new, Arc::downgrade),
            app: self.app_events.clone(),
        }
    }

    /// Sends `stop_stream` and waits (at most [`STOP_ANSWER`]) for its `stream_stopped`, so the runner
    /// stops its pipeline before the caller takes its media down; [`Self::close`] then only
    /// closes the channels and the session. Does nothing before the stream started or a
    /// second time.
    pub async fn stop_stream(&mut self) {
        if lock(&self.state.media).is_none() || self.stream_stopped {
            return;
        }
        self.stream_stopped = true;
        let rid = format!("{}-stop", self.urls.manifest_id);
        let msg = json!({"type": "stop_stream", "request_id": rid});
        let answer = ask(
            &self.waiters,
            &rid,
            STOP_ANSWER,
            &self.token,
            self.send_control(&msg),
        )
        .await;
        if let Err(e) = answer {
            debug!(manifest = %self.urls.manifest_id, error = %e, "stop_stream unanswered");
        }
    }

    /// The input mode the stream runs in, once started.
    pub fn input_mode(&self) -> Option<InputMode> {
        *lock(&self.state.mode)
    }

    /// How the runner is doing: pongs and restarts.
    pub fn health(&self) -> ScopeHealth {
        *self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `msg` with a fresh `request_id` and waits (bounded by
    /// `live.stream_start_timeout`) for the event that answers it, whatever its type.
    pub async fn request(&self, mut msg: Value) -> Result<Value, Error> {
        let n = self
            .request_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rid = format!("{}-req-{n}", self.urls.manifest_id);
        if !msg.is_object() {
            return Err(Error::Config(
                "a control message must be a JSON object".into(),
            ));
        }
        msg["request_id"] = rid.clone().into();
        let wait = self.inner.settings.live.stream_start_timeout;
        let answer = ask(
            &self.waiters,
            &rid,
            wait,
            &self.token,
            self.send_control(&msg),
        )
        .await;
        answer.map_err(|reason| Error::Runner { reason })
    }

    /// A raw `api` call to the runner's own HTTP API (`GET /api/v1/pipeline/status`, ...):
    /// its `api_response`.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Error> {
        let mut msg = json!({"type": "api", "method": method, "path": path});
        if let Some(b) = body {
            msg["body"] = b;
        }
        let answer = self.request(msg).await;
        if method.eq_ignore_ascii_case("POST") && path.trim_end_matches('/') == "/api/v1/restart" {
            // A restarted runner reads its control channel from the most recent segment;
            // left there, the restart request would restart it again. Push it back.
            let ping = json!({"type": "ping", "request_id": format!("{}-after-restart",
                self.urls.manifest_id), "timestamp": 0});
            let _ = self.send_control(&ping).await;
            let accepted = answer
                .as_ref()
                .is_ok_and(|a| a["status"].as_u64().is_some_and(|s| s < 400));
            if accepted {
                self.restart_announced();
            }
        }
        answer
    }

    /// The runner accepted a restart request: its stream is down until it says
    /// `runner_ready`, which it must within `scope.restart_timeout` or the job ends.
    /// The application hears `runner_restarting` at once, so it can wait instead of
    /// taking the silence for a failure.
    fn restart_announced(&self) {
        if !self.started.load(std::sync::atomic::Ordering::SeqCst) {
            // No stream yet: a later `runner_ready` is the start's business.
            return;
        }
        let before = lock(&self.health).restarts;
        *lock(&self.state.announced) = Some(before);
        let _ = self
            .app_events
            .try_send(json!({"type": "runner_restarting"}));
        let (state, health, token) = (self.state.clone(), self.health.clone(), self.token.clone());
        let wait = self.inner.settings.live.scope.restart_timeout;
        let manifest = self.urls.manifest_id.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            if lock(&health).restarts != before {
                return;
            }
            let why = format!(
                "the runner accepted a restart and did not say runner_ready within {} s",
                wait.as_secs_f64()
            );
            warn!(%manifest, reason = %why, "scope stream lost");
            *lock(&state.fault) = Some(why);
            token.cancel();
        });
    }

    /// Ends the job: `stop_stream` (if started), closes the control channel, stops the
    /// events reader and payments, then stops the live-runner session.
    pub async fn close(mut self) {
        if let Some(c) = self.control.take() {
            let work = async {
                if lock(&self.state.media).is_some() && !self.stream_stopped {
                    let _ = c
                        .send(&json!({"type": "stop_stream", "request_id":
                            format!("{}-stop", self.urls.manifest_id)}))
                        .await;
                }
                // The ping task may hold the writer for a moment while it sends.
                self.token.cancel();
                let mut c = c;
                let c = loop {
                    match Arc::try_unwrap(c) {
                        Ok(c) => break c,
                        Err(shared) => {
                            c = shared;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                };
                if let Err(e) = c.close().await {
                    debug!(error = %e, "closing control channel failed");
                }
            };
            if tokio::time::timeout(CLOSE_TIMEOUT, work).await.is_err() {
                debug!("closing control channel timed out");
            }
        }
        self.token.cancel();
        if let Some(mut f) = self.funding.take() {
            f.stop().await;
        }
        if let Some(s) = self.session.take() {
            s.close().await;
        }
    }
}

impl Drop for ScopeJob {
    fn drop(&mut self) {
        // The session's own drop stops it at the orchestrator.
        self.token.cancel();
    }
}
