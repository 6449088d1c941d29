//! The per-channel segment ring as plain data: which segment a request addresses, when a
//! segment is pre-created, what falls out of the window, and when a channel is idle.
//!
//! The ring is generic over the segment handle `S` so that the decisions can be tested
//! without buffers or sockets; the server stores its shared segment buffers in it.
//! Behaviour follows go-livepeer's `trickle/trickle_server.go` (`getForWrite`,
//! `getForRead`, `handlePost`, `sweepIdleChannels`).

use std::time::{Duration, Instant};

use crate::wire::{RING_SIZE, SeqRequest};

/// Where a read request landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadSlot<S> {
    /// The segment exists (possibly just pre-created): stream it.
    Found {
        /// The resolved sequence number.
        seq: u64,
        /// The segment handle.
        segment: S,
        /// The channel's next write sequence at request time.
        latest: u64,
    },
    /// The segment is outside the window: 470, or 200 + `Lp-Trickle-Closed` once closed.
    Missing {
        /// The resolved sequence number that was asked for.
        seq: u64,
        /// The channel's next write sequence.
        latest: u64,
        /// Whether the channel has been closed.
        closed: bool,
    },
}

/// Result of resolving a publish request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSlot<S> {
    /// The resolved sequence number (echoed in `Lp-Trickle-Seq`).
    pub seq: u64,
    /// The segment to append to: an existing one with the same seq, or a new one.
    pub segment: S,
    /// A different, older segment that occupied the slot and must now be closed.
    pub evicted: Option<S>,
}

/// Segment ring of one channel.
#[derive(Debug)]
pub struct Ring<S> {
    /// `seq % RING_SIZE` → (seq, segment).
    slots: [Option<(u64, S)>; RING_SIZE as usize],
    /// The seq following the newest segment that received a first byte (`nextWrite`).
    next_write: u64,
    /// Set once the channel is closed; no segment is pre-created after that.
    closed: bool,
    /// Creation time or the time of the newest first byte; drives the idle sweep.
    last_write: Instant,
}

fn slot_of(seq: u64) -> usize {
    // The remainder is below RING_SIZE, which fits in usize.
    (seq % RING_SIZE) as usize
}

impl<S: Clone> Ring<S> {
    /// A new, empty ring created at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            slots: Default::default(),
            next_write: 0,
            closed: false,
            last_write: now,
        }
    }

    /// The next write sequence (the live edge), as reported in `Lp-Trickle-Latest`.
    pub fn next_write(&self) -> u64 {
        self.next_write
    }

    /// Whether the channel has been closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Resolves a publish target. `Current` is not valid for writes and yields `None`.
    ///
    /// A seq already in its slot is reused: a second POST to the same seq appends to the
    /// same buffer (go-livepeer `TestTrickle_Reset`). Otherwise a fresh segment is made with
    /// `make` and whatever was in the slot is returned for closing.
    pub fn for_write(
        &mut self,
        req: SeqRequest,
        make: impl FnOnce(u64) -> S,
    ) -> Option<WriteSlot<S>> {
        let seq = match req {
            SeqRequest::Next => self.next_write,
            SeqRequest::At(n) => n,
            SeqRequest::Current => return None,
        };
        let slot = &mut self.slots[slot_of(seq)];
        if let Some((existing, segment)) = slot
            && *existing == seq
        {
            return Some(WriteSlot {
                seq,
                segment: segment.clone(),
                evicted: None,
            });
        }
        let segment = make(seq);
        let evicted = slot.replace((seq, segment.clone())).map(|(_, s)| s);
        Some(WriteSlot {
            seq,
            segment,
            evicted,
        })
    }

    /// Resolves a subscribe request, pre-creating the segment at the live edge with `make`.
    pub fn for_read(&mut self, req: SeqRequest, make: impl FnOnce(u64) -> S) -> ReadSlot<S> {
        let seq = match req {
            SeqRequest::Next => self.next_write,
            SeqRequest::Current => self.next_write.saturating_sub(1),
            SeqRequest::At(n) => n,
        };
        let latest = self.next_write;
        let idx = slot_of(seq);
        if let Some((existing, segment)) = &self.slots[idx]
            && *existing == seq
        {
            return ReadSlot::Found {
                seq,
                segment: segment.clone(),
                latest,
            };
        }
        // A read just ahead of the write head waits for the publisher
        // (trickle_server.go getForRead: `idx == nextWrite || (nextWrite == 0 && idx == 1)`).
        let at_edge = seq == self.next_write || (self.next_write == 0 && seq == 1);
        if at_edge && !self.closed {
            let segment = make(seq);
            self.slots[idx] = Some((seq, segment.clone()));
            return ReadSlot::Found {
                seq,
                segment,
                latest,
            };
        }
        ReadSlot::Missing {
            seq,
            latest,
            closed: self.closed,
        }
    }

    /// Records the first byte (or the empty completion) of a publish to `seq` at `now`.
    pub fn handle_first_byte(&mut self, seq: u64, now: Instant) {
        self.next_write = seq.saturating_add(1);
        self.last_write = now;
    }

    /// The segments older than `seq`, which a publish carrying `Lp-Trickle-Reset` closes.
    pub fn older_than(&self, seq: u64) -> Vec<S> {
        self.slots
            .iter()
            .flatten()
            .filter(|(s, _)| *s < seq)
            .map(|(_, seg)| seg.clone())
            .collect()
    }

    /// The segment stored for exactly `seq`, if it is still in the window.
    pub fn get(&self, seq: u64) -> Option<S> {
        match &self.slots[slot_of(seq)] {
            Some((s, seg)) if *s == seq => Some(seg.clone()),
            _ => None,
        }
    }

    /// Closes the channel: returns every segment so the caller can close them, and empties
    /// the window.
    pub fn close(&mut self) -> Vec<S> {
        self.closed = true;
        self.slots
            .iter_mut()
            .filter_map(Option::take)
            .map(|(_, s)| s)
            .collect()
    }

    /// Whether nothing has been written for longer than `timeout` at `now`.
    pub fn is_idle(&self, now: Instant, timeout: Duration) -> bool {
        now.saturating_duration_since(self.last_write) > timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> (Ring<u64>, Instant) {
        let now = Instant::now();
        (Ring::new(now), now)
    }

    /// Simulates a complete publish of `seq`.
    fn publish(r: &mut Ring<u64>, req: SeqRequest, now: Instant) -> u64 {
        let w = r.for_write(req, |s| s).expect("valid write");
        r.handle_first_byte(w.seq, now);
        w.seq
    }

    #[test]
    fn next_resolves_to_the_write_head() {
        let (mut r, now) = ring();
        assert_eq!(publish(&mut r, SeqRequest::Next, now), 0);
        assert_eq!(publish(&mut r, SeqRequest::Next, now), 1);
        assert_eq!(r.next_write(), 2);
        assert!(r.for_write(SeqRequest::Current, |s| s).is_none());
    }

    #[test]
    fn same_seq_reuses_the_segment_and_new_seq_evicts() {
        let (mut r, _) = ring();
        let a = r.for_write(SeqRequest::At(3), |s| s * 10).unwrap();
        assert_eq!((a.segment, a.evicted), (30, None));
        // A second POST to the same seq gets the same segment (append semantics).
        let b = r.for_write(SeqRequest::At(3), |_| 999).unwrap();
        assert_eq!((b.segment, b.evicted), (30, None));
        // seq 8 lands in the same slot and evicts seq 3.
        let c = r.for_write(SeqRequest::At(8), |s| s * 10).unwrap();
        assert_eq!((c.segment, c.evicted), (80, Some(30)));
        assert_eq!(r.get(3), None);
        assert_eq!(r.get(8), Some(80));
    }

    #[test]
    fn reads_resolve_special_seqs() {
        let (mut r, now) = ring();
        // Nothing written: -2 is 0 and -1 is 0; both pre-create seq 0.
        assert!(matches!(
            r.for_read(SeqRequest::Current, |s| s),
            ReadSlot::Found {
                seq: 0,
                latest: 0,
                ..
            }
        ));
        for _ in 0..3 {
            publish(&mut r, SeqRequest::Next, now);
        }
        assert!(matches!(
            r.for_read(SeqRequest::Current, |s| s),
            ReadSlot::Found {
                seq: 2,
                latest: 3,
                ..
            }
        ));
        assert!(matches!(
            r.for_read(SeqRequest::Next, |s| s + 100),
            ReadSlot::Found {
                seq: 3,
                segment: 103,
                latest: 3
            }
        ));
    }

    #[test]
    fn reads_outside_the_window_are_missing() {
        let (mut r, now) = ring();
        for _ in 0..8 {
            publish(&mut r, SeqRequest::Next, now);
        }
        // Window holds 3..=7; 2 fell out, 9 is too far ahead, 8 is the edge.
        assert_eq!(
            r.for_read(SeqRequest::At(2), |s| s),
            ReadSlot::Missing {
                seq: 2,
                latest: 8,
                closed: false
            }
        );
        assert_eq!(
            r.for_read(SeqRequest::At(9), |s| s),
            ReadSlot::Missing {
                seq: 9,
                latest: 8,
                closed: false
            }
        );
        assert!(matches!(
            r.for_read(SeqRequest::At(3), |s| s),
            ReadSlot::Found { seq: 3, .. }
        ));
        assert!(matches!(
            r.for_read(SeqRequest::At(8), |s| s),
            ReadSlot::Found { seq: 8, .. }
        ));
    }

    #[test]
    fn seq_one_is_precreated_before_anything_is_written() {
        let (mut r, _) = ring();
        assert!(matches!(
            r.for_read(SeqRequest::At(1), |s| s),
            ReadSlot::Found { seq: 1, .. }
        ));
        assert!(matches!(
            r.for_read(SeqRequest::At(2), |s| s),
            ReadSlot::Missing { seq: 2, .. }
        ));
    }

    #[test]
    fn close_returns_all_segments_and_stops_precreation() {
        let (mut r, now) = ring();
        publish(&mut r, SeqRequest::Next, now);
        publish(&mut r, SeqRequest::Next, now);
        let mut closed = r.close();
        closed.sort();
        assert_eq!(closed, vec![0, 1]);
        assert!(r.is_closed());
        assert_eq!(
            r.for_read(SeqRequest::Next, |s| s),
            ReadSlot::Missing {
                seq: 2,
                latest: 2,
                closed: true
            }
        );
    }

    #[test]
    fn reset_closes_only_older_segments() {
        let (mut r, now) = ring();
        for _ in 0..3 {
            publish(&mut r, SeqRequest::Next, now);
        }
        let mut older = r.older_than(2);
        older.sort();
        assert_eq!(older, vec![0, 1]);
    }

    #[test]
    fn huge_seq_does_not_overflow() {
        let (mut r, now) = ring();
        let w = r.for_write(SeqRequest::At(u64::MAX), |s| s).unwrap();
        r.handle_first_byte(w.seq, now);
        assert_eq!(r.next_write(), u64::MAX);
    }

    #[test]
    fn idleness_follows_the_last_first_byte() {
        let (mut r, t0) = ring();
        let timeout = Duration::from_secs(300);
        assert!(!r.is_idle(t0 + Duration::from_secs(299), timeout));
        assert!(r.is_idle(t0 + Duration::from_secs(301), timeout));
        publish(&mut r, SeqRequest::Next, t0 + Duration::from_secs(200));
        assert!(!r.is_idle(t0 + Duration::from_secs(301), timeout));
    }
}
