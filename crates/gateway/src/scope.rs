//! Scope jobs: the job JSON a Scope start returns, and the control/events protocol that
//! creates its media channels (`shared/spec/scope-protocol.md`).
//!
//! The gateway speaks the protocol and exposes the `in`/`out` channel URLs once
//! `stream_started` arrives; moving video through them is the caller's business.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The media channels of a started stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaChannels {
    /// Where the client publishes video (input track 0).
    pub input: String,
    /// Where the client reads processed video (output track 0, not audio).
    pub output: String,
    /// Every announced channel.
    pub all: Vec<ScopeChannel>,
}

impl MediaChannels {
    /// From the `channels` of a `stream_started` event; needs one `in` and one video `out`.
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
            .ok_or("stream_started without an input channel")?
            .url
            .clone();
        let output = all
            .iter()
            .find(|c| {
                c.direction == "out" && !c.is_audio() && c.output_track_index.unwrap_or(0) == 0
            })
            .ok_or("stream_started without a video output channel")?
            .url
            .clone();
        Ok(Self { input, output, all })
    }
}

/// What an event means for a pending `start_stream`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StartAnswer {
    /// `stream_started` for `request_id` (or untagged).
    Started(Option<String>, Value),
    /// `error` for `request_id` (or untagged).
    Failed(Option<String>, String),
    /// Anything else.
    Other,
}

impl StartAnswer {
    pub(crate) fn classify(v: &Value) -> Self {
        let rid = v
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match v.get("type").and_then(Value::as_str) {
            Some("stream_started") => {
                Self::Started(rid, v.get("channels").cloned().unwrap_or(Value::Null))
            }
            Some("error") => {
                let msg = ["message", "error"]
                    .iter()
                    .find_map(|k| match v.get(*k) {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Null) | None => None,
                        Some(other) => Some(other.to_string()),
                    })
                    .unwrap_or_else(|| "unspecified error".into());
                Self::Failed(rid, msg)
            }
            _ => Self::Other,
        }
    }
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, String>>>>>;

/// Hands a start answer to its waiter: by request ID, or to the only waiter when untagged.
fn deliver(waiters: &Waiters, answer: StartAnswer) {
    let (rid, result) = match answer {
        StartAnswer::Started(rid, channels) => (rid, Ok(channels)),
        StartAnswer::Failed(rid, msg) => (rid, Err(msg)),
        StartAnswer::Other => return,
    };
    let mut w = waiters.lock().unwrap_or_else(|p| p.into_inner());
    let key = match rid {
        Some(r) if w.contains_key(&r) => r,
        None if w.len() == 1 => w.keys().next().cloned().unwrap_or_default(),
        _ => return,
    };
    if let Some(tx) = w.remove(&key) {
        let _ = tx.send(result);
    }
}

/// A running Scope job: control writer, events reader, and the live-runner session or
/// payment loop behind it. Dropping it stops the session; [`ScopeJob::close`] does it in
/// order (`stop_stream`, control channel, session).
#[must_use = "dropping a job stops it"]
pub struct ScopeJob {
    inner: Arc<Inner>,
    urls: ScopeUrls,
    runner_url: String,
    control: Option<JsonWriter>,
    events: Option<mpsc::Receiver<Value>>,
    waiters: Waiters,
    token: CancellationToken,
    media: Option<MediaChannels>,
    session: Option<RunnerSession>,
    funding: Option<Funding>,
    request_seq: u64,
}

impl std::fmt::Debug for ScopeJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeJob")
            .field("manifest_id", &self.urls.manifest_id)
            .field("runner", &self.runner_url)
            .finish_non_exhaustive()
    }
}

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
        let mut wcfg = JsonWriterConfig {
            keepalive: Some(inner.settings.keepalive_interval),
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
        let span = debug_span!("scope_job", manifest = %urls.manifest_id);
        let (t, w) = (token.clone(), waiters.clone());
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
                    deliver(&w, StartAnswer::classify(&v));
                    if tx.try_send(v).is_err() && !tx.is_closed() {
                        dropped += 1;
                        debug!(dropped, "event dropped: application is not reading");
                    }
                }
            }
            .instrument(span),
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
        Ok(Self {
            inner,
            urls,
            runner_url,
            control: Some(control),
            events: Some(rx),
            waiters,
            token,
            media: None,
            session,
            funding,
            request_seq: 0,
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
        let url = crate::discovery::parse_http_url(&self.media.as_ref()?.input).ok()?;
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

    /// Sends `start_stream` with `params` and waits (bounded by `live.stream_start_timeout`)
    /// for the matching `stream_started` (→ the media channels) or `error`. A start that
    /// already returned media URLs needs none and answers at once.
    pub async fn start_stream(&mut self, params: &Value) -> Result<MediaChannels, Error> {
        if let (Some(i), Some(o)) = (&self.urls.publish_url, &self.urls.subscribe_url) {
            let m = MediaChannels {
                input: i.clone(),
                output: o.clone(),
                all: Vec::new(),
            };
            self.media = Some(m.clone());
            return Ok(m);
        }
        self.request_seq += 1;
        let rid = format!("{}-start-{}", self.urls.manifest_id, self.request_seq);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rid.clone(), tx);
        let fail = |reason: String| Error::Runner { reason };
        self.send_control(&json!({"type": "start_stream", "request_id": rid, "params": params}))
            .await?;
        let wait = self.inner.settings.live.stream_start_timeout;
        let answer = tokio::select! {
            a = tokio::time::timeout(wait, rx) => a,
            () = self.token.cancelled() => {
                return Err(fail("job ended before stream_started".into()));
            }
        };
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rid);
        let channels = match answer {
            Err(_) => {
                return Err(fail(format!(
                    "no stream_started within {} ms",
                    wait.as_millis()
                )));
            }
            Ok(Err(_)) => return Err(fail("events reader stopped".into())),
            Ok(Ok(Err(msg))) => return Err(fail(format!("runner error: {msg}"))),
            Ok(Ok(Ok(channels))) => channels,
        };
        let base = Url::parse(&self.urls.events_url).map_err(|e| fail(e.to_string()))?;
        let media = MediaChannels::from_event(&channels, &base).map_err(fail)?;
        debug!(manifest = %self.urls.manifest_id, "scope stream started");
        self.media = Some(media.clone());
        Ok(media)
    }

    /// Ends the job: `stop_stream` (if started), closes the control channel, stops the
    /// events reader and payments, then stops the live-runner session.
    pub async fn close(mut self) {
        if let Some(c) = self.control.take() {
            let work = async {
                if self.media.is_some() {
                    let _ = c.send(&json!({"type": "stop_stream"})).await;
                }
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
        assert_eq!(m.input, "https://o:8935/ai/trickle/m-0-in");
        assert_eq!(m.output, "https://o:8935/ai/trickle/m-0-out");
        assert_eq!(m.all.len(), 3);
        assert!(MediaChannels::from_event(&json!([]), &base()).is_err());
        assert!(MediaChannels::from_event(&json!("x"), &base()).is_err());
    }

    #[test]
    fn answers_reach_the_matching_waiter() {
        let waiters: Waiters = Arc::default();
        let (tx_a, mut rx_a) = oneshot::channel();
        let (tx_b, mut rx_b) = oneshot::channel();
        waiters.lock().unwrap().insert("a".into(), tx_a);
        waiters.lock().unwrap().insert("b".into(), tx_b);
        deliver(
            &waiters,
            StartAnswer::classify(&json!({"type":"stream_started","request_id":"zzz"})),
        );
        deliver(
            &waiters,
            StartAnswer::classify(&json!({"type":"error","message":"no"})),
        );
        deliver(&waiters, StartAnswer::classify(&json!({"type":"pong"})));
        assert!(rx_a.try_recv().is_err() && rx_b.try_recv().is_err());
        deliver(
            &waiters,
            StartAnswer::classify(&json!({"type":"error","request_id":"b","error":"boom"})),
        );
        assert_eq!(rx_b.try_recv().unwrap(), Err("boom".into()));
        // Untagged answers go to the only waiter left.
        deliver(
            &waiters,
            StartAnswer::classify(&json!({"type":"stream_started","channels":[]})),
        );
        assert_eq!(rx_a.try_recv().unwrap(), Ok(json!([])));
    }
}
