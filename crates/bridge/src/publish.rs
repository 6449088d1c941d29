//! Segment events → trickle segment POSTs.

use std::time::Instant;

use bytes::Bytes;
use lpgw_media::SegmentEvent;
use lpgw_trickle::TrickleError;
use lpgw_trickle::client::{Publisher, SegmentWriter};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::stats::{Counters, StatsHandle};
use crate::{BridgeError, SegmentObserver, SegmentTiming};

/// How [`publish_segments`] behaves.
#[derive(Clone)]
pub struct PublishOptions {
    /// Delete the trickle channel (`Publisher::close`) when the events end, which ends every
    /// subscriber cleanly. Not done on cancellation. Default `true`.
    pub close_at_end: bool,
    /// Finished segments whose server answer may be awaited in the background while the next
    /// segment already streams. Finishing in the background keeps a slow acknowledgement (one
    /// network round trip) from delaying the next segment's first bytes. Default 4.
    pub max_finishing: usize,
    /// Told every segment's timing once it is over: its wall-clock length from opening to
    /// the server's answer, and the acknowledgement latency from its last byte to the answer
    /// ([`SegmentTiming::ack`]). Segments that could not be opened are not reported.
    /// Default none.
    pub on_segment: Option<SegmentObserver>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            close_at_end: true,
            max_finishing: 4,
            on_segment: None,
        }
    }
}

impl std::fmt::Debug for PublishOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishOptions")
            .field("close_at_end", &self.close_at_end)
            .field("max_finishing", &self.max_finishing)
            .field("on_segment", &self.on_segment.is_some())
            .finish()
    }
}

/// A segment being written: its writer and what its timing report needs.
struct OpenSegment {
    w: SegmentWriter,
    opened: Instant,
    bytes: u64,
}

impl OpenSegment {
    /// The timing of a segment that failed before the server answered.
    fn failed(&self) -> SegmentTiming {
        SegmentTiming {
            seq: self.w.seq(),
            bytes: self.bytes,
            ok: false,
            first_byte: None,
            total: self.opened.elapsed(),
            ack: None,
        }
    }
}

/// What to do with one event, given whether a segment is open. Plain data so the rules are
/// testable without a server.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Finish the open segment (if any), then open a new one.
    Open,
    /// Write into the open segment.
    Write(Bytes),
    /// Drop the bytes: no segment is open (its POST failed, or no `Start` came first).
    Discard(usize),
    /// Finish the open segment.
    Finish,
    /// Nothing to do (an `End` with no open segment).
    Nothing,
}

fn step(open: bool, ev: SegmentEvent) -> Step {
    match ev {
        SegmentEvent::Start { .. } => Step::Open,
        SegmentEvent::Data(b) if open => Step::Write(b),
        SegmentEvent::Data(b) => Step::Discard(b.len()),
        SegmentEvent::End if open => Step::Finish,
        _ => Step::Nothing,
    }
}

/// Streams `events` into `publisher` until the events end (the media publisher finished) or
/// `cancel` fires.
///
/// Each `Start` opens the next trickle segment (the trickle publisher has usually preconnected
/// it), each `Data` chunk is written into it as it comes, and `End` finishes it. A segment
/// whose POST fails is counted and its remaining bytes dropped; the stream goes on with the
/// next segment. Returns an error only when the trickle publisher gives up for good (too many
/// failures in a row, channel gone).
pub async fn publish_segments(
    mut events: mpsc::Receiver<SegmentEvent>,
    publisher: &mut Publisher,
    opts: PublishOptions,
    stats: StatsHandle,
    cancel: CancellationToken,
) -> Result<(), BridgeError> {
    let c = &stats.0;
    let observer = opts.on_segment.clone();
    let mut writer: Option<OpenSegment> = None;
    let mut finishing = JoinSet::new();
    let result = loop {
        let ev = tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            ev = events.recv() => ev,
        };
        let Some(ev) = ev else {
            break Ok(());
        };
        match step(writer.is_some(), ev) {
            Step::Open => {
                if let Some(w) = writer.take() {
                    finish(&mut finishing, w, &stats, &observer, opts.max_finishing).await;
                }
                Counters::add(&c.segments, 1);
                match publisher.next_segment().await {
                    Ok(w) => {
                        trace!(seq = w.seq(), "segment opened");
                        writer = Some(OpenSegment {
                            w,
                            opened: Instant::now(),
                            bytes: 0,
                        });
                    }
                    Err(e) if fatal(&e) => break Err(e.into()),
                    Err(e) => {
                        debug!(error = %e, "cannot open segment, skipping it");
                        Counters::add(&c.segments_skipped, 1);
                    }
                }
            }
            Step::Write(b) => {
                let len = b.len() as u64;
                let Some(open) = writer.as_mut() else {
                    continue; // step() only writes into an open segment
                };
                match open.w.write(b).await {
                    Ok(()) => {
                        open.bytes += len;
                        Counters::add(&c.bytes, len);
                        Counters::add(&c.chunks, 1);
                    }
                    Err(e) => {
                        debug!(seq = open.w.seq(), error = %e, "segment write failed");
                        Counters::add(&c.segments_failed, 1);
                        if let Some(obs) = &observer {
                            obs(open.failed());
                        }
                        writer = None;
                        if fatal(&e) {
                            break Err(e.into());
                        }
                    }
                }
            }
            Step::Discard(n) => trace!(bytes = n, "no open segment, bytes dropped"),
            Step::Finish => {
                if let Some(w) = writer.take() {
                    finish(&mut finishing, w, &stats, &observer, opts.max_finishing).await;
                }
            }
            Step::Nothing => {}
        }
    };
    // A segment cut short (cancellation, worker error) still ends cleanly for its readers.
    if let Some(w) = writer.take() {
        finish(&mut finishing, w, &stats, &observer, 0).await;
    }
    while let Some(r) = finishing.join_next().await {
        count_finish(r, &stats);
    }
    if result.is_ok() && opts.close_at_end && !cancel.is_cancelled() {
        match publisher.close().await {
            Ok(()) => {}
            Err(e) if e.is_end_of_channel() => {}
            Err(e) => warn!(error = %e, "closing the trickle channel failed"),
        }
    }
    result
}

/// Errors after which no later segment can succeed.
fn fatal(e: &TrickleError) -> bool {
    matches!(
        e,
        TrickleError::TerminalFailures { .. }
            | TrickleError::StreamNotFound
            | TrickleError::EndOfStream
            | TrickleError::Closed
            | TrickleError::InvalidUrl(_)
    )
}

/// Ends `seg` in the background, keeping at most `max` finishes in flight. The segment's
/// timing goes to `observer` when the server answers.
async fn finish(
    set: &mut JoinSet<Result<(), TrickleError>>,
    seg: OpenSegment,
    stats: &StatsHandle,
    observer: &Option<SegmentObserver>,
    max: usize,
) {
    let observer = observer.clone();
    set.spawn(async move {
        // The body ends here: its last byte has been handed to the request.
        let ended = Instant::now();
        let OpenSegment { w, opened, bytes } = seg;
        let seq = w.seq();
        let r = w.finish().await;
        if let Some(obs) = observer {
            let ok = r.is_ok();
            obs(SegmentTiming {
                seq,
                bytes,
                ok,
                first_byte: None,
                total: opened.elapsed(),
                ack: ok.then(|| ended.elapsed()),
            });
        }
        r
    });
    while set.len() > max {
        match set.join_next().await {
            Some(r) => count_finish(r, stats),
            None => break,
        }
    }
}

fn count_finish(r: Result<Result<(), TrickleError>, tokio::task::JoinError>, stats: &StatsHandle) {
    match r {
        Ok(Ok(())) => Counters::add(&stats.0.segments_ok, 1),
        Ok(Err(e)) => {
            debug!(error = %e, "segment not acknowledged");
            Counters::add(&stats.0.segments_failed, 1);
        }
        Err(_) => Counters::add(&stats.0.segments_failed, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_event_contract() {
        let data = Bytes::from_static(b"x");
        assert_eq!(step(false, SegmentEvent::Start { seq_hint: 0 }), Step::Open);
        assert_eq!(step(true, SegmentEvent::Start { seq_hint: 1 }), Step::Open);
        assert_eq!(
            step(true, SegmentEvent::Data(data.clone())),
            Step::Write(data.clone())
        );
        assert_eq!(step(false, SegmentEvent::Data(data)), Step::Discard(1));
        assert_eq!(step(true, SegmentEvent::End), Step::Finish);
        assert_eq!(step(false, SegmentEvent::End), Step::Nothing);
    }

    #[test]
    fn only_channel_ending_errors_are_fatal() {
        assert!(fatal(&TrickleError::TerminalFailures { failures: 3 }));
        assert!(fatal(&TrickleError::StreamNotFound));
        assert!(!fatal(&TrickleError::WriteStalled { seq: 1 }));
        assert!(!fatal(&TrickleError::Http { status: 500 }));
    }
}
