//! Counters for both pipeline directions, shared between the worker thread and handles.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Declares an atomic counter block and its plain snapshot with identical field names.
macro_rules! counters {
    ($(#[$m:meta])* $snap:ident, $atomic:ident { $($(#[$fm:meta])* $f:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $snap {
            $($(#[$fm])* pub $f: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct $atomic {
            $(pub(crate) $f: AtomicU64,)*
        }

        impl $atomic {
            pub(crate) fn snapshot(&self) -> $snap {
                $snap { $($f: self.$f.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Publisher (frames → segments) counters. Times are totals of the stage thread's CPU in
    /// microseconds; divide by the matching frame count for a per-frame figure.
    PublishStats, PublishCounters {
        /// Frames handed to `push`.
        frames_in,
        /// Frames the encoder accepted.
        frames_encoded,
        /// Frames dropped because the input queue was full (oldest dropped first).
        dropped_queue_full,
        /// Frames dropped because they could not be decoded or converted (bad JPEG, bad size).
        dropped_invalid,
        /// Frames dropped because the encoder rejected them.
        dropped_encode_error,
        /// Timestamps bumped forward to keep them strictly increasing.
        pts_bumped,
        /// H.264 packets muxed.
        packets_out,
        /// MPEG-TS bytes emitted.
        bytes_out,
        /// Segments started.
        segments,
        /// Encoder re-creations after a resolution change.
        encoder_restarts,
        /// Frames waiting in the input queue right now.
        queue_depth,
        /// Highest input queue depth seen.
        queue_high_water,
        /// CPU time spent decoding JPEG / converting input to the encoder's planes.
        convert_us,
        /// CPU time spent in the H.264 encoder.
        encode_us,
    }
}

counters! {
    /// Output (segments → frames) counters. Times are totals in microseconds.
    OutputStats, OutputCounters {
        /// Segments whose start was received.
        segments_in,
        /// Segment bytes received.
        bytes_in,
        /// Whole or partial segments discarded by the lag policy.
        segments_skipped,
        /// Bytes discarded because the input buffer was over its byte bound.
        bytes_dropped_overflow,
        /// Access units demuxed.
        packets_demuxed,
        /// Access units dropped while waiting for a keyframe after damage or a skip.
        dropped_waiting_keyframe,
        /// Access units dropped because the transport stream around them was damaged.
        dropped_corrupt,
        /// Packets the decoder rejected.
        decode_errors,
        /// Decoded frames flagged corrupt by the decoder and dropped.
        dropped_corrupt_frames,
        /// Frames decoded.
        frames_decoded,
        /// Frames delivered to the consumer.
        frames_out,
        /// Continuity-counter gaps in the transport stream.
        ts_cc_errors,
        /// Bytes skipped to regain transport-stream sync.
        ts_skipped_bytes,
        /// Segments waiting in the input queue right now (including a partial one).
        queue_segments,
        /// Bytes waiting in the input queue right now.
        queue_bytes,
        /// CPU time spent in the video decoder.
        decode_us,
        /// CPU time spent converting and JPEG-encoding decoded frames.
        encode_out_us,
    }
}

/// CPU time of the calling thread so far. Stage timers use it rather than the wall clock so
/// a stage's figure is its own work, not the time other threads and processes held the core.
pub(crate) fn thread_cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Microseconds of this thread's CPU since `start` (a [`thread_cpu`] reading).
pub(crate) fn cpu_us_since(start: std::time::Duration) -> u64 {
    thread_cpu().saturating_sub(start).as_micros() as u64
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// Sets a gauge.
pub(crate) fn set(c: &AtomicU64, v: u64) {
    c.store(v, Relaxed);
}

/// Raises a high-water mark.
pub(crate) fn max(c: &AtomicU64, v: u64) {
    c.fetch_max(v, Relaxed);
}
