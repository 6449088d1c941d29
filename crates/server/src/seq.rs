//! Frame sequence numbers of `POST /stream/{id}/publish?seq=N`.
//!
//! Clients number their frames, but concurrent HTTP posts can arrive out of order. Feeding
//! a frame older than one already accepted would make the stream go backwards in time, so
//! such a frame is skipped (answered 200 with `"status": "skipped"`, and counted).

/// Why a `seq` query value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SeqError {
    /// Not a non-negative decimal integer that fits in 64 bits.
    #[error("seq must be a non-negative integer, got {0:?}")]
    Invalid(String),
    /// Named more than once.
    #[error("seq is given more than once")]
    Repeated,
}

/// The `seq` query parameter: `None` when absent.
pub(crate) fn parse_seq(raw_query: Option<&str>) -> Result<Option<u64>, SeqError> {
    let Some(q) = raw_query else {
        return Ok(None);
    };
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        if k != "seq" {
            continue;
        }
        if found.is_some() {
            return Err(SeqError::Repeated);
        }
        // Digits only: `u64::from_str` would also take a leading `+`.
        let n = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            v.parse::<u64>().ok()
        } else {
            None
        };
        let shown: String = v.chars().take(32).collect();
        found = Some(n.ok_or(SeqError::Invalid(shown))?);
    }
    Ok(found)
}

/// What to do with a numbered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqDecision {
    /// Newer than every frame accepted so far: feed it.
    Accept,
    /// Not newer than `last`, the highest accepted: skip it.
    Stale {
        /// The highest sequence number accepted so far.
        last: u64,
    },
}

/// The highest sequence number accepted for one stream. Frames without a number do not
/// pass through it.
#[derive(Debug, Default, Clone)]
pub(crate) struct SeqGate {
    last: Option<u64>,
}

impl SeqGate {
    /// Decides on frame `seq` and, when accepted, records it: check and update in one step,
    /// so callers holding the gate under a lock get exactly one winner per number.
    pub(crate) fn offer(&mut self, seq: u64) -> SeqDecision {
        match self.last {
            Some(last) if seq <= last => SeqDecision::Stale { last },
            _ => {
                self.last = Some(seq);
                SeqDecision::Accept
            }
        }
    }

    /// The highest sequence number accepted so far.
    pub(crate) fn last(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_frame_is_accepted_whatever_its_number() {
        let mut g = SeqGate::default();
        assert_eq!(g.offer(0), SeqDecision::Accept);
        let mut g = SeqGate::default();
        assert_eq!(g.offer(u64::MAX), SeqDecision::Accept);
        assert_eq!(g.last(), Some(u64::MAX));
    }

    #[test]
    fn older_and_duplicate_frames_are_stale() {
        let mut g = SeqGate::default();
        assert_eq!(g.offer(5), SeqDecision::Accept);
        assert_eq!(g.offer(5), SeqDecision::Stale { last: 5 });
        assert_eq!(g.offer(3), SeqDecision::Stale { last: 5 });
        // Gaps are fine: frames may be lost or skipped by the client.
        assert_eq!(g.offer(9), SeqDecision::Accept);
        assert_eq!(g.offer(6), SeqDecision::Stale { last: 9 });
        assert_eq!(g.last(), Some(9));
    }

    #[test]
    fn parses_seq_strictly() {
        assert_eq!(parse_seq(None), Ok(None));
        assert_eq!(parse_seq(Some("")), Ok(None));
        assert_eq!(parse_seq(Some("other=1")), Ok(None));
        assert_eq!(parse_seq(Some("seq=0")), Ok(Some(0)));
        assert_eq!(parse_seq(Some("a=b&seq=42")), Ok(Some(42)));
        assert_eq!(
            parse_seq(Some("seq=18446744073709551615")),
            Ok(Some(u64::MAX))
        );
        for bad in [
            "seq=",
            "seq=-1",
            "seq=+1",
            "seq=1.5",
            "seq=abc",
            "seq=%20",
            "seq=18446744073709551616",
            "seq=0x10",
        ] {
            assert!(
                matches!(parse_seq(Some(bad)), Err(SeqError::Invalid(_))),
                "{bad}"
            );
        }
        assert_eq!(parse_seq(Some("seq=1&seq=2")), Err(SeqError::Repeated));
    }
}
