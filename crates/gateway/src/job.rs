//! A running LV2V job: its channel URLs and the tasks that keep it alive.
//!
//! Every task hangs off one [`CancellationToken`]: the payment loop (one payment per output
//! segment, at most every `payment_interval`), the control keepalive, and the events reader.
//! Cancelling the token — by [`Lv2vJob::close`], by dropping the job, or because the
//! orchestrator dropped the session — stops payments, closes the control channel and deletes
//! the publish channel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lpgw_proto::OrchestratorInfo;
use lpgw_trickle::TrickleError;
use lpgw_trickle::client::{HttpClient, Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, debug_span, warn};

use crate::discovery::parse_http_url;
use crate::error::Error;
use crate::gateway::Inner;
use crate::payment::PaymentStats;
use crate::payment::driver::Payer;
use crate::payment::state::StopReason;

/// The channels of a started job, as the orchestrator returned them. These URLs are bearer
/// capabilities: do not log them.
#[derive(Clone, PartialEq, Eq)]
pub struct JobUrls {
    /// The orchestrator's ID for the job (8 hex chars).
    pub manifest_id: String,
    /// Where the gateway publishes input media (`<mid>`).
    pub publish_url: String,
    /// Where the gateway reads output media (`<mid>-out`).
    pub subscribe_url: String,
    /// Where the gateway writes control messages (`<mid>-control`).
    pub control_url: String,
    /// Where the runner publishes events (`<mid>-events`), if provided.
    pub events_url: Option<String>,
}

impl std::fmt::Debug for JobUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobUrls")
            .field("manifest_id", &self.manifest_id)
            .finish_non_exhaustive()
    }
}

/// Why a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The job was closed or dropped by its owner.
    Closed,
    /// The orchestrator no longer knows the session (control channel or payment endpoint
    /// answered 404).
    SessionGone,
    /// The remote signer refused to pay the orchestrator's price (481), or the orchestrator
    /// raised it above the ceiling.
    PriceExceeded,
    /// A budget the job draws on ran out; the payment was not sent.
    BudgetExhausted,
    /// The signer answered 482 (no tickets) cycle after cycle: payments are wedged.
    PaymentsWedged,
}

/// Why a job ended, and the details where there are any.
type Ending = (EndReason, Option<String>);

/// Records the first reason the job ended (and its details), then cancels it.
#[derive(Debug, Clone)]
struct Ender {
    token: CancellationToken,
    reason: Arc<Mutex<Option<Ending>>>,
}

impl Ender {
    fn end(&self, reason: EndReason) {
        self.end_with(reason, None);
    }

    fn end_with(&self, reason: EndReason, detail: Option<String>) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert((reason, detail));
        self.token.cancel();
    }
}

/// Bounded queue of control messages waiting for the control channel.
const CONTROL_QUEUE: usize = 16;
/// Bounded queue of events waiting for the application; newer events are dropped when full.
const EVENTS_QUEUE: usize = 64;
/// Largest event document accepted.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// How long cleanup (control close, publish DELETE) may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running LV2V job. Dropping it cancels the job (cleanup then runs in the background);
/// [`Lv2vJob::close`] cancels it and waits for cleanup.
#[must_use = "dropping a job stops it"]
pub struct Lv2vJob {
    inner: Arc<Inner>,
    urls: JobUrls,
    orchestrator_url: String,
    info: OrchestratorInfo,
    token: CancellationToken,
    ender: Ender,
    tracker: TaskTracker,
    control: mpsc::Sender<Bytes>,
    events: Option<mpsc::Receiver<Value>>,
    payments: Arc<Mutex<PaymentStats>>,
    _guard: DropGuard,
}

impl std::fmt::Debug for Lv2vJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lv2vJob")
            .field("manifest_id", &self.urls.manifest_id)
            .field("orchestrator", &self.orchestrator_url)
            .finish_non_exhaustive()
    }
}

impl Lv2vJob {
    pub(crate) fn spawn(
        inner: Arc<Inner>,
        orchestrator_url: String,
        info: OrchestratorInfo,
        urls: JobUrls,
        session: Option<Payer>,
    ) -> Self {
        let token = CancellationToken::new();
        let ender = Ender {
            token: token.clone(),
            reason: Arc::default(),
        };
        let tracker = TaskTracker::new();
        // Channels use the gateway's TLS policy: with trust on first use, the certificate
        // GetOrchestrator pinned for the host must be the one the channels present.
        let channel_client = |url: &str| -> Option<HttpClient> {
            let parsed = parse_http_url(url).ok()?;
            inner
                .clients
                .trickle_for(&parsed)
                .inspect_err(|e| warn!(error = %e, "no trickle client for the job's channels"))
                .ok()
        };
        let span = debug_span!("lv2v_job", manifest = %urls.manifest_id);
        let payments = Arc::new(Mutex::new(
            session.as_ref().map(|s| s.stats()).unwrap_or_default(),
        ));

        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        tracker.spawn(
            control_task(
                urls.control_url.clone(),
                channel_client(&urls.control_url),
                inner.settings.keepalive_interval,
                control_rx,
                ender.clone(),
            )
            .instrument(span.clone()),
        );
        tracker.spawn(
            cleanup_task(inner.clone(), urls.publish_url.clone(), token.clone())
                .instrument(span.clone()),
        );
        let (events_tx, events_rx) = mpsc::channel(EVENTS_QUEUE);
        match &urls.events_url {
            Some(url) => {
                tracker.spawn(
                    events_task(url.clone(), channel_client(url), events_tx, token.clone())
                        .instrument(span.clone()),
                );
            }
            None => drop(events_tx),
        }
        if let Some(session) = session {
            tracker.spawn(
                payment_task(
                    urls.subscribe_url.clone(),
                    channel_client(&urls.subscribe_url),
                    session,
                    payments.clone(),
                    ender.clone(),
                )
                .instrument(span),
            );
        }
        tracker.close();
        let guard = token.clone().drop_guard();
        Self {
            inner,
            urls,
            orchestrator_url,
            info,
            token,
            ender,
            tracker,
            control: control_tx,
            events: Some(events_rx),
            payments,
            _guard: guard,
        }
    }

    /// The job's channel URLs and manifest ID.
    pub fn urls(&self) -> &JobUrls {
        &self.urls
    }

    /// The orchestrator's ID for the job.
    pub fn manifest_id(&self) -> &str {
        &self.urls.manifest_id
    }

    /// The orchestrator URL the job runs on (as configured or discovered).
    pub fn orchestrator_url(&self) -> &str {
        &self.orchestrator_url
    }

    /// The orchestrator info the job was started with.
    pub fn orchestrator_info(&self) -> &OrchestratorInfo {
        &self.info
    }

    /// Payment counters so far (all zero offchain).
    pub fn payment_stats(&self) -> PaymentStats {
        *self.payments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token cancelled when the job ends; cancel a child of it to tie other work
    /// (media publishing, output reading) to the job.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether the job has ended (closed, or dropped by the orchestrator).
    pub fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why the job ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        if !self.token.is_cancelled() {
            return None;
        }
        let reason = self
            .ender
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.0);
        Some(reason.unwrap_or(EndReason::Closed))
    }

    /// Details of why the job ended, where there are any (a budget's figures).
    pub fn end_detail(&self) -> Option<String> {
        self.ender
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|r| r.1.clone())
    }

    /// The HTTP client for the job's trickle channels, under the gateway's TLS policy and
    /// pins: with trust on first use, the channels must present the certificate
    /// GetOrchestrator pinned for their host. Media must use it too.
    pub fn channel_client(&self) -> Option<HttpClient> {
        let parsed = parse_http_url(&self.urls.publish_url).ok()?;
        self.inner.clients.trickle_for(&parsed).ok()
    }

    /// Waits until the job ends (closed, or dropped by the orchestrator).
    pub async fn ended(&self) {
        self.token.cancelled().await;
    }

    /// Sends one control message (a JSON document, e.g. new pipeline parameters).
    pub async fn send_control(&self, msg: &Value) -> Result<(), Error> {
        let bytes = Bytes::from(msg.to_string());
        self.control.send(bytes).await.map_err(|_| Error::JobClosed)
    }

    /// Takes the events stream: one JSON document per events segment, from the live edge.
    /// Returns `None` after the first call. When the application reads too slowly, newer
    /// events are dropped rather than queued without bound.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<Value>> {
        self.events.take()
    }

    /// Stops the job: cancels payments, closes the control channel, deletes the publish
    /// channel, and waits (bounded) for all of it.
    pub async fn close(self) {
        self.ender.end(EndReason::Closed);
        if tokio::time::timeout(CLEANUP_TIMEOUT * 2, self.tracker.wait())
            .await
            .is_err()
        {
            warn!("job tasks did not finish in time");
        }
    }
}

/// Writes queued control messages and a `{"keep":"alive"}` every `keepalive`; closes the
/// channel when the job ends. A missing channel means the orchestrator dropped the job.
async fn control_task(
    url: String,
    http: Option<HttpClient>,
    keepalive: Duration,
    mut rx: mpsc::Receiver<Bytes>,
    ender: Ender,
) {
    let token = ender.token.clone();
    let config = PublisherConfig {
        http,
        ..PublisherConfig::default()
    };
    let mut publisher = match Publisher::new(&url, "application/json", config) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "control channel unusable");
            return;
        }
    };
    let start = tokio::time::Instant::now() + keepalive;
    let mut tick = tokio::time::interval_at(start, keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            () = token.cancelled() => break,
            m = rx.recv() => match m {
                Some(m) => m,
                None => {
                    // The job handle is gone; keep the keepalive until cancellation.
                    token.cancelled().await;
                    break;
                }
            },
            _ = tick.tick() => Bytes::from_static(br#"{"keep":"alive"}"#),
        };
        let written = tokio::select! {
            () = token.cancelled() => break,
            r = publisher.write_segment(msg) => r,
        };
        match written {
            Ok(seq) => debug!(seq, "control message written"),
            Err(TrickleError::StreamNotFound) => {
                warn!("control channel is gone; stopping the job");
                ender.end(EndReason::SessionGone);
                break;
            }
            Err(e) => warn!(error = %e, "control write failed"),
        }
    }
    match tokio::time::timeout(CLEANUP_TIMEOUT, publisher.close()).await {
        Ok(Ok(())) | Ok(Err(TrickleError::StreamNotFound)) => debug!("control channel closed"),
        Ok(Err(e)) => debug!(error = %e, "closing control channel failed"),
        Err(_) => debug!("closing control channel timed out"),
    }
}

/// Deletes the publish channel once the job is cancelled, which tells the orchestrator to
/// tear the job down (spec §2.3).
async fn cleanup_task(inner: Arc<Inner>, publish_url: String, token: CancellationToken) {
    token.cancelled().await;
    let Ok(url) = parse_http_url(&publish_url) else {
        return;
    };
    let Ok(client) = inner.clients.for_url(&url) else {
        return;
    };
    match client.delete(url).timeout(CLEANUP_TIMEOUT).send().await {
        Ok(r) => debug!(status = r.status().as_u16(), "publish channel deleted"),
        // The URL is a bearer capability: keep it out of logs.
        Err(e) => debug!(error = %e.without_url(), "deleting publish channel failed"),
    }
}

/// Reads events from the live edge and hands them to the application.
async fn events_task(
    url: String,
    http: Option<HttpClient>,
    tx: mpsc::Sender<Value>,
    token: CancellationToken,
) {
    let config = SubscriberConfig {
        http,
        ..SubscriberConfig::default()
    };
    let mut sub = match Subscriber::new(&url, config) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "events channel unusable");
            return;
        }
    };
    let mut dropped = 0u64;
    loop {
        let seg = tokio::select! {
            () = token.cancelled() => return,
            s = sub.next_segment() => s,
        };
        let reader = match seg {
            Ok(Some(r)) => r,
            Ok(None) => {
                debug!("events channel ended");
                return;
            }
            Err(e) => {
                warn!(error = %e, "events channel failed");
                return;
            }
        };
        let body = tokio::select! {
            () = token.cancelled() => return,
            b = reader.read_all(MAX_EVENT_BYTES) => b,
        };
        let Ok(body) = body else { continue };
        match serde_json::from_slice::<Value>(&body) {
            Ok(event) => {
                if tx.try_send(event).is_err() {
                    if tx.is_closed() {
                        return;
                    }
                    dropped += 1;
                    debug!(dropped, "event dropped: application is not reading");
                }
            }
            Err(e) => debug!(error = %e, "ignoring non-JSON event"),
        }
    }
}

/// Pays once per output segment (at most every interval) until the job ends or payments
/// must stop; a stop the orchestrator or signer forces ends the job.
async fn payment_task(
    subscribe_url: String,
    http: Option<HttpClient>,
    mut session: Payer,
    stats: Arc<Mutex<PaymentStats>>,
    ender: Ender,
) {
    let token = ender.token.clone();
    let config = SubscriberConfig {
        http,
        ..SubscriberConfig::default()
    };
    let mut sub = match Subscriber::new(&subscribe_url, config) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "output channel unusable; no periodic payments");
            return;
        }
    };
    loop {
        let seg = tokio::select! {
            () = token.cancelled() => return,
            s = sub.next_segment() => s,
        };
        match seg {
            // Only the segment's arrival matters; dropping the reader skips its body.
            Ok(Some(reader)) => drop(reader),
            Ok(None) => {
                debug!("output channel ended; payments stop");
                return;
            }
            Err(e) => {
                warn!(error = %e, "output channel failed; payments stop");
                return;
            }
        }
        let stop = tokio::select! {
            () = token.cancelled() => return,
            s = session.pay_due() => s,
        };
        *stats.lock().unwrap_or_else(|p| p.into_inner()) = session.stats();
        if let Some(reason) = stop {
            warn!(?reason, "payments over; stopping the job");
            match reason {
                StopReason::PriceExceeded => ender.end(EndReason::PriceExceeded),
                StopReason::BudgetExhausted => ender.end_with(
                    EndReason::BudgetExhausted,
                    session.exhausted().map(ToString::to_string),
                ),
                StopReason::Wedged => ender.end(EndReason::PaymentsWedged),
                StopReason::SessionGone | StopReason::Refused => {
                    ender.end(EndReason::SessionGone);
                }
                // A fixed-price session needs no more payments; the job goes on.
                StopReason::Settled | StopReason::InitialFailed(_) => {}
            }
            return;
        }
    }
}
