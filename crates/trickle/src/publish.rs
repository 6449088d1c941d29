//! The publisher's per-segment decisions as plain data (no I/O).
//!
//! Rules, after the reference publisher and gateway (trickle/trickle_publisher.go,
//! server/ai_live_video.go:138-195):
//! - a failed POST is repeated only if not a single body byte was handed to the transport
//!   (otherwise the server already holds a partial segment and a repeat would append to it);
//! - 404 means the channel is gone: terminal;
//! - `Lp-Trickle-Closed` on the reply means the channel was closed: terminal (EOS);
//! - `max_consecutive_failures` failed segments in a row: terminal.

use crate::error::TrickleError;

/// Tuning of a [`PublishState`].
#[derive(Clone, Debug)]
pub struct PublishConfig {
    /// Failed segments in a row after which the publisher gives up. Default 3.
    pub max_consecutive_failures: u32,
    /// POST attempts per segment while no body byte was sent. Default 2 (one repeat).
    pub max_attempts: u32,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            max_consecutive_failures: 3,
            max_attempts: 2,
        }
    }
}

/// How one POST attempt ended.
#[derive(Clone, Debug)]
pub enum PostOutcome {
    /// 200 without `Lp-Trickle-Closed`.
    Ok,
    /// `Lp-Trickle-Closed` was present (any status).
    Closed,
    /// 404.
    NotFound,
    /// Another status.
    Http(u16),
    /// The request failed below HTTP.
    Transport(TrickleError),
}

/// What to do with the segment after an attempt.
#[derive(Clone, Debug)]
pub enum Decision {
    /// The segment was published.
    Done,
    /// Send the same segment again (nothing of it reached the server).
    Retry,
    /// Give up on this segment; the publisher stays usable.
    SegmentFailed(TrickleError),
    /// Give up on the publisher: every later segment fails with this error.
    Terminal(TrickleError),
}

/// Publisher counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Segments handed out to writers.
    pub segments_started: u64,
    /// Segments the server acknowledged.
    pub segments_completed: u64,
    /// Segments given up on.
    pub segments_failed: u64,
    /// POST attempts made (including repeats).
    pub attempts: u64,
    /// POSTs repeated because nothing had been sent.
    pub retries: u64,
    /// Body bytes handed to the transport.
    pub bytes: u64,
    /// Current run of failed segments.
    pub consecutive_failures: u32,
    /// Whether the publisher is in its terminal state.
    pub terminal: bool,
}

/// Publisher decision state shared by all segments of one channel.
#[derive(Clone, Debug, Default)]
pub struct PublishState {
    config: PublishConfig,
    terminal: Option<TrickleError>,
    stats: PublishStats,
}

impl PublishState {
    /// A fresh state.
    pub fn new(config: PublishConfig) -> Self {
        Self {
            config,
            terminal: None,
            stats: PublishStats::default(),
        }
    }

    /// The terminal error, once reached.
    pub fn terminal(&self) -> Option<&TrickleError> {
        self.terminal.as_ref()
    }

    /// Counters so far.
    pub fn stats(&self) -> PublishStats {
        self.stats
    }

    /// Records that a writer took a new segment.
    pub fn handle_segment_started(&mut self) {
        self.stats.segments_started += 1;
    }

    /// Records body bytes handed to the transport.
    pub fn handle_bytes_sent(&mut self, n: u64) {
        self.stats.bytes += n;
    }

    /// Records that the caller stopped the publisher on purpose; later segments fail.
    pub fn handle_closed_locally(&mut self) {
        if self.terminal.is_none() {
            self.terminal = Some(TrickleError::Closed);
            self.stats.terminal = true;
        }
    }

    /// Records a terminal condition learnt outside a segment POST (e.g. from `GET /next`).
    pub fn handle_terminal(&mut self, err: TrickleError) -> TrickleError {
        if self.terminal.is_none() {
            self.terminal = Some(err.clone());
            self.stats.terminal = true;
        }
        self.terminal.clone().unwrap_or(err)
    }

    /// Decides after POST attempt number `attempt` (1-based) of a segment, of which
    /// `bytes_sent` body bytes reached the transport.
    pub fn handle_post(&mut self, attempt: u32, bytes_sent: u64, outcome: PostOutcome) -> Decision {
        self.stats.attempts += 1;
        if let Some(t) = &self.terminal {
            // Another segment already ended the channel; don't count this one twice.
            if !matches!(outcome, PostOutcome::Ok) {
                return Decision::Terminal(t.clone());
            }
        }
        let err = match outcome {
            PostOutcome::Ok => {
                self.stats.segments_completed += 1;
                self.stats.consecutive_failures = 0;
                return Decision::Done;
            }
            PostOutcome::Closed => {
                self.stats.segments_failed += 1;
                return self.make_terminal(TrickleError::EndOfStream);
            }
            PostOutcome::NotFound => {
                self.stats.segments_failed += 1;
                return self.make_terminal(TrickleError::StreamNotFound);
            }
            PostOutcome::Http(status) => TrickleError::Http { status },
            PostOutcome::Transport(e) => e,
        };
        if bytes_sent == 0 && attempt < self.config.max_attempts {
            self.stats.retries += 1;
            return Decision::Retry;
        }
        self.stats.segments_failed += 1;
        self.stats.consecutive_failures += 1;
        if self.stats.consecutive_failures >= self.config.max_consecutive_failures.max(1) {
            let failures = self.stats.consecutive_failures;
            return self.make_terminal(TrickleError::TerminalFailures { failures });
        }
        Decision::SegmentFailed(err)
    }

    fn make_terminal(&mut self, err: TrickleError) -> Decision {
        if self.terminal.is_none() {
            self.terminal = Some(err.clone());
            self.stats.terminal = true;
        }
        Decision::Terminal(self.terminal.clone().unwrap_or(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PublishState {
        PublishState::new(PublishConfig::default())
    }

    fn kind(d: &Decision) -> &'static str {
        match d {
            Decision::Done => "done",
            Decision::Retry => "retry",
            Decision::SegmentFailed(_) => "failed",
            Decision::Terminal(_) => "terminal",
        }
    }

    #[test]
    fn decision_table() {
        // (attempt, bytes_sent, outcome, expected)
        let cases: Vec<(u32, u64, PostOutcome, &str)> = vec![
            (1, 10, PostOutcome::Ok, "done"),
            (1, 0, PostOutcome::Http(500), "retry"),
            (2, 0, PostOutcome::Http(500), "failed"),
            (1, 5, PostOutcome::Http(500), "failed"),
            (1, 0, PostOutcome::Transport(TrickleError::Closed), "retry"),
            (1, 3, PostOutcome::Transport(TrickleError::Closed), "failed"),
            (1, 0, PostOutcome::NotFound, "terminal"),
            (1, 0, PostOutcome::Closed, "terminal"),
        ];
        for (i, (attempt, sent, outcome, want)) in cases.into_iter().enumerate() {
            let mut s = state();
            let d = s.handle_post(attempt, sent, outcome);
            assert_eq!(kind(&d), want, "case {i}");
        }
    }

    #[test]
    fn not_found_and_closed_map_to_errors() {
        let mut s = state();
        assert!(matches!(
            s.handle_post(1, 0, PostOutcome::NotFound),
            Decision::Terminal(TrickleError::StreamNotFound)
        ));
        // Later segments see the same terminal error, even if their own outcome differs.
        assert!(matches!(
            s.handle_post(1, 0, PostOutcome::Closed),
            Decision::Terminal(TrickleError::StreamNotFound)
        ));
        let mut s = state();
        assert!(matches!(
            s.handle_post(1, 7, PostOutcome::Closed),
            Decision::Terminal(TrickleError::EndOfStream)
        ));
        assert!(s.stats().terminal);
    }

    #[test]
    fn consecutive_failures_become_terminal_and_success_resets() {
        let mut s = state();
        assert_eq!(kind(&s.handle_post(1, 1, PostOutcome::Http(500))), "failed");
        assert_eq!(kind(&s.handle_post(1, 1, PostOutcome::Http(502))), "failed");
        assert_eq!(kind(&s.handle_post(1, 1, PostOutcome::Ok)), "done");
        assert_eq!(s.stats().consecutive_failures, 0);
        assert_eq!(kind(&s.handle_post(1, 1, PostOutcome::Http(500))), "failed");
        assert_eq!(kind(&s.handle_post(1, 1, PostOutcome::Http(500))), "failed");
        let d = s.handle_post(1, 1, PostOutcome::Http(500));
        assert!(matches!(
            d,
            Decision::Terminal(TrickleError::TerminalFailures { failures: 3 })
        ));
        assert!(s.terminal().is_some());
        let st = s.stats();
        assert_eq!(st.segments_completed, 1);
        assert_eq!(st.segments_failed, 5);
        assert_eq!(st.attempts, 6);
    }

    #[test]
    fn retry_counts_and_byte_stats() {
        let mut s = state();
        s.handle_segment_started();
        assert_eq!(kind(&s.handle_post(1, 0, PostOutcome::Http(503))), "retry");
        s.handle_bytes_sent(40);
        assert_eq!(kind(&s.handle_post(2, 40, PostOutcome::Ok)), "done");
        let st = s.stats();
        assert_eq!(
            (st.segments_started, st.retries, st.bytes, st.attempts),
            (1, 1, 40, 2)
        );
    }

    #[test]
    fn local_close_is_terminal() {
        let mut s = state();
        s.handle_closed_locally();
        assert!(matches!(s.terminal(), Some(TrickleError::Closed)));
    }
}
