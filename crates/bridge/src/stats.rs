//! Counters shared between a running bridge and whoever watches it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a bridge's counters (either direction; fields that do not apply stay 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Segments started (publish: POSTs opened; subscribe: segments handed to the decoder).
    pub segments: u64,
    /// Segments completed without error.
    pub segments_ok: u64,
    /// Segments that failed part-way (write error, broken body, refused finish).
    pub segments_failed: u64,
    /// Segments skipped whole (publish: no POST could be opened; subscribe: wrong type).
    pub segments_skipped: u64,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Chunks moved.
    pub chunks: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) segments: AtomicU64,
    pub(crate) segments_ok: AtomicU64,
    pub(crate) segments_failed: AtomicU64,
    pub(crate) segments_skipped: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) chunks: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
}

/// A cheap, cloneable view of a bridge's counters. Create one, pass it to
/// [`publish_segments`](crate::publish_segments) or [`feed_output`](crate::feed_output), and
/// read it from anywhere.
#[derive(Clone, Debug, Default)]
pub struct StatsHandle(pub(crate) Arc<Counters>);

impl StatsHandle {
    /// Fresh zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters now.
    pub fn get(&self) -> BridgeStats {
        let c = &self.0;
        BridgeStats {
            segments: c.segments.load(Relaxed),
            segments_ok: c.segments_ok.load(Relaxed),
            segments_failed: c.segments_failed.load(Relaxed),
            segments_skipped: c.segments_skipped.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            chunks: c.chunks.load(Relaxed),
        }
    }
}
