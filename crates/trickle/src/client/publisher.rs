//! The trickle publisher: one streaming `POST {channel}/{seq}` per segment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{OwnedMutexGuard, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, trace, warn};

use super::{HttpClient, channel_name, channel_url, http_client, is_closed};
use crate::error::TrickleError;
use crate::publish::{Decision, PostOutcome, PublishConfig, PublishState, PublishStats};
use crate::wire::{HEADER_LATEST, HEADER_RESET, parse_seq_header};

/// Tuning of a [`Publisher`].
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// First segment to write. `None` (default) asks the channel for its next write sequence
    /// (`GET {url}/next`) and sends `Lp-Trickle-Reset` with the first segment, which releases
    /// subscribers still waiting on older segments.
    pub start_seq: Option<u64>,
    /// Retry and failure limits. Default: see [`PublishConfig`].
    pub publish: PublishConfig,
    /// Chunks buffered between [`SegmentWriter::write`] and the HTTP request. Default 8.
    pub write_queue: usize,
    /// How long one [`SegmentWriter::write`] may wait for queue space before failing with
    /// [`TrickleError::WriteStalled`]. Default 5 s.
    pub write_timeout: Duration,
    /// Accept any TLS certificate. Default `false` (trickle_publisher.go verifies unless
    /// told otherwise); orchestrators often serve self-signed certificates. Ignored when
    /// [`http`](Self::http) is set.
    pub insecure_tls: bool,
    /// A preconfigured HTTP client (TLS policy such as certificate pinning, shared
    /// connections). Default `None`: a client of its own, per `insecure_tls`.
    pub http: Option<HttpClient>,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            start_seq: None,
            publish: PublishConfig::default(),
            write_queue: 8,
            write_timeout: Duration::from_secs(5),
            insecure_tls: false,
            http: None,
        }
    }
}

type SharedState = Arc<Mutex<PublishState>>;

fn lock(state: &SharedState) -> MutexGuard<'_, PublishState> {
    // The state holds plain counters; a panic elsewhere cannot leave it inconsistent.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cheap, cloneable view of a publisher's counters, readable from any task.
#[derive(Clone, Debug)]
pub struct PublisherStatsHandle(SharedState);

impl PublisherStatsHandle {
    /// The counters now.
    pub fn get(&self) -> PublishStats {
        lock(&self.0).stats()
    }
}

/// Publishes segments to one trickle channel.
///
/// Each segment is a `POST {url}/{seq}` whose body streams while it is produced. The POST for
/// the following segment is opened as soon as a segment is handed out, so it is already
/// connected when its data arrives. Dropping the publisher ends that preconnected request
/// with an empty body, so subscribers see one empty segment; call [`close`](Self::close) to
/// end the channel instead.
#[derive(Debug)]
pub struct Publisher {
    client: reqwest::Client,
    url: String,
    name: String,
    mime: String,
    config: PublisherConfig,
    state: SharedState,
    /// Sequence of the next segment, once known.
    seq: Option<u64>,
    /// Whether the next POST carries `Lp-Trickle-Reset`.
    reset_next: bool,
    pending: Option<PendingPost>,
    closed: bool,
}

/// An open POST waiting for (or streaming) its body.
#[derive(Debug)]
struct PendingPost {
    seq: u64,
    tx: mpsc::Sender<Bytes>,
    task: JoinHandle<Result<(), TrickleError>>,
}

impl Publisher {
    /// A publisher for the channel at `url` whose segments carry `Content-Type: mime`.
    ///
    /// Does no I/O; the first request goes out with [`preconnect`](Self::preconnect) or the
    /// first [`next_segment`](Self::next_segment).
    pub fn new(url: &str, mime: &str, config: PublisherConfig) -> Result<Self, TrickleError> {
        let url = channel_url(url)?;
        Ok(Self {
            client: http_client(config.http.as_ref(), config.insecure_tls)?,
            name: channel_name(&url),
            url,
            mime: mime.to_owned(),
            state: Arc::new(Mutex::new(PublishState::new(config.publish.clone()))),
            config,
            seq: None,
            reset_next: false,
            pending: None,
            closed: false,
        })
    }

    /// Counters now.
    pub fn stats(&self) -> PublishStats {
        lock(&self.state).stats()
    }

    /// A handle to read the counters while the publisher is busy elsewhere.
    pub fn stats_handle(&self) -> PublisherStatsHandle {
        PublisherStatsHandle(self.state.clone())
    }

    /// The sequence the next segment will get, once resolved.
    pub fn next_seq(&self) -> Option<u64> {
        self.seq
    }

    /// Resolves the start sequence and opens the first segment's POST ahead of time.
    pub async fn preconnect(&mut self) -> Result<(), TrickleError> {
        self.check_usable()?;
        let seq = self.resolve_seq().await?;
        if self.pending.as_ref().is_none_or(|p| p.seq != seq) {
            let post = self.open_post(seq);
            self.replace_pending(Some(post));
        }
        Ok(())
    }

    /// Starts the next segment and preconnects the one after it.
    pub async fn next_segment(&mut self) -> Result<SegmentWriter, TrickleError> {
        self.check_usable()?;
        let seq = self.resolve_seq().await?;
        let post = match self.pending.take() {
            Some(p) if p.seq == seq => p,
            other => {
                if let Some(p) = other {
                    p.task.abort();
                }
                self.open_post(seq)
            }
        };
        lock(&self.state).handle_segment_started();
        self.seq = Some(seq + 1);
        let next = self.open_post(seq + 1);
        self.pending = Some(next);
        trace!(channel = %self.name, seq, "segment started");
        Ok(SegmentWriter {
            seq,
            tx: Some(post.tx),
            task: Some(post.task),
            result: None,
            write_timeout: self.config.write_timeout,
            state: self.state.clone(),
        })
    }

    /// Publishes `data` as one whole segment and waits for the server's answer.
    pub async fn write_segment(&mut self, data: Bytes) -> Result<u64, TrickleError> {
        let mut w = self.next_segment().await?;
        let seq = w.seq();
        w.write(data).await?;
        w.finish().await?;
        Ok(seq)
    }

    /// Stops publishing and deletes the channel (`DELETE {url}`), which ends every subscriber.
    ///
    /// Segments already handed out keep streaming until their writers finish; new segments
    /// fail with [`TrickleError::Closed`]. A channel that is already gone gives
    /// [`TrickleError::StreamNotFound`].
    pub async fn close(&mut self) -> Result<(), TrickleError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        lock(&self.state).handle_closed_locally();
        debug!(channel = %self.name, "deleting channel");
        let resp = self.client.delete(&self.url).send().await;
        // Only now let go of the preconnected POST: the deletion has already closed its
        // segment, whereas ending it first would hand subscribers an empty segment.
        self.pending = None;
        match resp?.status().as_u16() {
            200 => Ok(()),
            // trickle_server.go answers 400 `Invalid stream` for an unknown channel.
            400 | 404 => Err(TrickleError::StreamNotFound),
            status => Err(TrickleError::Http { status }),
        }
    }

    fn check_usable(&self) -> Result<(), TrickleError> {
        if self.closed {
            return Err(TrickleError::Closed);
        }
        match lock(&self.state).terminal() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn replace_pending(&mut self, new: Option<PendingPost>) {
        // Aborting drops the half-open request; the server sees it end without data.
        if let Some(old) = std::mem::replace(&mut self.pending, new) {
            old.task.abort();
        }
    }

    /// The next sequence: configured, already known, or asked from the server.
    async fn resolve_seq(&mut self) -> Result<u64, TrickleError> {
        if let Some(seq) = self.seq {
            return Ok(seq);
        }
        let seq = match self.config.start_seq {
            Some(seq) => seq,
            None => {
                let seq = self.fetch_next().await?;
                self.reset_next = true;
                seq
            }
        };
        debug!(channel = %self.name, seq, "publisher starting");
        self.seq = Some(seq);
        Ok(seq)
    }

    /// `GET {url}/next`: the channel's next write sequence.
    async fn fetch_next(&self) -> Result<u64, TrickleError> {
        let resp = self.client.get(format!("{}/next", self.url)).send().await?;
        let status = resp.status().as_u16();
        if is_closed(resp.headers()) {
            return Err(self.fail_terminal(TrickleError::EndOfStream));
        }
        match status {
            200 => {}
            // No channel yet: start at 0. A server that auto-creates channels makes it on the
            // first POST; any other answers that POST with 404, which is terminal there.
            404 => {
                debug!(channel = %self.name, "no such channel yet, starting at 0");
                return Ok(0);
            }
            status => return Err(TrickleError::Http { status }),
        }
        if let Some(n) = parse_seq_header(resp.headers().get(HEADER_LATEST)) {
            return u64::try_from(n).map_err(|_| TrickleError::Protocol("negative next sequence"));
        }
        let body = resp.bytes().await?;
        std::str::from_utf8(&body)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or(TrickleError::Protocol("unparsable next sequence"))
    }

    fn fail_terminal(&self, err: TrickleError) -> TrickleError {
        lock(&self.state).handle_terminal(err)
    }

    fn open_post(&mut self, seq: u64) -> PendingPost {
        let reset = std::mem::take(&mut self.reset_next);
        let (tx, rx) = mpsc::channel(self.config.write_queue.max(1));
        let post = PostTask {
            client: self.client.clone(),
            url: format!("{}/{seq}", self.url),
            name: self.name.clone(),
            mime: self.mime.clone(),
            reset,
            seq,
            state: self.state.clone(),
        };
        PendingPost {
            seq,
            tx,
            task: tokio::spawn(post.run(rx)),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // End the preconnected POST with an empty body rather than aborting it: the server
        // then records an empty segment and moves its write position past it, so a later
        // publisher starting from `/next` does not land on a segment closed without data.
        // The request completes on its own right away.
        self.pending = None;
    }
}

/// Everything one segment's POST needs, moved into its task.
struct PostTask {
    client: reqwest::Client,
    url: String,
    name: String,
    mime: String,
    reset: bool,
    seq: u64,
    state: SharedState,
}

impl PostTask {
    async fn run(self, rx: mpsc::Receiver<Bytes>) -> Result<(), TrickleError> {
        // Shared so that a repeat of a POST that sent nothing can stream the same queue.
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let sent = Arc::new(AtomicU64::new(0));
            let body = body_stream(rx.clone(), sent.clone(), self.state.clone());
            let mut req = self
                .client
                .post(&self.url)
                .header(http::header::CONTENT_TYPE, &self.mime)
                .body(reqwest::Body::wrap_stream(body));
            if self.reset {
                req = req.header(HEADER_RESET, "1");
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let closed = is_closed(resp.headers());
                    // Drain the (short) reply so the connection can be reused.
                    let _ = resp.bytes().await;
                    match status {
                        _ if closed => PostOutcome::Closed,
                        200 => PostOutcome::Ok,
                        404 => PostOutcome::NotFound,
                        s => PostOutcome::Http(s),
                    }
                }
                Err(e) => PostOutcome::Transport(e.into()),
            };
            let sent = sent.load(Ordering::Relaxed);
            trace!(channel = %self.name, seq = self.seq, attempt, sent, ?outcome, "post ended");
            let decision = lock(&self.state).handle_post(attempt, sent, outcome);
            match decision {
                Decision::Done => return Ok(()),
                Decision::Retry => {
                    debug!(channel = %self.name, seq = self.seq, "repeating post that sent nothing");
                }
                Decision::SegmentFailed(e) => {
                    warn!(channel = %self.name, seq = self.seq, error = %e, "segment failed");
                    return Err(e);
                }
                Decision::Terminal(e) => {
                    debug!(channel = %self.name, seq = self.seq, error = %e, "publisher stopped");
                    return Err(e);
                }
            }
        }
    }
}

/// The request body: chunks from the writer's queue, counted as they are handed over.
fn body_stream(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Bytes>>>,
    sent: Arc<AtomicU64>,
    state: SharedState,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    type Guard = OwnedMutexGuard<mpsc::Receiver<Bytes>>;
    futures::stream::unfold(None::<Guard>, move |guard| {
        let rx = rx.clone();
        let sent = sent.clone();
        let state = state.clone();
        async move {
            let mut guard = match guard {
                Some(g) => g,
                None => rx.lock_owned().await,
            };
            let chunk = guard.recv().await?;
            let n = chunk.len() as u64;
            sent.fetch_add(n, Ordering::Relaxed);
            lock(&state).handle_bytes_sent(n);
            Some((Ok(chunk), Some(guard)))
        }
    })
}

/// Streams one segment's body.
///
/// Bytes go out as they are written. [`finish`](Self::finish) ends the body and waits for the
/// server's answer. Dropping the writer also ends the body; the request then completes in the
/// background and its result only shows in the publisher's stats.
#[derive(Debug)]
#[must_use = "a segment is only published once its writer is finished or dropped"]
pub struct SegmentWriter {
    seq: u64,
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<JoinHandle<Result<(), TrickleError>>>,
    result: Option<Result<(), TrickleError>>,
    write_timeout: Duration,
    state: SharedState,
}

impl SegmentWriter {
    /// This segment's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Queues `data` for the request body, waiting (bounded by the write timeout) for space.
    pub async fn write(&mut self, data: Bytes) -> Result<(), TrickleError> {
        if let Some(e) = lock(&self.state).terminal() {
            return Err(e.clone());
        }
        if data.is_empty() {
            return Ok(());
        }
        let Some(tx) = &self.tx else {
            return Err(self.join().await.err().unwrap_or(TrickleError::Closed));
        };
        match tokio::time::timeout(self.write_timeout, tx.send(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                // The request no longer reads its body: report why it ended.
                self.tx = None;
                Err(self.join().await.err().unwrap_or(TrickleError::Protocol(
                    "segment closed by the server before the write",
                )))
            }
            Err(_) => Err(TrickleError::WriteStalled { seq: self.seq }),
        }
    }

    /// Ends the body and waits for the server to acknowledge the segment.
    pub async fn finish(mut self) -> Result<(), TrickleError> {
        self.tx = None;
        self.join().await
    }

    async fn join(&mut self) -> Result<(), TrickleError> {
        if let Some(task) = self.task.take() {
            let r = task.await.unwrap_or(Err(TrickleError::Closed));
            self.result = Some(r);
        }
        self.result.clone().unwrap_or(Err(TrickleError::Closed))
    }
}
