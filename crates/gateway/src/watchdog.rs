//! [`OutputWatchdog`]: when a stream that should be producing output is not. Pure: time is
//! passed in, so the decision is table-tested and can drive failover later.
//!
//! A Scope runner that was asked for a pipeline it has not loaded still answers
//! `stream_started` and then never sends a frame; the only trace is a log line. A gateway
//! that waits for output forever looks healthy while its user sees nothing. The watchdog
//! turns that silence into a fault with a reason.

use std::time::{Duration, Instant};

/// Why the watchdog fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stall {
    /// No output since the stream started, although input flows (or, for a stream that
    /// takes no input, at all).
    NoOutput {
        /// How long it waited.
        waited: Duration,
    },
    /// Output came, then stopped while input kept flowing.
    OutputStopped {
        /// Time since the last output.
        since: Duration,
    },
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoOutput { waited } => write!(
                f,
                "no output {:.1} s after the stream started",
                waited.as_secs_f64()
            ),
            Self::OutputStopped { since } => write!(
                f,
                "output stopped {:.1} s ago while input flows",
                since.as_secs_f64()
            ),
        }
    }
}

/// Watches one stream's input and output.
#[derive(Debug, Clone)]
pub struct OutputWatchdog {
    timeout: Duration,
    needs_input: bool,
    started: Instant,
    first_input: Option<Instant>,
    last_input: Option<Instant>,
    last_output: Option<Instant>,
    fired: bool,
}

impl OutputWatchdog {
    /// A stream started at `now` that should give output within `timeout` of its first
    /// input (`needs_input`), or of its start (a stream that takes no input).
    pub fn new(now: Instant, timeout: Duration, needs_input: bool) -> Self {
        Self {
            timeout,
            needs_input,
            started: now,
            first_input: None,
            last_input: None,
            last_output: None,
            fired: false,
        }
    }

    /// Input reached the stream at `now`.
    pub fn on_input(&mut self, now: Instant) {
        self.first_input.get_or_insert(now);
        self.last_input = Some(now);
    }

    /// Output came out of the stream at `now`.
    pub fn on_output(&mut self, now: Instant) {
        self.last_output = Some(now);
    }

    /// The stall at `now`, reported once; `None` while all is well.
    pub fn check(&mut self, now: Instant) -> Option<Stall> {
        if self.fired {
            return None;
        }
        let input_recent = self
            .last_input
            .is_some_and(|t| now.saturating_duration_since(t) < self.timeout);
        let stall = match (self.last_output, self.needs_input) {
            (None, false) => {
                let waited = now.saturating_duration_since(self.started);
                (waited >= self.timeout).then_some(Stall::NoOutput { waited })
            }
            (None, true) => self.first_input.and_then(|first| {
                let waited = now.saturating_duration_since(first);
                (waited >= self.timeout && input_recent).then_some(Stall::NoOutput { waited })
            }),
            (Some(out), _) => {
                let since = now.saturating_duration_since(out);
                // A stream with no input should keep producing; one with input only while
                // input flows.
                let expected = !self.needs_input || input_recent;
                (since >= self.timeout && expected).then_some(Stall::OutputStopped { since })
            }
        };
        if stall.is_some() {
            self.fired = true;
        }
        stall
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn silence_while_input_flows_is_a_stall() {
        let t0 = Instant::now();
        let mut w = OutputWatchdog::new(t0, 5 * S, true);
        // No input yet: nothing expected, however long.
        assert_eq!(w.check(t0 + 60 * S), None);
        for i in 0..=5 {
            w.on_input(t0 + 60 * S + i * S);
        }
        assert_eq!(w.check(t0 + 64 * S), None);
        assert_eq!(
            w.check(t0 + 65 * S),
            Some(Stall::NoOutput { waited: 5 * S })
        );
        // Reported once.
        assert_eq!(w.check(t0 + 70 * S), None);
    }

    #[test]
    fn output_keeps_it_quiet_and_its_end_under_input_is_a_stall() {
        let t0 = Instant::now();
        let mut w = OutputWatchdog::new(t0, 5 * S, true);
        w.on_input(t0);
        w.on_output(t0 + 2 * S);
        for i in 3..=12 {
            w.on_input(t0 + i * S);
        }
        assert_eq!(w.check(t0 + 6 * S), None);
        assert_eq!(
            w.check(t0 + 7 * S),
            Some(Stall::OutputStopped { since: 5 * S })
        );
        // Input that stopped too is an idle client, not a stall.
        let mut w = OutputWatchdog::new(t0, 5 * S, true);
        w.on_input(t0);
        w.on_output(t0 + S);
        assert_eq!(w.check(t0 + 30 * S), None);
        // Input that stopped before any output came: nothing to say either.
        let mut w = OutputWatchdog::new(t0, 5 * S, true);
        w.on_input(t0);
        assert_eq!(w.check(t0 + 30 * S), None);
    }

    #[test]
    fn streams_without_input_must_produce_on_their_own() {
        let t0 = Instant::now();
        let mut w = OutputWatchdog::new(t0, 5 * S, false);
        assert_eq!(w.check(t0 + 4 * S), None);
        assert_eq!(w.check(t0 + 5 * S), Some(Stall::NoOutput { waited: 5 * S }));
        let mut w = OutputWatchdog::new(t0, 5 * S, false);
        w.on_output(t0 + S);
        assert_eq!(w.check(t0 + 5 * S), None);
        assert!(matches!(
            w.check(t0 + 6 * S),
            Some(Stall::OutputStopped { .. })
        ));
        assert!(
            Stall::NoOutput { waited: 5 * S }
                .to_string()
                .contains("no output 5.0 s")
        );
    }
}
