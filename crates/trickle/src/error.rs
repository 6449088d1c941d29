//! Errors of the trickle clients ([`Publisher`](crate::client::Publisher),
//! [`Subscriber`](crate::client::Subscriber) and the JSON channels).

use std::fmt;
use std::sync::Arc;

/// An error from a trickle client.
///
/// Expected protocol outcomes that a caller normally does not act on (a 470 that the subscriber
/// follows, the end of a stream) are handled inside the clients; they appear here only where
/// they end an operation.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrickleError {
    /// The channel does not exist on the server (HTTP 404): it was never created, was deleted,
    /// or was swept as idle.
    #[error("trickle channel not found")]
    StreamNotFound,
    /// The server reported the channel closed (`Lp-Trickle-Closed`).
    #[error("trickle channel closed (end of stream)")]
    EndOfStream,
    /// The requested segment is outside the server's window (HTTP 470).
    #[error("trickle segment {seq} not available (latest {latest})")]
    SequenceNonexistent {
        /// The segment that was requested.
        seq: i64,
        /// The channel's next write sequence as reported by the server.
        latest: i64,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("trickle server answered HTTP {status}")]
    Http {
        /// The HTTP status code.
        status: u16,
    },
    /// The request failed below HTTP (connect, reset, TLS, body stream).
    #[error("trickle transport error: {0}")]
    Transport(#[from] TransportError),
    /// A segment exceeded the configured byte limit.
    #[error("trickle segment {seq} exceeds the limit of {limit} bytes")]
    SegmentTooLarge {
        /// The segment's sequence number.
        seq: u64,
        /// The configured limit in bytes.
        limit: u64,
    },
    /// The publisher gave up after too many consecutive failed segments.
    #[error("trickle publisher failed {failures} segments in a row")]
    TerminalFailures {
        /// Number of consecutive failed segments.
        failures: u32,
    },
    /// The subscriber gave up after too many consecutive failed requests.
    #[error("trickle subscriber gave up after {retries} retries: {last}")]
    RetriesExhausted {
        /// Number of retries made.
        retries: u32,
        /// The last failure.
        last: Box<Self>,
    },
    /// A segment write did not drain into the HTTP request within the write timeout.
    #[error("trickle segment {seq} write stalled")]
    WriteStalled {
        /// The segment's sequence number.
        seq: u64,
    },
    /// A server response violated the protocol (e.g. a missing or malformed header).
    #[error("trickle protocol violation: {0}")]
    Protocol(&'static str),
    /// The URL given to a client could not be used.
    #[error("invalid trickle url: {0}")]
    InvalidUrl(String),
    /// The client was closed or its background task ended.
    #[error("trickle client closed")]
    Closed,
}

impl TrickleError {
    /// Whether repeating the same request may succeed.
    ///
    /// Transport errors, 5xx and 470 are transient; a missing or closed channel, 4xx and local
    /// limits are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) | Self::SequenceNonexistent { .. } | Self::WriteStalled { .. } => {
                true
            }
            Self::Http { status } => *status >= 500 || *status == 408 || *status == 429,
            Self::StreamNotFound
            | Self::EndOfStream
            | Self::SegmentTooLarge { .. }
            | Self::TerminalFailures { .. }
            | Self::RetriesExhausted { .. }
            | Self::Protocol(_)
            | Self::InvalidUrl(_)
            | Self::Closed => false,
        }
    }

    /// Whether this error means the channel is gone for good (404 or closed).
    pub fn is_end_of_channel(&self) -> bool {
        matches!(self, Self::StreamNotFound | Self::EndOfStream)
    }
}

/// An opaque transport failure (connection refused, reset, TLS, broken body stream).
///
/// Cheap to clone so one failure can be reported to several waiters.
#[derive(Clone)]
pub struct TransportError(Arc<reqwest::Error>);

impl TransportError {
    /// Whether the failure was a timeout.
    pub fn is_timeout(&self) -> bool {
        self.0.is_timeout()
    }

    /// Whether the failure happened while connecting.
    pub fn is_connect(&self) -> bool {
        self.0.is_connect()
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TransportError").field(&*self.0).finish()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL was stripped on construction: trickle URLs are bearer capabilities. The
        // whole cause chain is written: the reason a TLS handshake failed (a certificate
        // that does not match its pin) sits several levels down.
        let mut text = self.0.to_string();
        let mut src = std::error::Error::source(&*self.0);
        while let Some(e) = src {
            let part = e.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            src = e.source();
        }
        f.write_str(&text)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

impl From<reqwest::Error> for TransportError {
    fn from(e: reqwest::Error) -> Self {
        Self(Arc::new(e.without_url()))
    }
}

impl From<reqwest::Error> for TrickleError {
    fn from(e: reqwest::Error) -> Self {
        Self::Transport(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        assert!(TrickleError::Http { status: 503 }.is_retryable());
        assert!(TrickleError::Http { status: 429 }.is_retryable());
        assert!(!TrickleError::Http { status: 400 }.is_retryable());
        assert!(TrickleError::SequenceNonexistent { seq: 3, latest: 9 }.is_retryable());
        assert!(!TrickleError::StreamNotFound.is_retryable());
        assert!(!TrickleError::EndOfStream.is_retryable());
        assert!(!TrickleError::TerminalFailures { failures: 3 }.is_retryable());
        assert!(TrickleError::EndOfStream.is_end_of_channel());
        assert!(!TrickleError::Closed.is_end_of_channel());
    }
}
