//! Simulation: a publisher, the server's [`Ring`] and a subscriber's [`Follower`] stepped
//! together in fake time, with no sockets. Checks that the two pure cores agree: a subscriber
//! that keeps up sees every segment in order, a slow one jumps to the live edge instead of
//! stalling, and a closed channel ends the subscription.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use lpgw_trickle::follow::{Action, FollowConfig, Follower, Outcome, StopReason};
use lpgw_trickle::ring::{ReadSlot, Ring};
use lpgw_trickle::wire::{RING_SIZE, SeqRequest};

/// A segment in the simulation: only whether its publisher has written it.
type Seg = Rc<Cell<bool>>;

struct Sim {
    ring: Ring<Seg>,
    follower: Follower,
    now: Instant,
    /// A request the follower issued that waits for its segment to be written.
    pending: Option<(u64, Seg)>,
    read: Vec<u64>,
    stopped: Option<StopReason>,
}

impl Sim {
    fn new(start: SeqRequest) -> Self {
        let now = Instant::now();
        Self {
            ring: Ring::new(now),
            follower: Follower::new(start, FollowConfig::default()),
            now,
            pending: None,
            read: Vec::new(),
            stopped: None,
        }
    }

    fn publish(&mut self) {
        let w = self
            .ring
            .for_write(SeqRequest::Next, |_| Rc::new(Cell::new(false)))
            .expect("Next is a valid write");
        self.ring.handle_first_byte(w.seq, self.now);
        w.segment.set(true);
    }

    /// Lets the subscriber make progress: at most one completed read per call.
    fn subscribe_step(&mut self) {
        for _ in 0..8 {
            if self.stopped.is_some() {
                return;
            }
            if let Some((seq, seg)) = &self.pending {
                if seg.get() {
                    self.read.push(*seq);
                    let seq = *seq;
                    self.pending = None;
                    self.follower
                        .handle(self.now, Outcome::Segment { seq: Some(seq) });
                    return;
                }
                if self.ring.is_closed() {
                    self.pending = None;
                    self.follower.handle(self.now, Outcome::Closed);
                    continue;
                }
                return; // still waiting for the publisher
            }
            match self.follower.poll_action(self.now) {
                Action::Stop(r) => self.stopped = Some(r),
                Action::Wait(until) => self.now = self.now.max(until),
                Action::Get(req) => match self.ring.for_read(req, |_| Rc::new(Cell::new(false))) {
                    ReadSlot::Found { seq, segment, .. } => self.pending = Some((seq, segment)),
                    ReadSlot::Missing { closed: true, .. } => {
                        self.follower.handle(self.now, Outcome::Closed);
                    }
                    ReadSlot::Missing { seq, latest, .. } => self.follower.handle(
                        self.now,
                        Outcome::SeqNonexistent {
                            seq: seq as i64,
                            latest: latest as i64,
                        },
                    ),
                },
            }
        }
    }

    fn tick(&mut self) {
        self.now += Duration::from_millis(10);
    }
}

#[test]
fn a_subscriber_that_keeps_up_reads_every_segment_in_order() {
    let mut sim = Sim::new(SeqRequest::Next);
    for _ in 0..50 {
        sim.subscribe_step();
        sim.publish();
        sim.subscribe_step();
        sim.tick();
    }
    assert_eq!(sim.read, (0..50).collect::<Vec<_>>());
    assert_eq!(sim.follower.stats().jumps, 0);
}

#[test]
fn a_slow_subscriber_jumps_to_the_live_edge() {
    let mut sim = Sim::new(SeqRequest::At(0));
    for round in 0..90u32 {
        sim.publish();
        // The subscriber gets one chance every third publish.
        if round % 3 == 0 {
            sim.subscribe_step();
        }
        sim.tick();
    }
    assert!(sim.follower.stats().jumps > 0, "{:?}", sim.follower.stats());
    assert!(sim.read.windows(2).all(|w| w[0] < w[1]), "{:?}", sim.read);
    // It reads only what is in the window when it asks, so it never trails the edge by more
    // than the window plus the publishes between two of its turns.
    let last = *sim.read.last().unwrap();
    assert!(
        sim.ring.next_write() - last <= RING_SIZE + 3,
        "last read {last}"
    );
    assert!(sim.read.len() >= 20, "it keeps reading: {:?}", sim.read);
    assert!(sim.stopped.is_none());
}

#[test]
fn closing_the_channel_ends_the_subscription() {
    let mut sim = Sim::new(SeqRequest::Next);
    sim.publish();
    sim.subscribe_step(); // waits at the edge for seq 1
    assert!(sim.pending.is_some());
    for seg in sim.ring.close() {
        seg.set(false);
    }
    for _ in 0..4 {
        sim.subscribe_step();
    }
    assert_eq!(sim.stopped, Some(StopReason::EndOfStream));
}
