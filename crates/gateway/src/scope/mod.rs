//! Scope jobs: the job JSON a Scope start returns, and the control/events protocol that
//! loads pipelines and creates the media channels (`shared/spec/scope-protocol.md`).
//!
//! The gateway speaks the whole protocol — the start sequence ([`start`]), `ping`
//! keepalives, requests correlated by `request_id` — and exposes the channels by role
//! once `stream_started` arrives; moving video through them is the caller's business.

mod plan;
mod start;

pub use plan::{InputMode, PipelineSpec};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lpgw_trickle::json::{
    JsonReader, JsonReaderConfig, JsonWriter, JsonWriterConfig, is_keepalive,
};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, debug_span, warn};
use url::Url;

use crate::error::{Error, RejectReason};
use crate::gateway::Inner;
use crate::runner::{Funding, FundingEnd, RunnerSession};

/// Bounded queue of events for the application; newer events are dropped when full.
const EVENTS_QUEUE: usize = 64;
/// How long closing may spend on `stop_stream` and the control channel.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The channels a Scope start returned. These URLs are bearer capabilities: do not log them.
#[derive(Clone, PartialEq, Eq)]
pub struct ScopeUrls {
    /// The job's ID.
    pub manifest_id: String,
    /// Control channel (client → runner).
    pub control_url: String,
    /// Events channel (runner → client).
    pub events_url: String,
    /// Media input, when the start already returned one (LV2V-style apps).
    pub publish_url: Option<String>,
    /// Media output, when the start already returned one.
    pub subscribe_url: Option<String>,
}

impl std::fmt::Debug for ScopeUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeUrls")
            .field("manifest_id", &self.manifest_id)
            .finish_non_exhaustive()
    }
}

impl ScopeUrls {
    /// Reads a Scope job answer: `manifest_id`, `control_url`, `events_url` required;
    /// empty `publish_url`/`subscribe_url` mean "created later". Relative URLs resolve
    /// against `base`.
    pub(crate) fn from_json(v: &Value, base: &Url) -> Result<Self, String> {
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let url = |k: &str| -> Result<Option<String>, String> {
            let Some(s) = field(k) else { return Ok(None) };
            let u = base.join(&s).map_err(|e| format!("bad {k}: {e}"))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(format!("bad {k}: not http(s)"));
            }
            Ok(Some(u.into()))
        };
        let need = |k: &str| url(k)?.ok_or_else(|| format!("scope answer missing {k}"));
        Ok(Self {
            manifest_id: field("manifest_id").ok_or("scope answer missing manifest_id")?,
            control_url: need("control_url")?,
            events_url: need("events_url")?,
            publish_url: url("publish_url")?,
            subscribe_url: url("subscribe_url")?,
        })
    }
}

/// One media channel announced by `stream_started`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScopeChannel {
    /// Trickle URL.
    pub url: String,
    /// `in` (the client publishes) or `out` (the client subscribes).
    pub direction: String,
    /// MIME type, e.g. `video/MP2T`.
    pub mime_type: String,
    /// Optional role, e.g. `output_audio`.
    pub role: Option<String>,
    /// Optional media kind of an output (`video`, `audio`).
    pub output_media_kind: Option<String>,
    /// Track index of an input.
    pub input_track_index: Option<u64>,
    /// Track index of an output.
    pub output_track_index: Option<u64>,
}

impl std::fmt::Debug for ScopeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeChannel")
            .field("direction", &self.direction)
            .field("mime_type", &self.mime_type)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl ScopeChannel {
    fn is_audio(&self) -> bool {
        self.role.as_deref() == Some("output_audio")
            || self.output_media_kind.as_deref() == Some("audio")
    }
}

/// The media channels of a started stream, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaChannels {
    /// Where the client publishes video (input track 0); `None` in text mode, where the
    /// stream takes no input.
    pub input: Option<String>,
    /// Where the client reads processed video (output track 0, not audio).
    pub output: String,
    /// Where the runner's audio comes out (`output_audio`), when it makes any.
    pub output_audio: Option<String>,
    /// Every announced channel, other output tracks included.
    pub all: Vec<ScopeChannel>,
}

impl MediaChannels {
    /// The video output tracks, by track index.
    pub fn video_outputs(&self) -> Vec<&ScopeChannel> {
        let mut v: Vec<&ScopeChannel> = self
            .all
            .iter()
            .filter(|c| c.direction == "out" && !c.is_audio())
            .collect();
        v.sort_by_key(|c| c.output_track_index.unwrap_or(0));
        v
    }

    /// From the `channels` of a `stream_started` event: the `in` track 0 (when there is
    /// one), the video `out` track 0 (required) and the audio output.
    pub(crate) fn from_event(channels: &Value, base: &Url) -> Result<Self, String> {
        let list = channels
            .as_array()
            .ok_or("stream_started without channels")?;
        let mut all = Vec::new();
        for c in list.iter().take(64) {
            let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(url), Some(direction)) = (s("url"), s("direction")) else {
                continue;
            };
            let Ok(url) = base.join(&url) else { continue };
            all.push(ScopeChannel {
                url: url.into(),
                direction,
                mime_type: s("mime_type").unwrap_or_default(),
                role: s("role"),
                output_media_kind: s("output_media_kind"),
                input_track_index: c.get("input_track_index").and_then(Value::as_u64),
                output_track_index: c.get("output_track_index").and_then(Value::as_u64),
            });
        }
        let input = all
            .iter()
            .find(|c| c.direction == "in" && c.input_track_index.unwrap_or(0) == 0)
            .map(|c| c.url.clone());
        let output = all
            .iter()
            .find(|c| {
                c.direction == "out" && !c.is_audio() && c.output_track_index.unwrap_or(0) == 0
            })
            .ok_or("stream_started without a video output channel")?
            .url
            .clone();
        let output_audio = all
            .iter()
            .find(|c| c.direction == "out" && c.is_audio())
            .map(|c| c.url.clone());
        Ok(Self {
            input,
            output,
            output_audio,
            all,
        })
    }
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// Hands an event to the request waiting for it, matched by `request_id` only: an event
/// without one (an uncorrelated `error`) never completes a request.
fn deliver(waiters: &Waiters, ev: &Value) {
    let Some(rid) = ev.get("request_id").and_then(Value::as_str) else {
        return;
    };
    let tx = waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(rid);
    if let Some(tx) = tx {
        let _ = tx.send(ev.clone());
    }
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
    media: Option<MediaChannels>,
    mode: Option<InputMode>,
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
                    let mut restarted = false;
                    if v["type"] == "runner_ready" && started {
                        // The runner's process started again: its pipelines and the stream
                        // are gone.
                        warn!("scope runner restarted under a running stream");
                        h.lock().unwrap_or_else(|p| p.into_inner()).restarts += 1;
                        restarted = true;
                    }
                    if v["type"] == "error"
                        && !started
                        && v.get("request_id").is_none_or(Value::is_null)
                    {
                        // Seen by the start sequence, which names it if the start fails;
                        // not a fault of the stream that follows.
                        v["during_start"] = true.into();
                    }
                    deliver(&w, &v);
                    if let Some(tap) = tp.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                        let _ = tap.try_send(v.clone());
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
            media: None,
            mode: None,
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

    /// The media channels, once the stream started.
    pub fn media(&self) -> Option<&MediaChannels> {
        self.media.as_ref()
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
        let url = crate::discovery::parse_http_url(&self.media.as_ref()?.output).ok()?;
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

    /// Sends one control message.
    pub async fn send_control(&self, msg: &Value) -> Result<(), Error> {
        let c = self.control.as_ref().ok_or(Error::JobClosed)?;
        c.send(msg).await.map_err(|e| Error::Runner {
            reason: format!("control channel: {e}"),
        })
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
            self.media = Some(m.clone());
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
        let mut m =
            start::StartMachine::new(plan, timeouts, &self.urls.manifest_id, Instant::now());
        let outcome = loop {
            while let Some(step) = m.poll_step() {
                match step {
                    start::Step::Send(v) => self.send_control(&v).await?,
                    start::Step::Progress(v) => {
                        let _ = self.app_events.try_send(v);
                    }
                }
            }
            if let Some(o) = m.outcome() {
                break o;
            }
            let Some(due) = m.poll_timeout() else {
                break start::Outcome::Failed("start sequence stalled".into());
            };
            tokio::select! {
                ev = tap.recv() => match ev {
                    Some(v) => m.handle_event(Instant::now(), &v),
                    None => break start::Outcome::Failed("events reader stopped".into()),
                },
                () = tokio::time::sleep_until(due.into()) => m.handle_timeout(Instant::now()),
                () = self.token.cancelled() => {
                    break start::Outcome::Failed("job ended before the stream started".into());
                }
            }
        };
        // The start is over: events no longer need a second reader.
        *self.tap.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if !m.saw_ready() {
            debug!(manifest = %self.urls.manifest_id, "runner never sent runner_ready");
        }
        let (channels, mode) = match outcome {
            start::Outcome::Started(c, mode) => (c, mode),
            start::Outcome::Failed(why) => return Err(fail(why)),
            start::Outcome::Refused(reason) => return Err(Error::ScopeRefused { reason }),
        };
        let base = Url::parse(&self.urls.events_url).map_err(|e| fail(e.to_string()))?;
        let media = MediaChannels::from_event(&channels, &base).map_err(fail)?;
        if mode == InputMode::Video && media.input.is_none() {
            return Err(fail(
                "stream_started without an input channel in video mode".into(),
            ));
        }
        debug!(manifest = %self.urls.manifest_id, mode = mode.as_str(), "scope stream started");
        self.started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.mode = Some(mode);
        self.media = Some(media.clone());
        Ok(media)
    }

    /// Sends `stop_stream` and waits (at most 2 s) for its `stream_stopped`, so the runner
    /// stops its pipeline before the caller takes its media down; [`Self::close`] then only
    /// closes the channels and the session. Does nothing before the stream started or a
    /// second time.
    pub async fn stop_stream(&mut self) {
        if self.media.is_none() || self.stream_stopped {
            return;
        }
        self.stream_stopped = true;
        let rid = format!("{}-stop", self.urls.manifest_id);
        let msg = json!({"type": "stop_stream", "request_id": rid});
        let answer = ask(
            &self.waiters,
            &rid,
            Duration::from_secs(2),
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
        self.mode
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
        }
        answer
    }

    /// Ends the job: `stop_stream` (if started), closes the control channel, stops the
    /// events reader and payments, then stops the live-runner session.
    pub async fn close(mut self) {
        if let Some(c) = self.control.take() {
            let work = async {
                if self.media.is_some() && !self.stream_stopped {
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

/// Registers a waiter for `rid`, runs `send`, and waits (bounded by `wait`) for the answer.
async fn ask(
    waiters: &Waiters,
    rid: &str,
    wait: Duration,
    token: &CancellationToken,
    send: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<Value, String> {
    let (tx, rx) = oneshot::channel();
    waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(rid.to_owned(), tx);
    let result = async {
        send.await.map_err(|e| e.to_string())?;
        tokio::select! {
            a = tokio::time::timeout(wait, rx) => match a {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(_)) => Err("events reader stopped".to_owned()),
                Err(_) => Err(format!("no answer within {} ms", wait.as_millis())),
            },
            () = token.cancelled() => Err("job ended".to_owned()),
        }
    }
    .await;
    waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(rid);
    result
}

/// Sends a `ping` (with `request_id` and `timestamp`) every `ping_interval` and records the
/// `pong` round trip; pings in a row without a `pong` count as missed, and past
/// `max_missed_pongs` the runner is logged as unresponsive.
async fn ping_task(
    control: std::sync::Weak<JsonWriter>,
    waiters: Waiters,
    health: Arc<Mutex<ScopeHealth>>,
    settings: crate::config::ScopeSettings,
    manifest: String,
    token: CancellationToken,
) {
    let period = settings.ping_interval.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let rid = format!("{manifest}-ping-{n}");
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let sent = Instant::now();
        let msg = json!({"type": "ping", "request_id": rid, "timestamp": ts});
        let send = async {
            let c = control.upgrade().ok_or(Error::JobClosed)?;
            c.send(&msg).await.map_err(|e| Error::Runner {
                reason: format!("control channel: {e}"),
            })
        };
        let answer = ask(&waiters, &rid, period, &token, send).await;
        if token.is_cancelled() {
            return;
        }
        let mut h = health.lock().unwrap_or_else(|p| p.into_inner());
        match answer {
            Ok(_) => {
                h.last_pong = Some(sent.elapsed());
                h.missed_pongs = 0;
            }
            Err(e) => {
                h.missed_pongs += 1;
                if h.missed_pongs == settings.max_missed_pongs {
                    warn!(missed = h.missed_pongs, error = %e, "scope runner does not answer pings");
                }
            }
        }
    }
}

impl Drop for ScopeJob {
    fn drop(&mut self) {
        // The session's own drop stops it at the orchestrator.
        self.token.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://o:8935/apps/r/session/s/app").unwrap()
    }

    #[test]
    fn job_json_needs_control_and_events() {
        let v = json!({"manifest_id":"m1","control_url":"/ai/trickle/m1-control",
            "events_url":"https://o:8935/ai/trickle/m1-events","publish_url":"","subscribe_url":""});
        let u = ScopeUrls::from_json(&v, &base()).unwrap();
        assert_eq!(u.control_url, "https://o:8935/ai/trickle/m1-control");
        assert_eq!(u.publish_url, None);
        assert!(ScopeUrls::from_json(&json!({"manifest_id":"m"}), &base()).is_err());
        assert!(
            ScopeUrls::from_json(&json!({"control_url":"/c","events_url":"/e"}), &base()).is_err()
        );
    }

    #[test]
    fn stream_started_gives_in_and_video_out() {
        let ch = json!([
            {"url":"/ai/trickle/m-0-out-audio","direction":"out","mime_type":"audio/MP2T","role":"output_audio"},
            {"url":"/ai/trickle/m-0-out","direction":"out","mime_type":"video/MP2T"},
            {"url":"/ai/trickle/m-0-in","direction":"in","mime_type":"video/MP2T"},
            {"direction":"in"}
        ]);
        let m = MediaChannels::from_event(&ch, &base()).unwrap();
        assert_eq!(m.input.as_deref(), Some("https://o:8935/ai/trickle/m-0-in"));
        assert_eq!(
            m.output_audio.as_deref(),
            Some("https://o:8935/ai/trickle/m-0-out-audio")
        );
        assert_eq!(m.output, "https://o:8935/ai/trickle/m-0-out");
        assert_eq!(m.all.len(), 3);
        assert!(MediaChannels::from_event(&json!([]), &base()).is_err());
        // Text mode: an output and no input.
        let text = MediaChannels::from_event(
            &json!([{"url":"/o","direction":"out","role":"output","output_track_index":0}]),
            &base(),
        )
        .unwrap();
        assert_eq!(text.input, None);
        assert!(MediaChannels::from_event(&json!("x"), &base()).is_err());
    }

    #[test]
    fn answers_reach_only_the_request_they_name() {
        let waiters: Waiters = Arc::default();
        let (tx_a, mut rx_a) = oneshot::channel();
        waiters.lock().unwrap().insert("a".into(), tx_a);
        for other in [
            json!({"type":"stream_started","request_id":"zzz"}),
            json!({"type":"error","request_id":null,"error":"Unknown message type: None"}),
            json!({"type":"error","error":"no"}),
            json!({"type":"stream_started","channels":[]}),
            json!({"type":"api_response","request_id":7}),
        ] {
            deliver(&waiters, &other);
        }
        assert!(
            rx_a.try_recv().is_err(),
            "an event for nobody completed a request"
        );
        let answer = json!({"type":"api_response","request_id":"a","status":200});
        deliver(&waiters, &answer);
        assert_eq!(rx_a.try_recv().unwrap(), answer);
        assert!(waiters.lock().unwrap().is_empty());
    }
}
