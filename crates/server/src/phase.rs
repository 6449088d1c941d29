//! Plain-data decisions of a job: its phase, and the input timestamps.

use std::time::Duration;

/// Where a job is in its life (Family B `phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    /// Started; no output yet.
    Connecting,
    /// Media channels are ready (live-runner `stream_started`); no output yet.
    Ready,
    /// Output frames are arriving.
    Running,
    /// The job failed.
    Error,
    /// The job was stopped.
    Stopped,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Error => "error",
            Self::Stopped => "stopped",
        }
    }

    /// All phases, for metrics.
    pub(crate) const ALL: [Self; 5] = [
        Self::Connecting,
        Self::Ready,
        Self::Running,
        Self::Error,
        Self::Stopped,
    ];

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Self::Error | Self::Stopped)
    }

    /// The phase after `event`. Terminal phases never change; `Running` is not undone by a
    /// late `MediaReady`.
    pub(crate) fn next(self, event: PhaseEvent) -> Self {
        if self.is_terminal() {
            return self;
        }
        match event {
            PhaseEvent::MediaReady if self == Self::Connecting => Self::Ready,
            PhaseEvent::MediaReady => self,
            PhaseEvent::OutputFrame => Self::Running,
            PhaseEvent::Failed => Self::Error,
            PhaseEvent::Stopped => Self::Stopped,
        }
    }
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseEvent {
    MediaReady,
    OutputFrame,
    Failed,
    Stopped,
}

/// 90 kHz ticks.
const CLOCK_HZ: u128 = 90_000;

/// Input timestamps for one job, shared by every connection that feeds it: time since the
/// job's media started, strictly increasing. A reconnecting client therefore continues where
/// the last one stopped instead of restarting at 0 (which the encoder would drop as going
/// backwards), and two clients at once never interleave two clocks.
#[derive(Debug, Default)]
pub(crate) struct InputClock {
    last: Option<i64>,
}

impl InputClock {
    /// The timestamp for a frame arriving `elapsed` after the media started.
    pub(crate) fn stamp(&mut self, elapsed: Duration) -> i64 {
        let ticks =
            i64::try_from(elapsed.as_nanos() * CLOCK_HZ / 1_000_000_000).unwrap_or(i64::MAX);
        let pts = match self.last {
            Some(last) if ticks <= last => last.saturating_add(1),
            _ => ticks,
        };
        self.last = Some(pts);
        pts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_moves_forward_and_terminal_sticks() {
        let p = Phase::Connecting.next(PhaseEvent::MediaReady);
        assert_eq!(p, Phase::Ready);
        let p = p.next(PhaseEvent::OutputFrame);
        assert_eq!(p, Phase::Running);
        assert_eq!(p.next(PhaseEvent::MediaReady), Phase::Running);
        let p = p.next(PhaseEvent::Failed);
        assert_eq!(p, Phase::Error);
        assert_eq!(p.next(PhaseEvent::OutputFrame), Phase::Error);
        assert_eq!(p.next(PhaseEvent::Stopped), Phase::Error);
        assert_eq!(
            Phase::Running
                .next(PhaseEvent::Stopped)
                .next(PhaseEvent::Failed),
            Phase::Stopped
        );
    }

    #[test]
    fn clock_is_wall_time_and_strictly_increasing() {
        let mut c = InputClock::default();
        assert_eq!(c.stamp(Duration::from_millis(0)), 0);
        assert_eq!(c.stamp(Duration::from_secs(1)), 90_000);
        // Same instant, or an earlier one from a second connection: still moves forward.
        assert_eq!(c.stamp(Duration::from_secs(1)), 90_001);
        assert_eq!(c.stamp(Duration::from_millis(500)), 90_002);
        assert_eq!(c.stamp(Duration::from_secs(2)), 180_000);
    }
}
