//! The trickle server: an axum [`Router`] over the per-channel [`Ring`].
//!
//! Routes (relative to wherever the router is nested; go-livepeer uses `/ai/trickle`):
//!
//! | method + path | meaning |
//! |---|---|
//! | `POST /{channel}` | create the channel (only with [`ServerConfig::autocreate`]) |
//! | `POST /{channel}/{seq}` | publish a segment (`-1` = the write head) |
//! | `GET /{channel}/{seq}` | subscribe to a segment (`-1` = next, `-2` = current) |
//! | `GET /{channel}/next` | the next write seq, as text and in `Lp-Trickle-Latest` |
//! | `DELETE /{channel}/{seq}` | close one segment |
//! | `DELETE /{channel}` | close and remove the channel |
//!
//! Status codes, headers and bodies follow go-livepeer's `trickle/trickle_server.go`, with
//! three deliberate differences: a negative seq other than `-1`/`-2` is answered `400`
//! (go-livepeer's handler panics), a publisher whose body fails mid-segment has its segment
//! closed so subscribers are released (go-livepeer leaves them waiting), and segments are capped
//! at [`ServerConfig::max_segment_bytes`].
//!
//! **Interim `100 Continue` keepalives.** go-livepeer sends a `100 Continue` every 10 s while a
//! preconnected POST waits for its first byte. hyper's server cannot emit unsolicited interim
//! responses (it sends one `100 Continue` only to a request carrying `Expect: 100-continue`).
//! Nothing needs them here: this server puts no timeout on a request body, so a preconnected
//! POST stays open as long as its client holds it, and our publisher sets no response timeout
//! on preconnected POSTs. A waiting POST ends when its segment is closed (reset, DELETE of the
//! seq or of the channel, shutdown), exactly as in go-livepeer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use crate::ring::{ReadSlot, Ring};
use crate::segment::Segment;
use crate::wire::{
    CLOSED_VALUE, HEADER_CLOSED, HEADER_EXPECT_CONTENT, HEADER_LATEST, HEADER_RESET, HEADER_SEQ,
    STATUS_SEQ_NOT_FOUND, SeqRequest,
};

/// Server settings. `Default` gives go-livepeer's orchestrator settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Create a channel on its first publish or on `POST /{channel}`. Default `false`
    /// (orchestrators create channels in-process only).
    pub autocreate: bool,
    /// Channels with no first byte written for this long are closed and removed.
    /// Default 5 minutes (trickle_server.go `IdleTimeout`).
    pub idle_timeout: Duration,
    /// How often the idle sweep runs. Default 1 minute (trickle_server.go `SweepInterval`).
    pub sweep_interval: Duration,
    /// Largest segment accepted; a publish past it is answered `413` and the segment closed.
    /// Default 256 MiB (go-livepeer has no limit; a few-second video segment is ~1 MB).
    pub max_segment_bytes: usize,
    /// Most channels that auto-creation may make; past it a publish to a new channel gets
    /// `503`. Default 10 000.
    pub max_channels: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            autocreate: false,
            idle_timeout: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(60),
            max_segment_bytes: 256 << 20,
            max_channels: 10_000,
        }
    }
}

/// Snapshot of server activity, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Channels currently open.
    pub channels: usize,
}

#[derive(Debug)]
struct Channel {
    name: String,
    mime: String,
    ring: Mutex<Ring<Arc<Segment>>>,
}

impl Channel {
    fn ring(&self) -> std::sync::MutexGuard<'_, Ring<Arc<Segment>>> {
        // The ring holds plain data updated in single statements; a poisoned lock cannot
        // leave it half-updated, so keep serving.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        let segments = self.ring().close();
        for s in segments {
            s.close();
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: ServerConfig,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    /// Set (under the channel-map lock) once shutdown began: no channel is created after it.
    closing: AtomicBool,
    shutdown: CancellationToken,
}

/// A trickle server. Cheap to clone; every clone serves the same channels.
///
/// Create channels in-process with [`create_channel`](Self::create_channel), serve
/// [`router`](Self::router), and call [`start_sweeper`](Self::start_sweeper) from inside a
/// Tokio runtime to enable the idle sweep. [`shutdown`](Self::shutdown) closes every channel
/// so that every waiting request returns.
#[derive(Debug, Clone)]
pub struct TrickleServer {
    inner: Arc<Inner>,
}

impl TrickleServer {
    /// A server with no channels.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                channels: Mutex::new(HashMap::new()),
                closing: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Channel>>> {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The routes, relative to the mount point: nest them with
    /// `Router::new().nest("/ai/trickle", server.router())`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/{channel}", post(create).delete(delete_channel))
            .route(
                "/{channel}/{seq}",
                post(publish).get(subscribe).delete(delete_segment),
            )
            .with_state(self.clone())
    }

    /// Creates a channel with the MIME type its subscribers will see. Returns `false` if it
    /// already existed (the existing channel is kept unchanged).
    pub fn create_channel(&self, name: &str, mime: &str) -> bool {
        matches!(self.get_or_create(name, mime, true), Ok((_, true)))
    }

    fn get_or_create(
        &self,
        name: &str,
        mime: &str,
        force: bool,
    ) -> Result<(Arc<Channel>, bool), Refusal> {
        let mut channels = self.channels();
        if let Some(ch) = channels.get(name) {
            return Ok((ch.clone(), false));
        }
        if (!force && !self.inner.config.autocreate) || self.inner.closing.load(Ordering::Relaxed) {
            return Err(Refusal::NotFound);
        }
        if !force && channels.len() >= self.inner.config.max_channels {
            return Err(Refusal::Full);
        }
        let ch = Arc::new(Channel {
            name: name.to_owned(),
            mime: mime.to_owned(),
            ring: Mutex::new(Ring::new(Instant::now())),
        });
        channels.insert(name.to_owned(), ch.clone());
        tracing::debug!(channel = name, "channel created");
        Ok((ch, true))
    }

    fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels().get(name).cloned()
    }

    /// Closes and removes a channel; every waiting request on it returns. Returns `false`
    /// when there was no such channel.
    pub fn delete_channel(&self, name: &str) -> bool {
        let removed = self.channels().remove(name);
        match removed {
            Some(ch) => {
                ch.close();
                tracing::debug!(channel = name, "channel deleted");
                true
            }
            None => false,
        }
    }

    /// Whether a channel exists.
    pub fn has_channel(&self, name: &str) -> bool {
        self.channels().contains_key(name)
    }

    /// Current activity.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            channels: self.channels().len(),
        }
    }

    /// Closes every channel once, at `now`, whose last write is older than the idle timeout.
    /// Channels whose names start with `_` are kept (trickle_server.go `sweepIdleChannels`).
    /// Returns the names removed.
    pub fn sweep_idle(&self, now: Instant) -> Vec<String> {
        let timeout = self.inner.config.idle_timeout;
        let idle: Vec<String> = self
            .channels()
            .values()
            .filter(|ch| !ch.name.starts_with('_') && ch.ring().is_idle(now, timeout))
            .map(|ch| ch.name.clone())
            .collect();
        idle.into_iter()
            .filter(|name| self.delete_channel(name))
            .inspect(|name| tracing::debug!(channel = %name, "idle channel swept"))
            .collect()
    }

    /// Spawns the idle sweep on the current Tokio runtime; it stops at
    /// [`shutdown`](Self::shutdown).
    pub fn start_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let server = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(server.inner.config.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = server.inner.shutdown.cancelled() => return,
                    _ = tick.tick() => { server.sweep_idle(Instant::now()); }
                }
            }
        })
    }

    /// Closes every channel and refuses new ones, so every pending GET and POST returns and a
    /// graceful HTTP shutdown can complete. Idempotent.
    pub fn shutdown(&self) {
        let all: Vec<Arc<Channel>> = {
            let mut channels = self.channels();
            self.inner.closing.store(true, Ordering::Relaxed);
            channels.drain().map(|(_, c)| c).collect()
        };
        for ch in all {
            ch.close();
        }
        // Publishers mid-segment wake on this; their channels are already closed, so their
        // replies carry `Lp-Trickle-Closed`.
        self.inner.shutdown.cancel();
    }
}

/// Wraps a listener so every accepted connection has `TCP_NODELAY` set.
///
/// Trickle responses go out as many small chunked frames; with Nagle's algorithm on, each
/// small write can wait for the peer's delayed ACK (~40 ms on Linux), which would dominate a
/// segment's first-byte latency. Serve trickle with `axum::serve(nodelay(listener), app)`.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
    })
}

/// go-livepeer's `http.Error`: plain text, `nosniff`, message plus newline.
fn plain_error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{msg}\n"),
    )
        .into_response()
}

/// Why a channel could not be found or made.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// No such channel and auto-creation is off (or the server is shutting down).
    NotFound,
    /// Auto-creation would exceed [`ServerConfig::max_channels`].
    Full,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => not_found(),
            Self::Full => plain_error(StatusCode::SERVICE_UNAVAILABLE, "Too many streams"),
        }
    }
}

fn not_found() -> Response {
    plain_error(StatusCode::NOT_FOUND, "Stream not found")
}

fn invalid_idx() -> Response {
    plain_error(StatusCode::BAD_REQUEST, "Invalid idx")
}

fn num(v: u64) -> HeaderValue {
    HeaderValue::from(v)
}

async fn create(
    State(srv): State<TrickleServer>,
    Path(channel): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mime = header_str(&headers, HEADER_EXPECT_CONTENT);
    match srv.get_or_create(&channel, mime, false) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn delete_channel(State(srv): State<TrickleServer>, Path(channel): Path<String>) -> Response {
    if srv.delete_channel(&channel) {
        StatusCode::OK.into_response()
    } else {
        plain_error(StatusCode::BAD_REQUEST, "Invalid stream")
    }
}

async fn delete_segment(
    State(srv): State<TrickleServer>,
    Path((channel, seq)): Path<(String, String)>,
) -> Response {
    let Some(ch) = srv.channel(&channel) else {
        return not_found();
    };
    let Some(SeqRequest::At(seq)) = SeqRequest::parse(&seq) else {
        return invalid_idx();
    };
    match ch.ring().get(seq) {
        Some(seg) => {
            seg.close();
            StatusCode::OK.into_response()
        }
        None => plain_error(StatusCode::BAD_REQUEST, "Nonexistent segment"),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn publish(
    State(srv): State<TrickleServer>,
    Path((channel, seq)): Path<(String, String)>,
    req: Request,
) -> Response {
    let mime = header_str(req.headers(), header::CONTENT_TYPE.as_str()).to_owned();
    let ch = match srv.get_or_create(&channel, &mime, false) {
        Ok((ch, _)) => ch,
        Err(refusal) => {
            let mut resp = refusal.into_response();
            // Wakes preconnected clients waiting on a keep-alive connection.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
    };
    let Some(req_seq) = SeqRequest::parse(&seq) else {
        return invalid_idx();
    };
    let reset = !header_str(req.headers(), HEADER_RESET).is_empty();
    let slot = ch.ring().for_write(req_seq, |s| Arc::new(Segment::new(s)));
    let Some(slot) = slot else {
        return invalid_idx();
    };
    if let Some(old) = slot.evicted {
        old.close();
    }
    let seg = slot.segment;
    if reset {
        // A restarted publisher: release subscribers hanging on older segments, but keep
        // preconnected later ones (they sometimes arrive out of order).
        let older = ch.ring().older_than(seg.seq());
        for s in older {
            s.close();
        }
    }
    receive_body(&srv, &ch, &seg, req.into_body()).await
}

/// Streams a POST body into `seg` and builds the reply.
async fn receive_body(srv: &TrickleServer, ch: &Channel, seg: &Segment, body: Body) -> Response {
    let max = srv.inner.config.max_segment_bytes;
    let shutdown = &srv.inner.shutdown;
    let mut body = body;
    let mut total = 0usize;
    loop {
        let frame = if total == 0 {
            // Before the first byte, a close of the segment (reset, DELETE, channel close)
            // ends the wait, like go-livepeer's timeoutReader.
            tokio::select! {
                f = body.frame() => f,
                _ = seg.closed() => return empty_publish_reply(ch, seg),
            }
        } else {
            tokio::select! {
                f = body.frame() => f,
                _ = shutdown.cancelled() => {
                    return empty_publish_reply(ch, seg);
                }
            }
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers carry nothing for us
                };
                if data.is_empty() {
                    continue;
                }
                if total == 0 {
                    ch.ring().handle_first_byte(seg.seq(), Instant::now());
                }
                total += data.len();
                if total > max {
                    seg.close();
                    tracing::warn!(channel = %ch.name, seq = seg.seq(), max, "segment too large");
                    return plain_error(StatusCode::PAYLOAD_TOO_LARGE, "Segment too large");
                }
                seg.write(data);
            }
            Some(Err(err)) => {
                // Release subscribers rather than leave them waiting on a dead publisher, and
                // move the write head past this seq so the next publisher does not land in a
                // closed segment.
                if total == 0 {
                    ch.ring().handle_first_byte(seg.seq(), Instant::now());
                }
                seg.close();
                tracing::debug!(channel = %ch.name, seq = seg.seq(), total, %err, "publish body failed");
                return plain_error(StatusCode::INTERNAL_SERVER_ERROR, "Server error");
            }
        }
    }
    if total == 0 {
        return empty_publish_reply(ch, seg);
    }
    seg.close();
    tracing::trace!(channel = %ch.name, seq = seg.seq(), bytes = total, "segment published");
    ([(HEADER_SEQ, num(seg.seq()))], StatusCode::OK).into_response()
}

/// The reply to a publish that ended with no byte written: the write head still advances so
/// clients do not stall on the next seq (trickle_server.go handlePost, `totalRead <= 0`).
fn empty_publish_reply(ch: &Channel, seg: &Segment) -> Response {
    seg.close();
    let closed = {
        let mut ring = ch.ring();
        ring.handle_first_byte(seg.seq(), Instant::now());
        ring.is_closed()
    };
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert(HEADER_SEQ, num(seg.seq()));
    if closed {
        h.insert(HEADER_CLOSED, HeaderValue::from_static(CLOSED_VALUE));
    }
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn subscribe(
    State(srv): State<TrickleServer>,
    Path((channel, seq)): Path<(String, String)>,
) -> Response {
    let Some(ch) = srv.channel(&channel) else {
        return not_found();
    };
    if seq == "next" {
        return next(&ch);
    }
    let Some(req) = SeqRequest::parse(&seq) else {
        return invalid_idx();
    };
    let slot = ch.ring().for_read(req, |s| Arc::new(Segment::new(s)));
    match slot {
        ReadSlot::Missing {
            seq,
            latest,
            closed,
        } => {
            let status = if closed {
                StatusCode::OK
            } else {
                // 470 is a valid three-digit status; from_u16 cannot fail for it.
                StatusCode::from_u16(STATUS_SEQ_NOT_FOUND).unwrap_or(StatusCode::NOT_FOUND)
            };
            let mut resp = (status, "Entry not found").into_response();
            let h = resp.headers_mut();
            h.insert(HEADER_LATEST, num(latest));
            h.insert(HEADER_SEQ, num(seq));
            if closed {
                h.insert(HEADER_CLOSED, HeaderValue::from_static(CLOSED_VALUE));
            }
            resp
        }
        ReadSlot::Found {
            seq,
            segment,
            latest,
        } => stream_segment(&ch, seq, segment, latest).await,
    }
}

/// Waits for the segment's first byte (headers go out with it), then streams the rest.
async fn stream_segment(ch: &Channel, seq: u64, seg: Arc<Segment>, latest: u64) -> Response {
    let mut pos = 0usize;
    let Some(first) = seg.read(&mut pos).await else {
        // Closed with no byte: an empty segment, or the channel went away while waiting.
        let (closed, latest) = {
            let ring = ch.ring();
            (ring.is_closed(), ring.next_write())
        };
        let mut resp = StatusCode::OK.into_response();
        let h = resp.headers_mut();
        h.insert(HEADER_SEQ, num(seq));
        h.insert(HEADER_LATEST, num(latest));
        if closed {
            h.insert(HEADER_CLOSED, HeaderValue::from_static(CLOSED_VALUE));
        }
        return resp;
    };
    let rest = futures::stream::unfold((seg, pos), |(seg, mut pos)| async move {
        let chunk = seg.read(&mut pos).await?;
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), (seg, pos)))
    });
    let body = futures::stream::once(async move { Ok(first) }).chain(rest);
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    if seq != latest {
        h.insert(HEADER_LATEST, num(latest));
    }
    h.insert(HEADER_SEQ, num(seq));
    if let Ok(mime) = HeaderValue::from_str(&ch.mime) {
        h.insert(header::CONTENT_TYPE, mime);
    }
    resp
}

fn next(ch: &Channel) -> Response {
    let (latest, closed) = {
        let ring = ch.ring();
        (ring.next_write(), ring.is_closed())
    };
    let mut resp = latest.to_string().into_response();
    let h = resp.headers_mut();
    h.insert(HEADER_LATEST, num(latest));
    if closed {
        h.insert(HEADER_CLOSED, HeaderValue::from_static(CLOSED_VALUE));
    }
    resp
}
