//! JSON messages over trickle channels (control, events, Scope's channels).
//!
//! Two framings exist in the wild:
//! - **one document per segment** (go-livepeer control/events; spec §4): the segment boundary
//!   is the message boundary and a document may lack a trailing newline;
//! - **newline-delimited** (Scope): several one-line objects per segment, segments rotated
//!   about every 10 s.
//!
//! [`JsonWriter`] writes either framing, with an optional `{"keep":"alive"}` when idle.
//! [`JsonReader`] accepts both, even mixed, and skips what it cannot use (empty segments,
//! invalid JSON, oversized messages, keepalives), counting each case.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::client::{
    Publisher, PublisherConfig, PublisherStatsHandle, SegmentReader, SegmentWriter, Subscriber,
    SubscriberConfig, SubscriberStats, SubscriberStatsHandle,
};
use crate::error::TrickleError;
use crate::publish::PublishStats;
use crate::wire::MIME_JSON;

/// The keepalive document (server/ai_live_video.go control loop); readers drop it.
pub const KEEPALIVE: &[u8] = br#"{"keep":"alive"}"#;

/// Whether `v` is the keepalive document `{"keep":"alive"}`.
pub fn is_keepalive(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.get("keep").and_then(Value::as_str) == Some("alive"))
}

/// How a [`JsonWriter`] maps messages to segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One document per segment (go-livepeer control and events).
    PerSegment,
    /// Newline-terminated documents streamed into a segment that is closed `rotate` after
    /// it was opened (Scope: about 10 s).
    Lines {
        /// Lifetime of one segment.
        rotate: Duration,
    },
}

/// Tuning of a [`JsonWriter`].
#[derive(Clone, Debug)]
pub struct JsonWriterConfig {
    /// Message framing. Default [`Framing::PerSegment`].
    pub framing: Framing,
    /// Send [`KEEPALIVE`] after this long without a message; `None` disables it.
    /// Default 10 s (server/ai_live_video.go control keepalive).
    pub keepalive: Option<Duration>,
    /// Messages buffered before [`JsonWriter::send`] waits. Default 16.
    pub queue: usize,
    /// The underlying publisher's tuning.
    pub publisher: PublisherConfig,
}

impl Default for JsonWriterConfig {
    fn default() -> Self {
        Self {
            framing: Framing::PerSegment,
            keepalive: Some(Duration::from_secs(10)),
            queue: 16,
            publisher: PublisherConfig::default(),
        }
    }
}

/// Writes JSON messages to a trickle channel from a background task.
///
/// [`send`](Self::send) only queues (bounded); a failed segment is logged and counted, and a
/// terminal publisher failure makes later sends fail with that error.
#[derive(Debug)]
pub struct JsonWriter {
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<JoinHandle<()>>,
    terminal: Arc<Mutex<Option<TrickleError>>>,
    stats: PublisherStatsHandle,
}

impl JsonWriter {
    /// Starts a writer for the channel at `url` (MIME `application/json`).
    pub fn new(url: &str, config: JsonWriterConfig) -> Result<Self, TrickleError> {
        let publisher = Publisher::new(url, MIME_JSON, config.publisher.clone())?;
        let stats = publisher.stats_handle();
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let terminal = Arc::new(Mutex::new(None));
        let driver = WriterTask {
            publisher,
            rx,
            config,
            terminal: terminal.clone(),
        };
        Ok(Self {
            tx: Some(tx),
            task: Some(tokio::spawn(driver.run())),
            terminal,
            stats,
        })
    }

    /// Queues one message.
    pub async fn send<T: Serialize + ?Sized>(&self, msg: &T) -> Result<(), TrickleError> {
        let bytes = serde_json::to_vec(msg)
            .map_err(|_| TrickleError::Protocol("message is not serializable to JSON"))?;
        self.send_raw(Bytes::from(bytes)).await
    }

    /// Queues already-encoded bytes as one message (e.g. cached control parameters). With
    /// [`Framing::Lines`] the bytes must not contain a newline.
    pub async fn send_raw(&self, msg: Bytes) -> Result<(), TrickleError> {
        if let Some(e) = self.terminal_error() {
            return Err(e);
        }
        let tx = self.tx.as_ref().ok_or(TrickleError::Closed)?;
        if tx.send(msg).await.is_err() {
            return Err(self.terminal_error().unwrap_or(TrickleError::Closed));
        }
        Ok(())
    }

    /// Publisher counters (segments, bytes, failures).
    pub fn stats(&self) -> PublishStats {
        self.stats.get()
    }

    /// Sends what is queued, then deletes the channel.
    pub async fn close(mut self) -> Result<(), TrickleError> {
        self.tx = None;
        if let Some(task) = self.task.take() {
            task.await.map_err(|_| TrickleError::Closed)?;
        }
        match self.terminal_error() {
            Some(TrickleError::Closed) | None => Ok(()),
            Some(e) => Err(e),
        }
    }

    fn terminal_error(&self) -> Option<TrickleError> {
        self.terminal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for JsonWriter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct WriterTask {
    publisher: Publisher,
    rx: mpsc::Receiver<Bytes>,
    config: JsonWriterConfig,
    terminal: Arc<Mutex<Option<TrickleError>>>,
}

impl WriterTask {
    async fn run(mut self) {
        let result = match self.config.framing {
            Framing::PerSegment => self.run_per_segment().await,
            Framing::Lines { rotate } => self.run_lines(rotate).await,
        };
        let close = self.publisher.close().await;
        let err = result.err().or_else(|| close.err());
        if let Some(e) = &err {
            debug!(error = %e, "json writer stopped");
        }
        *self.terminal.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(err.unwrap_or(TrickleError::Closed));
    }

    fn keepalive_at(&self, last: Instant) -> Option<Instant> {
        self.config.keepalive.map(|k| last + k)
    }

    async fn run_per_segment(&mut self) -> Result<(), TrickleError> {
        // Opening the first POST early lets the first message go out without a round trip.
        if let Err(e) = self.publisher.preconnect().await {
            warn!(error = %e, "json writer preconnect failed");
        }
        let mut last = Instant::now();
        loop {
            let keepalive_at = self.keepalive_at(last);
            let msg = tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(m) => m,
                    None => return Ok(()),
                },
                () = sleep_until_opt(keepalive_at) => Bytes::from_static(KEEPALIVE),
            };
            last = Instant::now();
            if let Err(e) = self.publisher.write_segment(msg).await {
                if self.publisher.stats().terminal {
                    return Err(e);
                }
                warn!(error = %e, "json segment failed");
            }
        }
    }

    async fn run_lines(&mut self, rotate: Duration) -> Result<(), TrickleError> {
        let mut current: Option<(SegmentWriter, Instant)> = None;
        let mut last = Instant::now();
        loop {
            let keepalive_at = self.keepalive_at(last);
            let rotate_at = current.as_ref().map(|(_, opened)| *opened + rotate);
            let msg = tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(m) => m,
                    None => break,
                },
                () = sleep_until_opt(keepalive_at) => Bytes::from_static(KEEPALIVE),
                () = sleep_until_opt(rotate_at) => {
                    if let Some((w, _)) = current.take() {
                        self.finish_segment(w).await?;
                    }
                    continue;
                }
            };
            last = Instant::now();
            if current.is_none() {
                current = Some((self.publisher.next_segment().await?, Instant::now()));
            }
            let Some((w, _)) = current.as_mut() else {
                continue;
            };
            let mut line = Vec::with_capacity(msg.len() + 1);
            line.extend_from_slice(&msg);
            line.push(b'\n');
            if let Err(e) = w.write(Bytes::from(line)).await {
                current = None;
                if self.publisher.stats().terminal {
                    return Err(e);
                }
                warn!(error = %e, "json line segment failed");
            }
        }
        if let Some((w, _)) = current.take() {
            self.finish_segment(w).await?;
        }
        Ok(())
    }

    async fn finish_segment(&self, w: SegmentWriter) -> Result<(), TrickleError> {
        match w.finish().await {
            Ok(()) => Ok(()),
            Err(e) if self.publisher.stats().terminal => Err(e),
            Err(e) => {
                warn!(error = %e, "json line segment failed");
                Ok(())
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Counters of a [`JsonDecoder`] / [`JsonReader`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonStats {
    /// Messages delivered.
    pub messages: u64,
    /// Keepalives dropped.
    pub keepalives: u64,
    /// Stretches of invalid JSON skipped.
    pub invalid: u64,
    /// Messages skipped for exceeding the size limit.
    pub oversized: u64,
    /// Segments seen (including empty ones).
    pub segments: u64,
    /// Segments that ended without a single message.
    pub empty_segments: u64,
    /// Segments abandoned because their body failed or exceeded the segment limit.
    pub broken_segments: u64,
}

/// Incremental decoder of one segment's bytes into JSON values; accepts both framings.
///
/// Feed chunks with [`push`](Self::push) as they arrive and call
/// [`end_segment`](Self::end_segment) at the segment's end. Values are separated by
/// whitespace (newlines) or simply follow each other. On invalid JSON the decoder skips to
/// the next newline; a message larger than the limit is skipped the same way.
#[derive(Debug)]
pub struct JsonDecoder {
    buf: Vec<u8>,
    max_message: usize,
    /// Discarding input until the next newline.
    skipping: bool,
    messages_in_segment: u64,
    stats: JsonStats,
}

impl JsonDecoder {
    /// A decoder that skips messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_message: max_message.max(2),
            skipping: false,
            messages_in_segment: 0,
            stats: JsonStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JsonStats {
        self.stats
    }

    /// Decodes as much of `chunk` (plus earlier leftovers) as possible into `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut VecDeque<Value>) {
        if self.skipping {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    chunk = &chunk[i + 1..];
                    self.skipping = false;
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(chunk);
        self.drain(false, out);
    }

    /// Ends the current segment: decodes what is left and resets for the next one.
    pub fn end_segment(&mut self, out: &mut VecDeque<Value>) {
        self.drain(true, out);
        self.stats.segments += 1;
        if self.messages_in_segment == 0 {
            self.stats.empty_segments += 1;
        }
        self.reset();
    }

    /// Drops a segment that broke off mid-way (counted as broken).
    pub fn abandon_segment(&mut self) {
        self.stats.segments += 1;
        self.stats.broken_segments += 1;
        self.reset();
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.skipping = false;
        self.messages_in_segment = 0;
    }

    fn drain(&mut self, at_end: bool, out: &mut VecDeque<Value>) {
        // Taken out so values can be delivered (mutating stats) while the buffer is borrowed.
        let mut buf = std::mem::take(&mut self.buf);
        let mut pos = 0;
        'outer: while pos < buf.len() {
            let slice = &buf[pos..];
            let mut stream = serde_json::Deserializer::from_slice(slice).into_iter::<Value>();
            loop {
                let start = stream.byte_offset();
                match stream.next() {
                    None => {
                        pos = buf.len();
                        break 'outer;
                    }
                    Some(Ok(v)) => {
                        let end = stream.byte_offset();
                        // A bare scalar at the very end may still grow ("12" then "3").
                        if !at_end && end == slice.len() && !(v.is_object() || v.is_array()) {
                            pos += start;
                            break 'outer;
                        }
                        self.deliver(v, end - start, out);
                    }
                    Some(Err(e)) if e.is_eof() && !at_end => {
                        pos += start;
                        break 'outer;
                    }
                    Some(Err(e)) => {
                        self.stats.invalid += 1;
                        warn!(error = %e, "invalid json in segment, skipping to next line");
                        // Resync after the broken value's line (not the newline before it).
                        let from = slice[start..]
                            .iter()
                            .position(|b| !b.is_ascii_whitespace())
                            .map_or(slice.len(), |i| start + i);
                        match slice[from..].iter().position(|b| *b == b'\n') {
                            Some(i) => {
                                pos += from + i + 1;
                                continue 'outer;
                            }
                            None => {
                                pos = buf.len();
                                self.skipping = !at_end;
                                break 'outer;
                            }
                        }
                    }
                }
            }
        }
        buf.drain(..pos.min(buf.len()));
        self.buf = buf;
        if self.buf.len() > self.max_message {
            self.stats.oversized += 1;
            warn!(
                limit = self.max_message,
                "json message over the size limit, skipping"
            );
            // The rest of this message may still be arriving: skip to its line's end.
            let nl = self.buf.iter().position(|b| *b == b'\n');
            match nl {
                Some(i) => {
                    self.buf.drain(..=i);
                    self.drain(at_end, out);
                }
                None => {
                    self.buf.clear();
                    self.skipping = !at_end;
                }
            }
        }
    }

    fn deliver(&mut self, v: Value, size: usize, out: &mut VecDeque<Value>) {
        if size > self.max_message {
            self.stats.oversized += 1;
            warn!(
                size,
                limit = self.max_message,
                "json message over the size limit, skipped"
            );
        } else if is_keepalive(&v) {
            self.stats.keepalives += 1;
        } else {
            self.stats.messages += 1;
            self.messages_in_segment += 1;
            out.push_back(v);
        }
    }
}

/// Tuning of a [`JsonReader`].
#[derive(Clone, Debug)]
pub struct JsonReaderConfig {
    /// The underlying subscriber's tuning (start at the live edge by default).
    pub subscriber: SubscriberConfig,
    /// Largest message accepted, in bytes. Default 1 MiB (the control-parameter cap of
    /// server/ai_mediaserver.go).
    pub max_message_bytes: usize,
}

impl Default for JsonReaderConfig {
    fn default() -> Self {
        Self {
            subscriber: SubscriberConfig::default(),
            max_message_bytes: 1 << 20,
        }
    }
}

/// Reads JSON messages from a trickle channel, in either framing.
///
/// Messages are decoded as their bytes arrive, so a newline-delimited segment delivers each
/// line at once rather than when the segment ends.
#[derive(Debug)]
pub struct JsonReader {
    sub: Subscriber,
    seg: Option<SegmentReader>,
    decoder: JsonDecoder,
    out: VecDeque<Value>,
}

impl JsonReader {
    /// A reader of the channel at `url`.
    pub fn new(url: &str, config: JsonReaderConfig) -> Result<Self, TrickleError> {
        Ok(Self {
            sub: Subscriber::new(url, config.subscriber)?,
            seg: None,
            decoder: JsonDecoder::new(config.max_message_bytes),
            out: VecDeque::new(),
        })
    }

    /// Message counters.
    pub fn stats(&self) -> JsonStats {
        self.decoder.stats()
    }

    /// The subscriber's counters.
    pub fn subscriber_stats(&self) -> SubscriberStats {
        self.sub.stats()
    }

    /// A handle to the subscriber's counters, readable while the reader is busy elsewhere.
    pub fn subscriber_stats_handle(&self) -> SubscriberStatsHandle {
        self.sub.stats_handle()
    }

    /// The next message; `None` once the channel is closed or gone.
    pub async fn next(&mut self) -> Result<Option<Value>, TrickleError> {
        loop {
            if let Some(v) = self.out.pop_front() {
                return Ok(Some(v));
            }
            let Some(seg) = self.seg.as_mut() else {
                match self.sub.next_segment().await? {
                    Some(seg) => self.seg = Some(seg),
                    None => return Ok(None),
                }
                continue;
            };
            match seg.chunk().await {
                Ok(Some(chunk)) => self.decoder.push(&chunk, &mut self.out),
                Ok(None) => {
                    self.decoder.end_segment(&mut self.out);
                    self.seg = None;
                }
                Err(e) => {
                    warn!(seq = seg.seq(), error = %e, "json segment broke off, skipping");
                    // Complete messages already delivered stay delivered.
                    self.decoder.abandon_segment();
                    self.seg = None;
                }
            }
        }
    }

    /// The next message converted to `T`; messages that don't fit `T` are counted as invalid
    /// and skipped.
    pub async fn next_as<T: DeserializeOwned>(&mut self) -> Result<Option<T>, TrickleError> {
        loop {
            let Some(v) = self.next().await? else {
                return Ok(None);
            };
            match serde_json::from_value(v) {
                Ok(t) => return Ok(Some(t)),
                Err(e) => {
                    self.decoder.stats.invalid += 1;
                    warn!(error = %e, "json message of unexpected shape, skipped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode_segments(max: usize, segments: &[&[&[u8]]]) -> (Vec<Value>, JsonStats) {
        let mut d = JsonDecoder::new(max);
        let mut out = VecDeque::new();
        for seg in segments {
            for chunk in *seg {
                d.push(chunk, &mut out);
            }
            d.end_segment(&mut out);
        }
        (out.into_iter().collect(), d.stats())
    }

    #[test]
    fn one_document_per_segment_without_newline() {
        let (v, s) = decode_segments(1024, &[&[br#"{"a":1}"#], &[b"{\n  \"b\": [1,2]\n}"]]);
        assert_eq!(v, vec![json!({"a":1}), json!({"b":[1,2]})]);
        assert_eq!((s.messages, s.segments, s.invalid), (2, 2, 0));
    }

    #[test]
    fn newline_delimited_split_across_chunks() {
        let (v, _) = decode_segments(
            1024,
            &[&[b"{\"a\":", b"1}\n{\"b\"", b":2}\n", b"{\"c\":3}"]],
        );
        assert_eq!(v, vec![json!({"a":1}), json!({"b":2}), json!({"c":3})]);
    }

    #[test]
    fn values_arrive_before_segment_end() {
        let mut d = JsonDecoder::new(1024);
        let mut out = VecDeque::new();
        d.push(b"{\"a\":1}\n{\"b\":", &mut out);
        assert_eq!(out.pop_front(), Some(json!({"a":1})));
        assert!(out.is_empty());
        d.push(b"2}\n", &mut out);
        assert_eq!(out.pop_front(), Some(json!({"b":2})));
    }

    #[test]
    fn keepalives_are_filtered_and_counted() {
        let (v, s) = decode_segments(
            1024,
            &[&[KEEPALIVE], &[b"{\"keep\":\"alive\"}\n{\"x\":1}\n"]],
        );
        assert_eq!(v, vec![json!({"x":1})]);
        assert_eq!(s.keepalives, 2);
        assert_eq!(s.empty_segments, 1);
        // Not a keepalive: extra keys.
        assert!(!is_keepalive(&json!({"keep":"alive","x":1})));
    }

    #[test]
    fn invalid_json_is_skipped_to_next_line() {
        let (v, s) = decode_segments(
            1024,
            &[
                &[b"not json\n{\"ok\":1}\n{broken\n{\"ok\":2}"],
                &[b"\xff\xfe garbage"],
                &[b""],
                &[b"{\"ok\":3}"],
            ],
        );
        assert_eq!(v, vec![json!({"ok":1}), json!({"ok":2}), json!({"ok":3})]);
        assert_eq!(s.invalid, 3);
        assert_eq!(s.empty_segments, 2);
    }

    #[test]
    fn truncated_document_at_segment_end_is_invalid() {
        let (v, s) = decode_segments(1024, &[&[b"{\"a\":"], &[b"{\"b\":1}"]]);
        assert_eq!(v, vec![json!({"b":1})]);
        assert_eq!(s.invalid, 1);
    }

    #[test]
    fn oversized_messages_are_skipped() {
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(100));
        // Complete in one chunk.
        let line = format!("{big}\n{{\"ok\":1}}\n");
        let (v, s) = decode_segments(50, &[&[line.as_bytes()]]);
        assert_eq!(v, vec![json!({"ok":1})]);
        assert_eq!(s.oversized, 1);
        // Incomplete and growing across chunks: skipped without buffering it all.
        let (a, b) = big.as_bytes().split_at(60);
        let (v, s) = decode_segments(50, &[&[a, b, b"\n{\"ok\":2}\n"]]);
        assert_eq!(v, vec![json!({"ok":2})]);
        assert_eq!(s.oversized, 1);
    }

    #[test]
    fn scalar_at_chunk_end_waits_for_more() {
        let mut d = JsonDecoder::new(64);
        let mut out = VecDeque::new();
        d.push(b"12", &mut out);
        assert!(out.is_empty());
        d.push(b"3\n", &mut out);
        assert_eq!(out.pop_front(), Some(json!(123)));
    }
}
