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
//! Both run until their input ends or a [`CancellationToken`] fires, and count what they did
//! in shared counters ([`BridgeStats`]) that can be read while they run.
//!
//! Memory stays bounded on both paths: the publish side holds at most one segment writer and
//! a few finishing requests; the subscribe side hands every chunk straight to the media
//! input, whose own byte and segment bounds apply.
#![warn(missing_docs)]

mod content;
mod publish;
mod stats;
mod subscribe;

pub use content::{MPEG_TS, check_content_type};
pub use lpgw_media::SegmentEvent;
pub use publish::{PublishOptions, publish_segments};
pub use stats::{BridgeStats, StatsHandle};
pub use subscribe::{FeedOptions, feed_output};
pub use tokio_util::sync::CancellationToken;

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
