//! # lpgw-bridge
//!
//! Moves media over trickle. The `media` crate turns pictures into MPEG-TS segment bytes and
//! back without any network code; the `trickle` crate moves bytes without knowing about video.
//! This crate joins the two, once, for every user (the devnet runner, the CLI, the service):
//!
//! - [`publish_segments`]: a [`lpgw_media::Publisher`]'s [`SegmentEvent`]s into a
//!   [`lpgw_trickle::client::Publisher`]: `Start` opens the next segment POST, `Data` streams
//!   into it, `End` finishes it. A failed segment costs that segment, not the stream, until the
//!   trickle publisher itself gives up.
//! - [`feed_output`]: a [`lpgw_trickle::client::Subscriber`]'s segments into a
//!   [`lpgw_media::SegmentInput`] (start, chunks, end), after checking each segment's content
//!   type ([`check_content_type`]).
//!
//! - [`MediaSession`]: both of them for one job's channels, started together under one
//!   token, with the way the channels are reached ([`ChannelAccess`]) decided in one place.
//!
//! Both run until their input ends or a [`CancellationToken`] fires, and count what they did
//! in shared counters ([`BridgeStats`]) that can be read while they run, and can report
//! each segment's timing ([`SegmentTiming`]) to an observer for latency histograms.
//!
//! Memory stays bounded on both paths: the publish side holds at most one segment writer and
//! a few finishing requests; the subscribe side hands every chunk straight to the media
//! input, whose own byte and segment bounds apply.
#![warn(missing_docs)]

mod content;
mod publish;
mod session;
mod stats;
mod subscribe;

pub use content::{MPEG_TS, check_content_type};
pub use lpgw_media::SegmentEvent;
/// The HTTP client that reaches a job's channels (its TLS policy and pins), as
/// [`ChannelAccess::Pinned`] takes it.
pub use lpgw_trickle::client::HttpClient;
pub use publish::{PublishOptions, publish_segments};
pub use session::{ChannelAccess, MediaSession, SessionChannels, SessionOptions, SessionTask};
pub use stats::{BridgeStats, StatsHandle};
pub use subscribe::{FeedOptions, feed_output};
pub use tokio_util::sync::CancellationToken;

use std::sync::Arc;
use std::time::Duration;

/// How long one segment took, reported once per segment to a [`SegmentObserver`] when the
/// segment is over (answered, ended or broken off).
///
/// Which durations are set depends on the direction; both are measured with a monotonic
/// clock in the bridge's own task, so they include its scheduling delays but no extra waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentTiming {
    /// The trickle sequence number of the segment.
    pub seq: u64,
    /// Payload bytes moved in this segment.
    pub bytes: u64,
    /// Whether the segment completed without error (publish: the server acknowledged the
    /// POST; subscribe: the body ended normally).
    pub ok: bool,
    /// Subscribe only: from the segment's response (headers) to its first body byte, i.e.
    /// how long the reader waited for the producer's first bytes. `None` on the publish side
    /// and for a segment that ended before any byte.
    pub first_byte: Option<Duration>,
    /// The segment's wall-clock length. Publish: from opening the segment to the server's
    /// answer (or to the failure). Subscribe: from the first body byte to the end of the body
    /// (from the response when no byte came).
    pub total: Duration,
    /// Publish only: from the end of the body (the last byte handed to the request) to the
    /// server's answer, i.e. the acknowledgement latency of the POST. `None` on the subscribe
    /// side and when the segment failed before or without an answer.
    pub ack: Option<Duration>,
}

/// Called with every segment's [`SegmentTiming`]; see [`PublishOptions::on_segment`] and
/// [`FeedOptions::on_segment`]. Runs on the bridge's tasks, so it must be quick (e.g. update
/// a histogram) and must not block.
pub type SegmentObserver = Arc<dyn Fn(SegmentTiming) + Send + Sync>;

/// Why a bridge stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The trickle side failed for good (publisher gave up, subscriber out of retries).
    #[error(transparent)]
    Trickle(#[from] lpgw_trickle::TrickleError),
    /// The media side refused input for a reason other than being closed (e.g. lagging under
    /// a fail policy).
    #[error(transparent)]
    Media(#[from] lpgw_media::MediaError),
    /// A segment arrived with a content type that is not MPEG-TS.
    #[error("segment {seq} has content type {content_type:?}, expected video/MP2T")]
    ContentType {
        /// The segment's sequence number.
        seq: u64,
        /// What the server sent.
        content_type: String,
    },
}
