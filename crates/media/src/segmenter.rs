//! Pure segment-boundary and keyframe-cadence decisions for the publisher.
//!
//! Segments must start on a keyframe so a subscriber can decode each one on its own. The
//! publisher forces an IDR every [`KeyframeClock`] interval (media time) and the
//! [`Segmenter`] cuts at the first keyframe after a minimum wall-clock length, so a segment is
//! about one GOP long and never tiny even when keyframes come early (scene cuts, resizes).

use std::time::{Duration, Instant};

/// What to do with the packet about to be muxed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundary {
    /// Append the packet to the open segment.
    Continue,
    /// No segment is open yet: open one and put the packet in it.
    Start,
    /// Close the open segment and start a new one with this packet.
    Cut,
}

/// Decides where segments begin: only on keyframes, and not before `min_duration` of wall
/// clock has passed since the open segment began (unless a cut is requested).
#[derive(Clone, Debug)]
pub struct Segmenter {
    min_duration: Duration,
    open_since: Option<Instant>,
    cut_requested: bool,
}

impl Segmenter {
    /// A segmenter that keeps segments open at least `min_duration` of wall clock.
    pub fn new(min_duration: Duration) -> Self {
        Self {
            min_duration,
            open_since: None,
            cut_requested: false,
        }
    }

    /// Asks for a cut at the next keyframe regardless of the minimum length (for example
    /// after the encoder was re-created for a new resolution).
    pub fn request_cut(&mut self) {
        self.cut_requested = true;
    }

    /// Whether a segment is open.
    pub fn is_open(&self) -> bool {
        self.open_since.is_some()
    }

    /// Marks the open segment as closed (stream end); the next packet starts a new one.
    pub fn close(&mut self) {
        self.open_since = None;
    }

    /// Decides where the next packet goes. `is_key` says whether it starts with a keyframe.
    pub fn decide(&mut self, is_key: bool, now: Instant) -> Boundary {
        let Some(since) = self.open_since else {
            // The first packet opens a segment even if it is not a keyframe: it is better to
            // ship a segment a decoder must partly skip than to drop the stream's start.
            self.open_since = Some(now);
            self.cut_requested = false;
            return Boundary::Start;
        };
        if is_key
            && (self.cut_requested || now.saturating_duration_since(since) >= self.min_duration)
        {
            self.open_since = Some(now);
            self.cut_requested = false;
            return Boundary::Cut;
        }
        Boundary::Continue
    }
}

/// Decides which frames the encoder must code as IDR: the first one, then one whenever
/// `interval` of media time has passed since the last forced keyframe.
#[derive(Clone, Debug)]
pub struct KeyframeClock {
    interval_ticks: i64,
    last_key: Option<i64>,
}

impl KeyframeClock {
    /// `interval` is converted to 90 kHz ticks; a zero interval makes every frame a keyframe.
    pub fn new(interval: Duration) -> Self {
        let ticks = i64::try_from(interval.as_micros() * 9 / 100).unwrap_or(i64::MAX);
        Self {
            interval_ticks: ticks,
            last_key: None,
        }
    }

    /// Forgets the last keyframe so the next frame is forced (new encoder, new resolution).
    pub fn reset(&mut self) {
        self.last_key = None;
    }

    /// Whether the frame at `pts` (90 kHz) must be a keyframe; records it if so.
    pub fn should_force(&mut self, pts: i64) -> bool {
        let force = match self.last_key {
            None => true,
            Some(last) => pts.saturating_sub(last) >= self.interval_ticks,
        };
        if force {
            self.last_key = Some(pts);
        }
        force
    }
}

/// Turns source or wall-clock timestamps into a strictly increasing 90 kHz sequence.
///
/// Source timestamps are used when given (shifted so the first is zero); otherwise the wall
/// clock since the first frame. Either way a value not above the previous one is bumped to
/// previous + 1 tick, so the muxer never sees time run backwards.
#[derive(Clone, Debug, Default)]
pub struct PtsClock {
    origin_src: Option<i64>,
    origin_wall: Option<Instant>,
    last: Option<i64>,
    bumped: u64,
}

impl PtsClock {
    /// A clock with no frames seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many timestamps had to be bumped to keep the sequence increasing.
    pub fn bumped(&self) -> u64 {
        self.bumped
    }

    /// The output timestamp for a frame with optional source `pts` arriving at `now`.
    pub fn next(&mut self, src_pts: Option<i64>, now: Instant) -> i64 {
        let origin_wall = *self.origin_wall.get_or_insert(now);
        let raw = match src_pts {
            Some(p) => {
                let origin = *self.origin_src.get_or_insert(p);
                p.saturating_sub(origin)
            }
            None => {
                let micros = now.saturating_duration_since(origin_wall).as_micros();
                i64::try_from(micros * 9 / 100).unwrap_or(i64::MAX)
            }
        };
        let out = match self.last {
            Some(last) if raw <= last => {
                self.bumped += 1;
                last + 1
            }
            _ => raw,
        };
        self.last = Some(out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn first_packet_starts_then_continues_until_keyframe_after_min() {
        let t0 = Instant::now();
        let mut s = Segmenter::new(Duration::from_millis(1000));
        assert_eq!(s.decide(true, t0), Boundary::Start);
        assert_eq!(s.decide(false, at(t0, 500)), Boundary::Continue);
        // Keyframe too early: stays in the same segment.
        assert_eq!(s.decide(true, at(t0, 900)), Boundary::Continue);
        // Non-keyframe after the minimum: cannot cut there.
        assert_eq!(s.decide(false, at(t0, 1500)), Boundary::Continue);
        assert_eq!(s.decide(true, at(t0, 2000)), Boundary::Cut);
        // The new segment's clock starts at the cut.
        assert_eq!(s.decide(true, at(t0, 2500)), Boundary::Continue);
        assert_eq!(s.decide(true, at(t0, 3000)), Boundary::Cut);
    }

    #[test]
    fn requested_cut_ignores_minimum_but_waits_for_keyframe() {
        let t0 = Instant::now();
        let mut s = Segmenter::new(Duration::from_secs(10));
        assert_eq!(s.decide(true, t0), Boundary::Start);
        s.request_cut();
        assert_eq!(s.decide(false, at(t0, 10)), Boundary::Continue);
        assert_eq!(s.decide(true, at(t0, 20)), Boundary::Cut);
        assert_eq!(s.decide(true, at(t0, 30)), Boundary::Continue);
    }

    #[test]
    fn close_makes_next_packet_start() {
        let t0 = Instant::now();
        let mut s = Segmenter::new(Duration::ZERO);
        assert_eq!(s.decide(false, t0), Boundary::Start);
        assert!(s.is_open());
        s.close();
        assert!(!s.is_open());
        assert_eq!(s.decide(false, t0), Boundary::Start);
    }

    #[test]
    fn zero_minimum_cuts_on_every_keyframe() {
        let t0 = Instant::now();
        let mut s = Segmenter::new(Duration::ZERO);
        let got: Vec<_> = [true, false, true, true]
            .iter()
            .map(|&k| s.decide(k, t0))
            .collect();
        assert_eq!(
            got,
            [
                Boundary::Start,
                Boundary::Continue,
                Boundary::Cut,
                Boundary::Cut
            ]
        );
    }

    #[test]
    fn keyframe_clock_forces_first_and_every_interval() {
        let mut k = KeyframeClock::new(Duration::from_secs(2));
        let forced: Vec<i64> = (0..10)
            .map(|i| i * 45_000) // every 0.5 s
            .filter(|&p| k.should_force(p))
            .collect();
        assert_eq!(forced, [0, 180_000, 360_000]);
        k.reset();
        assert!(k.should_force(400_000));
    }

    #[test]
    fn pts_clock_uses_source_and_never_goes_back() {
        let t0 = Instant::now();
        let mut c = PtsClock::new();
        assert_eq!(c.next(Some(1_000), t0), 0);
        assert_eq!(c.next(Some(4_000), t0), 3_000);
        assert_eq!(c.next(Some(2_000), t0), 3_001);
        assert_eq!(c.next(Some(4_000), t0), 3_002);
        assert_eq!(c.next(Some(10_000), t0), 9_000);
        assert_eq!(c.bumped(), 2);
    }

    #[test]
    fn pts_clock_wall_clock_fallback() {
        let t0 = Instant::now();
        let mut c = PtsClock::new();
        assert_eq!(c.next(None, t0), 0);
        assert_eq!(c.next(None, at(t0, 1000)), 90_000);
        // Same instant twice: bumped by one tick.
        assert_eq!(c.next(None, at(t0, 1000)), 90_001);
    }
}
