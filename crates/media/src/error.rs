//! The crate's error type.

/// Everything that can go wrong in the media pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// FFmpeg reported an error in a codec, scaler or initialisation call.
    #[error("ffmpeg {context}: {source}")]
    Ffmpeg {
        /// Which step failed (e.g. "open libx264").
        context: &'static str,
        /// FFmpeg's own error.
        #[source]
        source: ffmpeg_next::Error,
    },
    /// libjpeg-turbo refused a picture or failed to set up.
    #[error("jpeg: {0}")]
    Jpeg(String),
    /// A codec this pipeline needs is not compiled into the linked FFmpeg.
    #[error("codec not available in this FFmpeg build: {0}")]
    CodecUnavailable(&'static str),
    /// The caller handed in a frame whose size or plane lengths do not add up.
    #[error("invalid frame: {0}")]
    InvalidFrame(String),
    /// A decoder produced no picture for input that should have held one.
    #[error("no picture decoded from input")]
    NoPicture,
    /// The consumer fell behind and the lag policy says to fail.
    #[error("consumer lagging: {pending_segments} segments pending")]
    Lagging {
        /// Segments waiting when the policy tripped.
        pending_segments: usize,
    },
    /// The pipeline's worker thread has stopped (closed or failed).
    #[error("media pipeline closed")]
    Closed,
    /// Spawning the worker thread failed.
    #[error("spawn media thread: {0}")]
    Spawn(#[source] std::io::Error),
}

impl MediaError {
    pub(crate) fn ff(context: &'static str) -> impl FnOnce(ffmpeg_next::Error) -> Self {
        move |source| Self::Ffmpeg { context, source }
    }
}
