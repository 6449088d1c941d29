//! The input side of the output pipeline: a bounded buffer of segment events shared with
//! the decode worker, where the lag policy and the byte bound are applied.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;
use tracing::debug;

use super::{LagPolicy, OutputConfig};
use crate::error::MediaError;
use crate::publish::SegmentEvent;
use crate::stats::{self, OutputCounters, OutputStats};

#[derive(Debug)]
pub(super) enum Item {
    Start(Option<u64>),
    Data(Bytes),
    End,
}

#[derive(Debug, Default)]
pub(super) struct InState {
    pub(super) items: VecDeque<Item>,
    pub(super) bytes: usize,
    /// `Start` items queued (segments not yet begun by the worker).
    pub(super) starts: usize,
    /// Tell the worker to abandon its current segment.
    pub(super) skip_current: bool,
    /// Drop incoming data until the next start (after a byte overflow).
    pub(super) discarding: bool,
    pub(super) closed: bool,
    pub(super) failed: Option<usize>,
}

#[derive(Debug)]
pub(super) struct Inbox {
    pub(super) state: Mutex<InState>,
    pub(super) ready: Condvar,
}

impl Inbox {
    pub(super) fn lock(&self) -> MutexGuard<'_, InState> {
        // Poisoning only means a panic elsewhere; the queue itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads an output pipeline's counters from anywhere ([`SegmentInput::stats_reader`]).
#[derive(Clone, Debug)]
pub struct OutputStatsReader(Arc<OutputCounters>);

impl OutputStatsReader {
    /// A snapshot of the counters.
    pub fn get(&self) -> OutputStats {
        self.0.snapshot()
    }
}

/// Feeds segment bytes to the output worker. Cheap to call from async code: every method
/// only takes a short lock and never waits for the decoder.
#[derive(Debug)]
pub struct SegmentInput {
    pub(super) inbox: Arc<Inbox>,
    pub(super) stats: Arc<OutputCounters>,
    pub(super) cfg: OutputConfig,
}

impl SegmentInput {
    /// Starts a new segment, optionally tagged with its trickle sequence number. Applies the
    /// lag policy when too many segments are already waiting.
    pub fn start_segment(&self, seq: Option<u64>) -> Result<(), MediaError> {
        let mut s = self.inbox.lock();
        check_open(&s)?;
        stats::add(&self.stats.segments_in, 1);
        if s.starts >= self.cfg.max_pending_segments {
            match self.cfg.lag {
                LagPolicy::SkipToNewest => {
                    let skipped = s.starts as u64 + 1;
                    debug!(skipped, "consumer lagging, skipping to newest segment");
                    stats::add(&self.stats.segments_skipped, skipped);
                    s.items.clear();
                    s.bytes = 0;
                    s.starts = 0;
                    s.skip_current = true;
                }
                LagPolicy::Fail => {
                    let pending = s.starts;
                    s.failed = Some(pending);
                    drop(s);
                    self.inbox.ready.notify_all();
                    return Err(MediaError::Lagging {
                        pending_segments: pending,
                    });
                }
            }
        }
        s.discarding = false;
        s.starts += 1;
        s.items.push_back(Item::Start(seq));
        self.publish_depth(&s);
        drop(s);
        self.inbox.ready.notify_one();
        Ok(())
    }

    /// Appends bytes to the current segment. Bytes beyond the buffer bound are dropped
    /// (counted) until the next segment starts.
    pub fn push(&self, data: Bytes) -> Result<(), MediaError> {
        let mut s = self.inbox.lock();
        check_open(&s)?;
        stats::add(&self.stats.bytes_in, data.len() as u64);
        if s.discarding || s.bytes + data.len() > self.cfg.max_buffered_bytes {
            s.discarding = true;
            stats::add(&self.stats.bytes_dropped_overflow, data.len() as u64);
            return Ok(());
        }
        s.bytes += data.len();
        s.items.push_back(Item::Data(data));
        self.publish_depth(&s);
        drop(s);
        self.inbox.ready.notify_one();
        Ok(())
    }

    /// Marks the current segment complete (a truncated segment simply ends early).
    pub fn end_segment(&self) -> Result<(), MediaError> {
        let mut s = self.inbox.lock();
        check_open(&s)?;
        s.items.push_back(Item::End);
        drop(s);
        self.inbox.ready.notify_one();
        Ok(())
    }

    /// Applies one publisher-style event (handy to wire a publisher straight to an output).
    pub fn send(&self, ev: SegmentEvent) -> Result<(), MediaError> {
        match ev {
            SegmentEvent::Start { seq_hint } => self.start_segment(Some(seq_hint)),
            SegmentEvent::Data(b) => self.push(b),
            SegmentEvent::End => self.end_segment(),
        }
    }

    /// No more input: the worker decodes what is queued, flushes and exits.
    pub fn close(&self) {
        self.inbox.lock().closed = true;
        self.inbox.ready.notify_all();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> OutputStats {
        self.stats.snapshot()
    }

    /// A reader of the same counters that stays usable after this input is handed to a
    /// feeding task (a media session).
    pub fn stats_reader(&self) -> OutputStatsReader {
        OutputStatsReader(self.stats.clone())
    }

    fn publish_depth(&self, s: &InState) {
        stats::set(&self.stats.queue_segments, s.starts as u64);
        stats::set(&self.stats.queue_bytes, s.bytes as u64);
    }
}

impl Drop for SegmentInput {
    fn drop(&mut self) {
        self.close();
    }
}

fn check_open(s: &InState) -> Result<(), MediaError> {
    if let Some(pending_segments) = s.failed {
        return Err(MediaError::Lagging { pending_segments });
    }
    if s.closed {
        return Err(MediaError::Closed);
    }
    Ok(())
}
