//! The subscriber's edge-following decisions as plain data (no I/O, no clock).
//!
//! A [`Follower`] tells the caller which segment to request next and when, and learns from
//! each reply's [`Outcome`]. It mirrors the reference gateway's read loop
//! (server/ai_live_video.go:291-313, 747-769): after a segment the next request is
//! `Lp-Trickle-Seq + 1`; a 470 moves to the server's live edge; EOS or 404 stop; other
//! failures are retried a bounded number of times with a pause in between.
//!
//! Drive it like this: call [`Follower::poll_action`] with the current time; on
//! [`Action::Get`] issue (or reuse a preconnected) request and feed its result to
//! [`Follower::handle`]; on [`Action::Wait`] sleep until the instant; on [`Action::Stop`]
//! stop. `poll_action` is idempotent until the next `handle`.

use std::time::{Duration, Instant};

use crate::wire::SeqRequest;

/// Tuning of a [`Follower`].
#[derive(Clone, Debug)]
pub struct FollowConfig {
    /// Consecutive failed requests tolerated before giving up. Default 5
    /// (server/ai_live_video.go: `maxRetries`).
    pub max_retries: u32,
    /// Pause before the first retry. Default 300 ms (server/ai_live_video.go: `retryPause`).
    pub retry_delay: Duration,
    /// Upper bound of the pause; each retry doubles the pause up to this. Default 300 ms,
    /// which gives the reference's constant pause.
    pub max_retry_delay: Duration,
    /// Pause before moving back to the live edge when the requested segment was *ahead* of
    /// it (the server's channel restarted at a lower sequence). Default 300 ms.
    pub ahead_delay: Duration,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            max_retries: 5,
            retry_delay: Duration::from_millis(300),
            max_retry_delay: Duration::from_millis(300),
            ahead_delay: Duration::from_millis(300),
        }
    }
}

/// The result of one subscribe request, as far as sequencing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with a segment; `seq` is the `Lp-Trickle-Seq` header when present.
    Segment {
        /// The segment's sequence number from `Lp-Trickle-Seq`.
        seq: Option<u64>,
    },
    /// `Lp-Trickle-Closed` was present: the channel is finished.
    Closed,
    /// 404: the channel does not exist (any more).
    NotFound,
    /// 470: the requested segment is outside the window.
    SeqNonexistent {
        /// The requested sequence (`Lp-Trickle-Seq` of the 470 reply).
        seq: i64,
        /// The channel's next write sequence (`Lp-Trickle-Latest`).
        latest: i64,
    },
    /// Any other failure: transport error, 5xx, unexpected status. Retried.
    Failed,
}

/// What the caller should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Request this segment now.
    Get(SeqRequest),
    /// Do nothing until this instant, then poll again.
    Wait(Instant),
    /// Stop following.
    Stop(StopReason),
}

/// Why a [`Follower`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The channel was closed by its publisher or deleted while we waited.
    EndOfStream,
    /// The channel does not exist.
    NotFound,
    /// `max_retries` consecutive requests failed.
    RetriesExhausted,
}

/// Counters kept by a [`Follower`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowStats {
    /// Segments whose headers arrived.
    pub segments: u64,
    /// Retries after failures (including 470s).
    pub retries: u64,
    /// Moves to the live edge after a 470.
    pub jumps: u64,
}

/// Subscriber sequencing state machine. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Follower {
    config: FollowConfig,
    next: SeqRequest,
    not_before: Option<Instant>,
    stopped: Option<StopReason>,
    consecutive_failures: u32,
    stats: FollowStats,
}

impl Follower {
    /// Starts following at `start` (`Next` = live edge, `Current` = newest, or `At(n)`).
    pub fn new(start: SeqRequest, config: FollowConfig) -> Self {
        Self {
            config,
            next: start,
            not_before: None,
            stopped: None,
            consecutive_failures: 0,
            stats: FollowStats::default(),
        }
    }

    /// The request the follower will make next (ignores any pending wait).
    pub fn next_request(&self) -> SeqRequest {
        self.next
    }

    /// Counters so far.
    pub fn stats(&self) -> FollowStats {
        self.stats
    }

    /// Consecutive failures since the last segment.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Moves the next request to `seq`, clearing any pending wait (`SetSeq` in the reference).
    pub fn set_next(&mut self, seq: SeqRequest) {
        if self.stopped.is_none() {
            self.next = seq;
            self.not_before = None;
        }
    }

    /// What to do at `now`.
    pub fn poll_action(&self, now: Instant) -> Action {
        if let Some(reason) = self.stopped {
            return Action::Stop(reason);
        }
        match self.not_before {
            Some(t) if t > now => Action::Wait(t),
            _ => Action::Get(self.next),
        }
    }

    /// Feeds the outcome of the request last returned by [`poll_action`](Self::poll_action).
    pub fn handle(&mut self, now: Instant, outcome: Outcome) {
        if self.stopped.is_some() {
            return;
        }
        self.not_before = None;
        match outcome {
            Outcome::Segment { seq } => {
                self.consecutive_failures = 0;
                self.stats.segments += 1;
                // Without the header only an explicit request tells us where we are; for -1/-2
                // asking again for the live edge is the best we can do.
                match seq.or(match self.next {
                    SeqRequest::At(n) => Some(n),
                    _ => None,
                }) {
                    Some(n) => self.next = SeqRequest::At(n.saturating_add(1)),
                    None => self.next = SeqRequest::Next,
                }
            }
            Outcome::Closed => self.stopped = Some(StopReason::EndOfStream),
            Outcome::NotFound => self.stopped = Some(StopReason::NotFound),
            Outcome::SeqNonexistent { seq, latest } => {
                if !self.count_failure() {
                    return;
                }
                self.stats.jumps += 1;
                let target = u64::try_from(latest).map_or(SeqRequest::Next, SeqRequest::At);
                self.next = target;
                // Behind the edge: the data we wanted is gone, jump at once. Ahead of it: the
                // channel restarted lower or we raced its creation; give it a moment.
                if seq >= latest {
                    self.not_before = Some(now + self.config.ahead_delay);
                }
            }
            Outcome::Failed => {
                if !self.count_failure() {
                    return;
                }
                let shift = (self.consecutive_failures - 1).min(16);
                let delay = self
                    .config
                    .retry_delay
                    .saturating_mul(1u32 << shift)
                    .min(self.config.max_retry_delay.max(self.config.retry_delay));
                self.not_before = Some(now + delay);
            }
        }
    }

    /// Records a failed request; returns false (and stops) once the budget is spent.
    fn count_failure(&mut self) -> bool {
        self.consecutive_failures += 1;
        if self.consecutive_failures > self.config.max_retries {
            self.stopped = Some(StopReason::RetriesExhausted);
            return false;
        }
        self.stats.retries += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> FollowConfig {
        FollowConfig {
            max_retries: 3,
            retry_delay: 100 * MS,
            max_retry_delay: 250 * MS,
            ahead_delay: 50 * MS,
        }
    }

    /// One step of a scenario: feed an outcome at `at` ms, then expect an action at `poll` ms.
    struct Step {
        at: u64,
        outcome: Outcome,
        poll: u64,
        expect: Expect,
    }

    #[derive(Debug, PartialEq)]
    enum Expect {
        Get(SeqRequest),
        WaitUntil(u64),
        Stop(StopReason),
    }

    fn run(start: SeqRequest, steps: &[Step]) -> Follower {
        let t0 = Instant::now();
        let mut f = Follower::new(start, cfg());
        assert_eq!(f.poll_action(t0), Action::Get(start));
        for (i, s) in steps.iter().enumerate() {
            f.handle(t0 + Duration::from_millis(s.at), s.outcome);
            let got = match f.poll_action(t0 + Duration::from_millis(s.poll)) {
                Action::Get(r) => Expect::Get(r),
                Action::Wait(t) => Expect::WaitUntil((t - t0).as_millis() as u64),
                Action::Stop(r) => Expect::Stop(r),
            };
            assert_eq!(got, s.expect, "step {i}");
        }
        f
    }

    fn step(at: u64, outcome: Outcome, poll: u64, expect: Expect) -> Step {
        Step {
            at,
            outcome,
            poll,
            expect,
        }
    }

    use Expect::*;
    use SeqRequest::{At, Current, Next};

    #[test]
    fn follows_seq_header_from_each_start() {
        for start in [Next, Current, At(7)] {
            let f = run(
                start,
                &[
                    step(0, Outcome::Segment { seq: Some(7) }, 0, Get(At(8))),
                    step(0, Outcome::Segment { seq: Some(8) }, 0, Get(At(9))),
                ],
            );
            assert_eq!(f.stats().segments, 2);
        }
    }

    #[test]
    fn missing_seq_header_falls_back_to_request() {
        run(
            At(4),
            &[step(0, Outcome::Segment { seq: None }, 0, Get(At(5)))],
        );
        run(
            Next,
            &[step(0, Outcome::Segment { seq: None }, 0, Get(Next))],
        );
    }

    #[test]
    fn behind_the_edge_jumps_immediately() {
        let f = run(
            At(2),
            &[
                step(
                    0,
                    Outcome::SeqNonexistent { seq: 2, latest: 10 },
                    0,
                    Get(At(10)),
                ),
                step(5, Outcome::Segment { seq: Some(10) }, 5, Get(At(11))),
            ],
        );
        assert_eq!(f.stats().jumps, 1);
        assert_eq!(f.consecutive_failures(), 0);
    }

    #[test]
    fn ahead_of_the_edge_waits_then_moves_to_edge() {
        run(
            At(20),
            &[
                step(
                    10,
                    Outcome::SeqNonexistent { seq: 20, latest: 3 },
                    10,
                    WaitUntil(60),
                ),
                // Polling after the wait yields the edge.
                step(
                    60,
                    Outcome::SeqNonexistent { seq: 3, latest: 3 },
                    200,
                    Get(At(3)),
                ),
            ],
        );
    }

    #[test]
    fn eos_and_not_found_stop_cleanly() {
        run(
            At(1),
            &[step(0, Outcome::Closed, 0, Stop(StopReason::EndOfStream))],
        );
        run(
            Next,
            &[step(0, Outcome::NotFound, 0, Stop(StopReason::NotFound))],
        );
        // Stopping is sticky.
        let mut f = Follower::new(Next, cfg());
        f.handle(Instant::now(), Outcome::Closed);
        f.handle(Instant::now(), Outcome::Segment { seq: Some(1) });
        assert_eq!(
            f.poll_action(Instant::now()),
            Action::Stop(StopReason::EndOfStream)
        );
    }

    #[test]
    fn failures_back_off_and_exhaust() {
        let f = run(
            At(5),
            &[
                step(0, Outcome::Failed, 0, WaitUntil(100)),
                step(100, Outcome::Failed, 100, WaitUntil(300)),
                // Capped at max_retry_delay.
                step(300, Outcome::Failed, 550, Get(At(5))),
                step(
                    550,
                    Outcome::Failed,
                    550,
                    Stop(StopReason::RetriesExhausted),
                ),
            ],
        );
        assert_eq!(f.stats().retries, 3);
    }

    #[test]
    fn success_resets_the_retry_budget() {
        run(
            At(5),
            &[
                step(0, Outcome::Failed, 0, WaitUntil(100)),
                step(100, Outcome::Failed, 100, WaitUntil(300)),
                step(300, Outcome::Failed, 300, WaitUntil(550)),
                step(550, Outcome::Segment { seq: Some(5) }, 550, Get(At(6))),
                step(600, Outcome::Failed, 600, WaitUntil(700)),
            ],
        );
    }

    #[test]
    fn repeated_470s_are_bounded() {
        let mut f = Follower::new(At(0), cfg());
        let now = Instant::now();
        for _ in 0..3 {
            f.handle(now, Outcome::SeqNonexistent { seq: 0, latest: 9 });
            assert_eq!(f.poll_action(now), Action::Get(At(9)));
        }
        f.handle(now, Outcome::SeqNonexistent { seq: 9, latest: 20 });
        assert_eq!(
            f.poll_action(now),
            Action::Stop(StopReason::RetriesExhausted)
        );
    }

    #[test]
    fn set_next_overrides_wait() {
        let now = Instant::now();
        let mut f = Follower::new(At(1), cfg());
        f.handle(now, Outcome::Failed);
        assert!(matches!(f.poll_action(now), Action::Wait(_)));
        f.set_next(Current);
        assert_eq!(f.poll_action(now), Action::Get(Current));
    }
}
