//! [`JsonWriter`]: one document per segment or newline-delimited, with keepalives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::client::{Publisher, PublisherConfig, PublisherStatsHandle, SegmentWriter};
use crate::error::TrickleError;
use crate::publish::PublishStats;
use crate::wire::MIME_JSON;

use super::KEEPALIVE;
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
