//! The payment decisions of one job, as plain data.
//!
//! Drive it like quinn's `Connection`: feed inputs with `handle_*`, then call
//! [`PaymentState::poll_action`] until it returns `None`, performing each action and feeding
//! its outcome back. Time is always passed in.
//!
//! One *cycle* pays once: ask the signer (`Sign`), on a 480 refresh the orchestrator info and
//! ask again (bounded), then hand the headers to the orchestrator (`Post`). The initial cycle is
//! armed at construction (its `Post` is the job start itself); periodic cycles are armed by
//! output segments, at most one per `interval`, as the reference payment sender does.

use std::time::{Duration, Instant};

/// What the signer said, reduced to what the state machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignerOutcome {
    /// 200: headers are ready.
    Paid,
    /// 480: refresh orchestrator info, then sign again.
    RefreshSession,
    /// 481: price above a limit.
    PriceExceeded,
    /// 482: nothing to pay this cycle.
    NoTickets,
    /// Anything else.
    Failed,
}

/// What posting the payment to the orchestrator gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostOutcome {
    /// Accepted.
    Ok,
    /// The orchestrator no longer knows the session (404): stop paying.
    Gone,
    /// The session is fixed-price and needs no more payments (409): stop paying, but the
    /// session goes on.
    Settled,
    /// A refusal that will not change on a retry (a 4xx other than 404, 408, 409 and 429):
    /// stop paying.
    Refused,
    /// Any other failure (transport, 408, 429, 5xx); the next cycle tries again.
    Failed,
}

impl PostOutcome {
    /// What an HTTP status from the orchestrator means for a payment, on every flow: the
    /// legacy `POST /payment`, a live-runner session payment, and the paid retry of a
    /// reservation or start.
    pub(crate) fn from_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Ok,
            404 => Self::Gone,
            409 => Self::Settled,
            408 | 429 => Self::Failed,
            400..=499 => Self::Refused,
            _ => Self::Failed,
        }
    }
}

/// The next thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Call `generate-live-payment` with the current info and state.
    Sign,
    /// Fetch fresh orchestrator info (GetOrchestrator with `ignoreCapacityCheck`).
    Refresh,
    /// Send the signed headers to the orchestrator.
    Post,
    /// Stop paying for good.
    Stop(StopReason),
}

/// Why payments stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Signer 481; paying more is not allowed.
    PriceExceeded,
    /// The initial cycle could not complete (the job cannot start).
    InitialFailed(InitialFailure),
    /// The orchestrator dropped the session.
    SessionGone,
    /// The orchestrator refused a payment for good.
    Refused,
    /// The session is fixed-price: no more payments are due (it goes on).
    Settled,
    /// A budget the job draws on has no room for the payment; it was not sent.
    BudgetExhausted,
    /// The signer answered 482 (no tickets) too many cycles in a row.
    Wedged,
}

/// Why the initial payment failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InitialFailure {
    /// The signer kept answering 480.
    RefreshLimit,
    /// Fresh orchestrator info could not be fetched.
    RefreshFailed,
    /// The signer had no tickets to give for the opening payment.
    NoTickets,
    /// The signer failed.
    Signer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the next output segment.
    Idle,
    NeedSign,
    Signing,
    NeedRefresh,
    Refreshing,
    NeedPost,
    Posting,
    Stopped(StopReason),
}

/// Counters for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Payments handed to the orchestrator and accepted.
    pub(crate) paid: u64,
    /// Cycles that ended without a payment (482, failures, refresh limit).
    pub(crate) skipped: u64,
    /// Refreshes performed.
    pub(crate) refreshes: u64,
}

/// Payment decisions for one job.
#[derive(Debug)]
pub(crate) struct PaymentState {
    interval: Duration,
    max_refreshes: u32,
    phase: Phase,
    initial: bool,
    refreshes_this_cycle: u32,
    last_cycle: Option<Instant>,
    stats: Stats,
}

impl PaymentState {
    /// A state whose first cycle (the opening payment) is already armed.
    pub(crate) fn new(interval: Duration, max_refreshes: u32) -> Self {
        Self {
            interval,
            max_refreshes,
            phase: Phase::NeedSign,
            initial: true,
            refreshes_this_cycle: 0,
            last_cycle: None,
            stats: Stats::default(),
        }
    }

    /// A state for a session already paid at `now` (a live-runner reservation): the first
    /// cycle is due one `interval` later and failures skip a cycle rather than end it.
    #[cfg(test)]
    pub(crate) fn funded(interval: Duration, max_refreshes: u32, now: Instant) -> Self {
        Self {
            interval,
            max_refreshes,
            phase: Phase::Idle,
            initial: false,
            refreshes_this_cycle: 0,
            last_cycle: Some(now),
            stats: Stats {
                paid: 1,
                ..Stats::default()
            },
        }
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether payments have stopped for good.
    #[cfg(test)]
    pub(crate) fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped(_))
    }

    /// An output segment arrived: start a cycle unless one is running or the last one began
    /// less than `interval` ago.
    pub(crate) fn handle_segment(&mut self, now: Instant) {
        if self.phase != Phase::Idle {
            return;
        }
        let due = self
            .last_cycle
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if due {
            self.last_cycle = Some(now);
            self.phase = Phase::NeedSign;
            self.refreshes_this_cycle = 0;
        }
    }

    /// The signer answered.
    pub(crate) fn handle_signer(&mut self, _now: Instant, outcome: SignerOutcome) {
        if self.phase != Phase::Signing {
            return;
        }
        self.phase = match outcome {
            SignerOutcome::Paid => Phase::NeedPost,
            SignerOutcome::RefreshSession if self.refreshes_this_cycle < self.max_refreshes => {
                Phase::NeedRefresh
            }
            SignerOutcome::RefreshSession => self.fail_cycle(InitialFailure::RefreshLimit),
            SignerOutcome::PriceExceeded => Phase::Stopped(StopReason::PriceExceeded),
            SignerOutcome::NoTickets => self.fail_cycle(InitialFailure::NoTickets),
            SignerOutcome::Failed => self.fail_cycle(InitialFailure::Signer),
        };
    }

    /// A refresh finished; `ok` tells whether new orchestrator info is in place.
    pub(crate) fn handle_refreshed(&mut self, _now: Instant, ok: bool) {
        if self.phase != Phase::Refreshing {
            return;
        }
        self.refreshes_this_cycle += 1;
        self.stats.refreshes += 1;
        self.phase = if ok {
            Phase::NeedSign
        } else {
            self.fail_cycle(InitialFailure::RefreshFailed)
        };
    }

    /// The orchestrator answered the posted payment.
    pub(crate) fn handle_posted(&mut self, _now: Instant, outcome: PostOutcome) {
        if self.phase != Phase::Posting {
            return;
        }
        self.initial = false;
        self.phase = match outcome {
            PostOutcome::Ok => {
                self.stats.paid += 1;
                Phase::Idle
            }
            PostOutcome::Gone => Phase::Stopped(StopReason::SessionGone),
            PostOutcome::Settled => Phase::Stopped(StopReason::Settled),
            PostOutcome::Refused => Phase::Stopped(StopReason::Refused),
            PostOutcome::Failed => {
                self.stats.skipped += 1;
                Phase::Idle
            }
        };
    }

    /// A budget refused the payment about to be posted: it is not sent, and payments stop.
    pub(crate) fn handle_budget_exhausted(&mut self, _now: Instant) {
        if self.phase == Phase::Posting {
            self.phase = Phase::Stopped(StopReason::BudgetExhausted);
        }
    }

    /// The next action, if any. Each `Sign`, `Refresh` and `Post` is returned once and must be
    /// answered by the matching `handle_*` call; `Stop` is returned every time.
    pub(crate) fn poll_action(&mut self, now: Instant) -> Option<Action> {
        match self.phase {
            Phase::Idle | Phase::Signing | Phase::Refreshing | Phase::Posting => None,
            Phase::NeedSign => {
                // The opening cycle is armed at construction; it starts the interval here.
                self.last_cycle.get_or_insert(now);
                self.phase = Phase::Signing;
                Some(Action::Sign)
            }
            Phase::NeedRefresh => {
                self.phase = Phase::Refreshing;
                Some(Action::Refresh)
            }
            Phase::NeedPost => {
                self.phase = Phase::Posting;
                Some(Action::Post)
            }
            Phase::Stopped(reason) => Some(Action::Stop(reason)),
        }
    }

    /// Ends the running cycle without a payment: fatal for the opening payment, a skipped
    /// cycle afterwards.
    fn fail_cycle(&mut self, why: InitialFailure) -> Phase {
        if self.initial {
            Phase::Stopped(StopReason::InitialFailed(why))
        } else {
            self.stats.skipped += 1;
            Phase::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(5);

    fn started(now: Instant) -> PaymentState {
        let mut s = PaymentState::new(INTERVAL, 3);
        assert_eq!(s.poll_action(now), Some(Action::Sign));
        s.handle_signer(now, SignerOutcome::Paid);
        assert_eq!(s.poll_action(now), Some(Action::Post));
        s.handle_posted(now, PostOutcome::Ok);
        assert_eq!(s.poll_action(now), None);
        s
    }

    #[test]
    fn one_payment_per_segment_at_most_every_interval() {
        let t0 = Instant::now();
        let mut s = started(t0);
        // Segments inside the interval do not pay.
        s.handle_segment(t0 + Duration::from_secs(1));
        assert_eq!(s.poll_action(t0 + Duration::from_secs(1)), None);
        s.handle_segment(t0 + Duration::from_secs(4));
        assert_eq!(s.poll_action(t0 + Duration::from_secs(4)), None);
        // The first segment after the interval pays once.
        let t1 = t0 + Duration::from_secs(5);
        s.handle_segment(t1);
        s.handle_segment(t1);
        assert_eq!(s.poll_action(t1), Some(Action::Sign));
        // A segment arriving mid-cycle does not start another one.
        s.handle_segment(t1);
        assert_eq!(s.poll_action(t1), None);
        s.handle_signer(t1, SignerOutcome::Paid);
        assert_eq!(s.poll_action(t1), Some(Action::Post));
        s.handle_posted(t1, PostOutcome::Ok);
        assert_eq!(s.poll_action(t1), None);
        assert_eq!(s.stats().paid, 2);
    }

    #[test]
    fn refresh_then_sign_again_is_bounded() {
        let t0 = Instant::now();
        let mut s = PaymentState::new(INTERVAL, 2);
        for _ in 0..2 {
            assert_eq!(s.poll_action(t0), Some(Action::Sign));
            s.handle_signer(t0, SignerOutcome::RefreshSession);
            assert_eq!(s.poll_action(t0), Some(Action::Refresh));
            assert_eq!(s.poll_action(t0), None, "refresh is only asked once");
            s.handle_refreshed(t0, true);
        }
        assert_eq!(s.poll_action(t0), Some(Action::Sign));
        s.handle_signer(t0, SignerOutcome::RefreshSession);
        assert_eq!(
            s.poll_action(t0),
            Some(Action::Stop(StopReason::InitialFailed(
                InitialFailure::RefreshLimit
            )))
        );
        assert_eq!(s.stats().refreshes, 2);
    }

    #[test]
    fn refresh_then_pay_succeeds() {
        let t0 = Instant::now();
        let mut s = PaymentState::new(INTERVAL, 3);
        assert_eq!(s.poll_action(t0), Some(Action::Sign));
        s.handle_signer(t0, SignerOutcome::RefreshSession);
        assert_eq!(s.poll_action(t0), Some(Action::Refresh));
        s.handle_refreshed(t0, true);
        assert_eq!(s.poll_action(t0), Some(Action::Sign));
        s.handle_signer(t0, SignerOutcome::Paid);
        assert_eq!(s.poll_action(t0), Some(Action::Post));
    }

    #[test]
    fn price_exceeded_stops_without_paying() {
        let t0 = Instant::now();
        let mut s = PaymentState::new(INTERVAL, 3);
        assert_eq!(s.poll_action(t0), Some(Action::Sign));
        s.handle_signer(t0, SignerOutcome::PriceExceeded);
        assert_eq!(
            s.poll_action(t0),
            Some(Action::Stop(StopReason::PriceExceeded))
        );
        assert_eq!(
            s.poll_action(t0),
            Some(Action::Stop(StopReason::PriceExceeded))
        );
        s.handle_segment(t0 + INTERVAL * 2);
        assert_eq!(
            s.poll_action(t0 + INTERVAL * 2),
            Some(Action::Stop(StopReason::PriceExceeded))
        );
        assert_eq!(s.stats().paid, 0);

        // Also mid-session.
        let mut s = started(t0);
        s.handle_segment(t0 + INTERVAL);
        assert_eq!(s.poll_action(t0 + INTERVAL), Some(Action::Sign));
        s.handle_signer(t0 + INTERVAL, SignerOutcome::PriceExceeded);
        assert!(s.is_stopped());
    }

    #[test]
    fn opening_failures_are_fatal_later_ones_skip_a_cycle() {
        let t0 = Instant::now();
        let cases = [
            (SignerOutcome::NoTickets, InitialFailure::NoTickets),
            (SignerOutcome::Failed, InitialFailure::Signer),
        ];
        for (outcome, why) in cases {
            let mut s = PaymentState::new(INTERVAL, 3);
            assert_eq!(s.poll_action(t0), Some(Action::Sign));
            s.handle_signer(t0, outcome);
            assert_eq!(
                s.poll_action(t0),
                Some(Action::Stop(StopReason::InitialFailed(why)))
            );

            let mut s = started(t0);
            let t1 = t0 + INTERVAL;
            s.handle_segment(t1);
            assert_eq!(s.poll_action(t1), Some(Action::Sign));
            s.handle_signer(t1, outcome);
            assert_eq!(s.poll_action(t1), None);
            assert_eq!(s.stats().skipped, 1);
            // The skipped cycle still counts for the interval.
            s.handle_segment(t1 + Duration::from_secs(1));
            assert_eq!(s.poll_action(t1 + Duration::from_secs(1)), None);
            s.handle_segment(t1 + INTERVAL);
            assert_eq!(s.poll_action(t1 + INTERVAL), Some(Action::Sign));
        }
    }

    #[test]
    fn failed_refresh_skips_the_cycle() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.handle_segment(t0 + INTERVAL);
        assert_eq!(s.poll_action(t0 + INTERVAL), Some(Action::Sign));
        s.handle_signer(t0 + INTERVAL, SignerOutcome::RefreshSession);
        assert_eq!(s.poll_action(t0 + INTERVAL), Some(Action::Refresh));
        s.handle_refreshed(t0 + INTERVAL, false);
        assert_eq!(s.poll_action(t0 + INTERVAL), None);
        assert!(!s.is_stopped());
    }

    #[test]
    fn session_gone_stops_and_failed_post_does_not() {
        let t0 = Instant::now();
        let mut s = started(t0);
        let t1 = t0 + INTERVAL;
        s.handle_segment(t1);
        s.poll_action(t1);
        s.handle_signer(t1, SignerOutcome::Paid);
        s.poll_action(t1);
        s.handle_posted(t1, PostOutcome::Failed);
        assert_eq!(s.poll_action(t1), None);
        let t2 = t1 + INTERVAL;
        s.handle_segment(t2);
        s.poll_action(t2);
        s.handle_signer(t2, SignerOutcome::Paid);
        s.poll_action(t2);
        s.handle_posted(t2, PostOutcome::Gone);
        assert_eq!(
            s.poll_action(t2),
            Some(Action::Stop(StopReason::SessionGone))
        );
    }

    #[test]
    fn funded_sessions_pay_every_interval_and_stop_on_refusal() {
        let t0 = Instant::now();
        let mut s = PaymentState::funded(INTERVAL, 3, t0);
        assert_eq!(s.poll_action(t0), None);
        s.handle_segment(t0 + Duration::from_secs(1));
        assert_eq!(s.poll_action(t0 + Duration::from_secs(1)), None);
        let t1 = t0 + INTERVAL;
        s.handle_segment(t1);
        assert_eq!(s.poll_action(t1), Some(Action::Sign));
        s.handle_signer(t1, SignerOutcome::Failed);
        assert_eq!(
            s.poll_action(t1),
            None,
            "a failed cycle is skipped, not fatal"
        );
        let t2 = t1 + INTERVAL;
        s.handle_segment(t2);
        assert_eq!(s.poll_action(t2), Some(Action::Sign));
        s.handle_signer(t2, SignerOutcome::Paid);
        assert_eq!(s.poll_action(t2), Some(Action::Post));
        s.handle_posted(t2, PostOutcome::Refused);
        assert_eq!(s.poll_action(t2), Some(Action::Stop(StopReason::Refused)));
        assert_eq!(s.stats().paid, 1);
    }

    #[test]
    fn unexpected_inputs_are_ignored() {
        let t0 = Instant::now();
        let mut s = PaymentState::new(INTERVAL, 3);
        // Answers that were never asked for change nothing.
        s.handle_signer(t0, SignerOutcome::Paid);
        s.handle_posted(t0, PostOutcome::Ok);
        s.handle_refreshed(t0, true);
        assert_eq!(s.poll_action(t0), Some(Action::Sign));
        assert_eq!(s.stats(), Stats::default());
    }
}
