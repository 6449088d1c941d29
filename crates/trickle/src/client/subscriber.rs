//! The trickle subscriber: one `GET {channel}/{seq}` per segment, following the live edge.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;
use tracing::{debug, trace, warn};

use super::{HttpClient, channel_name, channel_url, http_client, is_closed};
use crate::error::TrickleError;
use crate::follow::{Action, FollowConfig, Follower, Outcome, StopReason};
use crate::wire::{HEADER_LATEST, HEADER_SEQ, STATUS_SEQ_NOT_FOUND, SeqRequest, parse_seq_header};

/// Tuning of a [`Subscriber`].
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// Where to start: [`SeqRequest::Next`] (default; the next segment to be written),
    /// [`SeqRequest::Current`] (the newest segment) or an explicit sequence.
    pub start: SeqRequest,
    /// Retry and edge-following tuning. Default: see [`FollowConfig`].
    pub follow: FollowConfig,
    /// A request that has not received response headers within this time is cancelled and
    /// reissued for the same segment. Default 20 s (trickle_subscriber.go:57).
    pub preconnect_timeout: Duration,
    /// Largest segment accepted, in bytes. A bigger segment fails with
    /// [`TrickleError::SegmentTooLarge`] from [`SegmentReader::chunk`] once the limit is
    /// crossed (its remaining bytes are discarded) and the subscriber moves on to the next
    /// segment. `None` disables the limit. Default 64 MiB.
    pub max_segment_bytes: Option<u64>,
    /// Accept any TLS certificate. Default `false` (trickle_subscriber.go verifies unless
    /// told otherwise); orchestrators often serve self-signed certificates. Ignored when
    /// [`http`](Self::http) is set.
    pub insecure_tls: bool,
    /// A preconfigured HTTP client (TLS policy such as certificate pinning, shared
    /// connections). Default `None`: a client of its own, per `insecure_tls`.
    pub http: Option<HttpClient>,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            start: SeqRequest::Next,
            follow: FollowConfig::default(),
            preconnect_timeout: Duration::from_secs(20),
            max_segment_bytes: Some(64 << 20),
            insecure_tls: false,
            http: None,
        }
    }
}

/// Subscriber counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Segments whose headers arrived.
    pub segments: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Requests repeated after failures (including 470s).
    pub retries: u64,
    /// Moves to the live edge after a 470.
    pub jumps: u64,
    /// Requests reissued because their headers did not arrive in time.
    pub reissues: u64,
    /// Segments cut off at the byte limit.
    pub oversized: u64,
    /// Segments whose body failed mid-way.
    pub body_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    segments: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
    jumps: AtomicU64,
    reissues: AtomicU64,
    oversized: AtomicU64,
    body_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SubscriberStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SubscriberStats {
            segments: g(&self.segments),
            bytes: g(&self.bytes),
            retries: g(&self.retries),
            jumps: g(&self.jumps),
            reissues: g(&self.reissues),
            oversized: g(&self.oversized),
            body_errors: g(&self.body_errors),
        }
    }
}

/// A cheap, cloneable view of a subscriber's counters, readable from any task.
#[derive(Clone, Debug)]
pub struct SubscriberStatsHandle(Arc<Counters>);

impl SubscriberStatsHandle {
    /// The counters now.
    pub fn get(&self) -> SubscriberStats {
        self.0.snapshot()
    }
}

type GetResult = Result<reqwest::Response, reqwest::Error>;

/// An outstanding GET, possibly opened before it was needed.
#[derive(Debug)]
struct PendingGet {
    req: SeqRequest,
    task: JoinHandle<GetResult>,
}

/// Reads segments of one trickle channel in order, following the live edge.
///
/// As soon as a segment's headers arrive, the GET for the following segment is opened, so the
/// server can stream it the moment it starts. When the requested segment has fallen out of the
/// server's window (470), the subscriber moves to the live edge. The stream ends (`None`) when
/// the channel is closed or deleted.
#[derive(Debug)]
pub struct Subscriber {
    client: reqwest::Client,
    url: String,
    name: String,
    config: SubscriberConfig,
    follower: Follower,
    pending: Option<PendingGet>,
    last_error: Option<TrickleError>,
    counters: Arc<Counters>,
}

impl Subscriber {
    /// A subscriber of the channel at `url`. Does no I/O until the first
    /// [`next_segment`](Self::next_segment).
    pub fn new(url: &str, config: SubscriberConfig) -> Result<Self, TrickleError> {
        let url = channel_url(url)?;
        Ok(Self {
            client: http_client(config.http.as_ref(), config.insecure_tls)?,
            name: channel_name(&url),
            url,
            follower: Follower::new(config.start, config.follow.clone()),
            config,
            pending: None,
            last_error: None,
            counters: Arc::default(),
        })
    }

    /// Counters now.
    pub fn stats(&self) -> SubscriberStats {
        self.counters.snapshot()
    }

    /// A handle to read the counters while the subscriber is busy elsewhere.
    pub fn stats_handle(&self) -> SubscriberStatsHandle {
        SubscriberStatsHandle(self.counters.clone())
    }

    /// Moves the next read to `seq` (drops any preconnected request for another segment).
    pub fn set_seq(&mut self, seq: SeqRequest) {
        self.follower.set_next(seq);
    }

    /// Waits for the next segment's headers.
    ///
    /// Returns `Ok(None)` once the channel is closed or does not exist; an error only when
    /// the retry budget is spent. Cancel safe: dropping the future keeps the outstanding
    /// request for the next call.
    pub async fn next_segment(&mut self) -> Result<Option<SegmentReader>, TrickleError> {
        loop {
            let req = match self.follower.poll_action(clock_now()) {
                Action::Stop(reason) => return self.stopped(reason),
                Action::Wait(t) => {
                    tokio::time::sleep_until(t.into()).await;
                    continue;
                }
                Action::Get(req) => req,
            };
            if self.pending.as_ref().is_none_or(|p| p.req != req) {
                let fresh = self.spawn_get(req);
                if let Some(old) = self.pending.replace(fresh) {
                    old.task.abort();
                }
            }
            let Some(pending) = self.pending.as_mut() else {
                continue; // just stored above
            };
            // Awaited in place: if this future is dropped, the request stays pending and the
            // next call picks it up (cancel safety).
            let result = (&mut pending.task).await.map_err(|_| TrickleError::Closed);
            self.pending = None;
            let now = clock_now();
            let (outcome, reader) = match result {
                Ok(Ok(resp)) => self.classify(req, resp),
                Ok(Err(e)) => (Outcome::Failed, Err(TrickleError::from(e))),
                Err(e) => (Outcome::Failed, Err(e)),
            };
            self.follower.handle(now, outcome);
            self.sync_counters();
            match reader {
                Ok(reader) => {
                    // Preconnect: the next GET waits on the server while this body streams.
                    if let Action::Get(next) = self.follower.poll_action(now) {
                        self.pending = Some(self.spawn_get(next));
                    }
                    return Ok(Some(reader));
                }
                Err(e) => {
                    if matches!(outcome, Outcome::Failed | Outcome::SeqNonexistent { .. }) {
                        debug!(channel = %self.name, %req, error = %e, "subscribe request failed");
                    }
                    self.last_error = Some(e);
                }
            }
        }
    }

    fn stopped(&mut self, reason: StopReason) -> Result<Option<SegmentReader>, TrickleError> {
        if let Some(p) = self.pending.take() {
            p.task.abort();
        }
        match reason {
            StopReason::EndOfStream | StopReason::NotFound => {
                debug!(channel = %self.name, ?reason, "subscription ended");
                Ok(None)
            }
            StopReason::RetriesExhausted => {
                let retries = self.follower.consecutive_failures().saturating_sub(1);
                warn!(channel = %self.name, retries, "subscriber giving up");
                Err(TrickleError::RetriesExhausted {
                    retries,
                    last: Box::new(self.last_error.clone().unwrap_or(TrickleError::Closed)),
                })
            }
        }
    }

    fn sync_counters(&self) {
        let s = self.follower.stats();
        self.counters.segments.store(s.segments, Ordering::Relaxed);
        self.counters.retries.store(s.retries, Ordering::Relaxed);
        self.counters.jumps.store(s.jumps, Ordering::Relaxed);
    }

    /// Maps a response to the follower's outcome and, for a segment, a reader.
    fn classify(
        &self,
        req: SeqRequest,
        resp: reqwest::Response,
    ) -> (Outcome, Result<SegmentReader, TrickleError>) {
        let headers = resp.headers();
        let status = resp.status().as_u16();
        let seq_header = parse_seq_header(headers.get(HEADER_SEQ));
        let latest = parse_seq_header(headers.get(HEADER_LATEST));
        if is_closed(headers) {
            return (Outcome::Closed, Err(TrickleError::EndOfStream));
        }
        match status {
            200 => {
                let seq = seq_header
                    .and_then(|s| u64::try_from(s).ok())
                    .or(match req {
                        SeqRequest::At(n) => Some(n),
                        _ => None,
                    });
                let Some(seq) = seq else {
                    return (
                        Outcome::Failed,
                        Err(TrickleError::Protocol("segment without Lp-Trickle-Seq")),
                    );
                };
                trace!(channel = %self.name, seq, "segment headers");
                let reader = SegmentReader {
                    seq,
                    latest,
                    content_type: headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    resp: Some(resp),
                    read: 0,
                    limit: self.config.max_segment_bytes,
                    counters: self.counters.clone(),
                };
                (Outcome::Segment { seq: Some(seq) }, Ok(reader))
            }
            404 => (Outcome::NotFound, Err(TrickleError::StreamNotFound)),
            STATUS_SEQ_NOT_FOUND => {
                let seq = seq_header.unwrap_or_else(|| req.as_i64());
                match latest {
                    Some(latest) => (
                        Outcome::SeqNonexistent { seq, latest },
                        Err(TrickleError::SequenceNonexistent { seq, latest }),
                    ),
                    None => (
                        Outcome::Failed,
                        Err(TrickleError::Protocol("470 without Lp-Trickle-Latest")),
                    ),
                }
            }
            status => (Outcome::Failed, Err(TrickleError::Http { status })),
        }
    }

    fn spawn_get(&self, req: SeqRequest) -> PendingGet {
        let client = self.client.clone();
        let url = format!("{}/{req}", self.url);
        let timeout = self.config.preconnect_timeout;
        let counters = self.counters.clone();
        let name = self.name.clone();
        let task = tokio::spawn(async move {
            loop {
                match tokio::time::timeout(timeout, client.get(&url).send()).await {
                    Ok(r) => return r,
                    Err(_) => {
                        // An idle channel is normal; a silent connection is not. Reissuing
                        // tells them apart at the cost of one request per timeout.
                        counters.reissues.fetch_add(1, Ordering::Relaxed);
                        debug!(channel = %name, %req, "no headers in time, reissuing");
                    }
                }
            }
        });
        PendingGet { req, task }
    }
}

/// The current time from Tokio's clock, so paused-time tests drive the follower too.
fn clock_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.task.abort();
        }
    }
}

/// Streams one segment's body as it arrives.
#[derive(Debug)]
pub struct SegmentReader {
    seq: u64,
    latest: Option<i64>,
    content_type: Option<String>,
    resp: Option<reqwest::Response>,
    read: u64,
    limit: Option<u64>,
    counters: Arc<Counters>,
}

impl SegmentReader {
    /// The segment's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The channel's next write sequence when the request was made, if the server sent it
    /// (only when it differs from [`seq`](Self::seq)).
    pub fn latest(&self) -> Option<i64> {
        self.latest
    }

    /// The channel's MIME type as sent by the server.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Body bytes received so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The next chunk of the body, `None` at its end.
    ///
    /// After an error (transport failure or [`TrickleError::SegmentTooLarge`]) the segment is
    /// abandoned and further calls return `None`.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, TrickleError> {
        let Some(resp) = self.resp.as_mut() else {
            return Ok(None);
        };
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                self.read += chunk.len() as u64;
                if let Some(limit) = self.limit.filter(|l| self.read > *l) {
                    self.resp = None;
                    self.counters.oversized.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        seq = self.seq,
                        limit, "segment over the byte limit, skipped"
                    );
                    return Err(TrickleError::SegmentTooLarge {
                        seq: self.seq,
                        limit,
                    });
                }
                self.counters
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok(Some(chunk))
            }
            Ok(None) => {
                self.resp = None;
                Ok(None)
            }
            Err(e) => {
                self.resp = None;
                self.counters.body_errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Reads the whole body, failing with [`TrickleError::SegmentTooLarge`] past `limit` bytes.
    pub async fn read_all(mut self, limit: usize) -> Result<Bytes, TrickleError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            if buf.len() + chunk.len() > limit {
                self.counters.oversized.fetch_add(1, Ordering::Relaxed);
                return Err(TrickleError::SegmentTooLarge {
                    seq: self.seq,
                    limit: limit as u64,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}
