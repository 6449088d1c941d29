//! Wire-level vocabulary of the trickle protocol: header names, status codes and
//! sequence-number requests. Pure data, shared by the server and the clients.

use std::fmt;

/// Response header carrying the sequence number a request resolved to
/// (trickle_server.go: `Lp-Trickle-Seq`).
pub const HEADER_SEQ: &str = "Lp-Trickle-Seq";
/// Response header carrying the channel's next write sequence (the live edge).
pub const HEADER_LATEST: &str = "Lp-Trickle-Latest";
/// Response header present (value `terminated`) once the channel has been closed.
pub const HEADER_CLOSED: &str = "Lp-Trickle-Closed";
/// Request header on a POST: close every segment older than this one before writing.
pub const HEADER_RESET: &str = "Lp-Trickle-Reset";
/// Request header on a channel-create POST naming the channel's MIME type.
pub const HEADER_EXPECT_CONTENT: &str = "Expect-Content";
/// The value of [`HEADER_CLOSED`].
pub const CLOSED_VALUE: &str = "terminated";

/// Custom status for "segment not in the window" (trickle_server.go).
pub const STATUS_SEQ_NOT_FOUND: u16 = 470;

/// Number of segments a channel keeps (trickle_server.go: `maxSegmentsPerStream`).
pub const RING_SIZE: u64 = 5;

/// Default MIME type of media channels.
pub const MIME_MPEGTS: &str = "video/MP2T";
/// MIME type of JSON control/events channels.
pub const MIME_JSON: &str = "application/json";

/// Which segment a request addresses.
///
/// On the wire this is the last path element: `-1`, `-2` or a non-negative integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeqRequest {
    /// `-1`: the next segment to be written (the live edge; a GET waits for it).
    Next,
    /// `-2`: the most recently started segment (or 0 when nothing was written).
    Current,
    /// An explicit segment number.
    At(u64),
}

impl SeqRequest {
    /// Parses the path element of a segment URL.
    ///
    /// Returns `None` for anything that is not `-1`, `-2` or a non-negative `i64`
    /// (go-livepeer panics on other negative values; we reject them).
    pub fn parse(s: &str) -> Option<Self> {
        let n: i64 = s.parse().ok()?;
        Self::from_i64(n)
    }

    /// Converts a numeric sequence as used by the reference clients.
    pub fn from_i64(n: i64) -> Option<Self> {
        match n {
            -1 => Some(Self::Next),
            -2 => Some(Self::Current),
            n if n >= 0 => Some(Self::At(n as u64)),
            _ => None,
        }
    }

    /// The numeric wire form.
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Next => -1,
            Self::Current => -2,
            // Sequence numbers never approach i64::MAX in practice; saturate rather than wrap.
            Self::At(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }
    }
}

impl fmt::Display for SeqRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_i64())
    }
}

/// Parses a numeric header value such as [`HEADER_SEQ`] or [`HEADER_LATEST`].
pub fn parse_seq_header(value: Option<&http::HeaderValue>) -> Option<i64> {
    value?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_special_and_explicit_seqs() {
        assert_eq!(SeqRequest::parse("-1"), Some(SeqRequest::Next));
        assert_eq!(SeqRequest::parse("-2"), Some(SeqRequest::Current));
        assert_eq!(SeqRequest::parse("0"), Some(SeqRequest::At(0)));
        assert_eq!(SeqRequest::parse("42"), Some(SeqRequest::At(42)));
        assert_eq!(SeqRequest::parse("-3"), None);
        assert_eq!(SeqRequest::parse("abc"), None);
        assert_eq!(SeqRequest::parse("99999999999999999999999"), None);
        assert_eq!(SeqRequest::parse(""), None);
    }

    #[test]
    fn round_trips_through_i64() {
        for r in [SeqRequest::Next, SeqRequest::Current, SeqRequest::At(7)] {
            assert_eq!(SeqRequest::from_i64(r.as_i64()), Some(r));
        }
    }
}
