//! [`JsonReader`]: reads JSON messages from a trickle channel, in either framing.

use std::collections::VecDeque;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::warn;

use crate::client::{
    SegmentReader, Subscriber, SubscriberConfig, SubscriberStats, SubscriberStatsHandle,
};
use crate::error::TrickleError;

use super::{JsonDecoder, JsonStats};

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
