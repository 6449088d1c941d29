//! One input per job: which source may feed a job's encoder right now.
//!
//! A job takes video from one source at a time — JPEG frames posted over HTTP, or a
//! WebSocket — and soon MPEG-TS over trickle and WHIP. Two sources feeding one encoder
//! would interleave two cameras into one stream, so the first source to send a frame holds
//! the input, and another source is refused (409) while the holder is active. A holder is
//! active while it keeps sending: one that has sent nothing for [`IDLE`] (or, for a
//! connection, that closed) gives the input up. This is a pure decision over
//! caller-supplied instants, so it is tested without sockets or clocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a source may send nothing and still hold a job's input.
pub(crate) const IDLE: Duration = Duration::from_secs(2);

/// A source of input frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputSource {
    /// JPEG frames posted to `/stream/{id}/publish`; every post is the same source.
    Http,
    /// One WebSocket connection, by its number ([`InputSource::socket`]).
    Socket(u64),
}

impl InputSource {
    /// A new WebSocket connection's source, numbered uniquely for the process.
    pub(crate) fn socket() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self::Socket(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The source's kind as status answers name it: `http` or `websocket`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Socket(_) => "websocket",
        }
    }

    /// The source's name, for error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Http => "HTTP publish",
            Self::Socket(_) => "a WebSocket",
        }
    }
}

/// The answer to a frame from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The source holds the input: feed the frame.
    Granted,
    /// Another source holds it and is active.
    Busy(InputSource),
}

/// Who holds a job's input, and since when it last sent.
#[derive(Debug, Default)]
pub(crate) struct InputArbiter {
    holder: Option<(InputSource, Instant)>,
}

impl InputArbiter {
    /// Decides a frame from `src` arriving at `now`, taking the input when it is free or
    /// its holder has gone quiet.
    pub(crate) fn claim(&mut self, src: InputSource, now: Instant) -> Claim {
        match self.holder {
            Some((h, last)) if h != src && now.saturating_duration_since(last) < IDLE => {
                Claim::Busy(h)
            }
            _ => {
                self.holder = Some((src, now));
                Claim::Granted
            }
        }
    }

    /// `src` is gone (its connection closed): the input is free at once.
    pub(crate) fn release(&mut self, src: InputSource) {
        if self.holder.is_some_and(|(h, _)| h == src) {
            self.holder = None;
        }
    }

    /// The source holding the input at `now`, if it is still active.
    pub(crate) fn holder(&self, now: Instant) -> Option<InputSource> {
        self.holder
            .filter(|(_, last)| now.saturating_duration_since(*last) < IDLE)
            .map(|(h, _)| h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_at_a_time_until_it_goes_quiet_or_closes() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let (a, b) = (InputSource::Socket(1), InputSource::Socket(2));
        let http = InputSource::Http;
        let mut arb = InputArbiter::default();
        // (source, at ms, expected)
        let steps: [(InputSource, u64, Claim); 9] = [
            (a, 0, Claim::Granted),
            (a, 40, Claim::Granted),
            (http, 80, Claim::Busy(a)),
            (b, 1_000, Claim::Busy(a)),
            // `a` last sent at 40 ms: at 2 039 ms it still holds, at 2 040 it is quiet.
            (http, 2_039, Claim::Busy(a)),
            (http, 2_040, Claim::Granted),
            (a, 2_100, Claim::Busy(http)),
            (http, 2_200, Claim::Granted),
            (b, 4_199, Claim::Busy(http)),
        ];
        for (src, at, want) in steps {
            assert_eq!(arb.claim(src, ms(at)), want, "{src:?} at {at} ms");
        }
        assert_eq!(arb.holder(ms(4_199)), Some(http));
        assert_eq!(arb.holder(ms(4_200)), None);
    }

    #[test]
    fn a_closed_connection_frees_the_input_and_only_the_holder_can_free_it() {
        let t0 = Instant::now();
        let (a, b) = (InputSource::socket(), InputSource::socket());
        assert_ne!(a, b, "two connections share a number");
        let mut arb = InputArbiter::default();
        assert_eq!(arb.claim(a, t0), Claim::Granted);
        arb.release(b);
        assert_eq!(
            arb.claim(b, t0),
            Claim::Busy(a),
            "a non-holder freed the input"
        );
        arb.release(a);
        assert_eq!(arb.holder(t0), None);
        assert_eq!(arb.claim(b, t0), Claim::Granted);
    }
}
