//! Trickle segments → the media output's segment input.

use std::time::Instant;

use lpgw_media::{MediaError, SegmentEvent, SegmentInput};
use lpgw_trickle::client::Subscriber;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use crate::content::check_content_type;
use crate::stats::{Counters, StatsHandle};
use crate::{BridgeError, SegmentObserver, SegmentTiming};

/// How [`feed_output`] behaves.
#[derive(Clone)]
pub struct FeedOptions {
    /// Close the media input when the channel ends or on cancellation, so the decoder flushes
    /// its last frames and the frame channel ends. Default `true`.
    pub close_at_end: bool,
    /// Fail on a segment whose content type is not MPEG-TS ([`BridgeError::ContentType`]);
    /// when `false` such segments are skipped and counted. Default `true`.
    pub strict_content_type: bool,
    /// Told each segment's sequence number as it starts (e.g. for a payment meter); never
    /// waited on: a full channel misses the notification. Default none.
    pub segment_notify: Option<mpsc::Sender<u64>>,
    /// Receives a copy of every segment event fed to the decoder (e.g. to record the stream
    /// to a file). Awaited, so a slow recorder slows the feed rather than growing a buffer;
    /// a closed receiver just stops the copies. Default none.
    pub copy_to: Option<mpsc::Sender<SegmentEvent>>,
    /// Told every fed segment's timing once its body is over: the wait from its response to
    /// its first body byte ([`SegmentTiming::first_byte`]) and its length from the first
    /// byte to the end. Skipped segments (wrong content type) are not reported. Default none.
    pub on_segment: Option<SegmentObserver>,
}

impl std::fmt::Debug for FeedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedOptions")
            .field("close_at_end", &self.close_at_end)
            .field("strict_content_type", &self.strict_content_type)
            .field("segment_notify", &self.segment_notify)
            .field("copy_to", &self.copy_to)
            .field("on_segment", &self.on_segment.is_some())
            .finish()
    }
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self {
            close_at_end: true,
            strict_content_type: true,
            segment_notify: None,
            copy_to: None,
            on_segment: None,
        }
    }
}

/// Feeds every segment of `sub` into `input` as its bytes arrive, until the channel ends,
/// the media output stops taking input, or `cancel` fires.
///
/// Each segment is started with its trickle sequence number, its chunks are pushed as they
/// arrive (so decoding starts before the segment is complete) and it is ended when its body
/// ends, including when the body breaks off: the decoder then loses the frames up to the next
/// keyframe, not the stream. Memory is bounded by the media input's own limits.
pub async fn feed_output(
    sub: &mut Subscriber,
    input: &SegmentInput,
    opts: FeedOptions,
    stats: StatsHandle,
    cancel: CancellationToken,
) -> Result<(), BridgeError> {
    let r = run(sub, input, &opts, &stats, &cancel).await;
    if opts.close_at_end {
        input.close();
    }
    match r {
        // The output pipeline was closed or stopped: its consumer is gone, nothing to report.
        Err(BridgeError::Media(MediaError::Closed)) => Ok(()),
        r => r,
    }
}

async fn run(
    sub: &mut Subscriber,
    input: &SegmentInput,
    opts: &FeedOptions,
    stats: &StatsHandle,
    cancel: &CancellationToken,
) -> Result<(), BridgeError> {
    let c = &stats.0;
    let mut copy = opts.copy_to.clone();
    loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => return Ok(()),
            next = sub.next_segment() => next,
        };
        let Some(mut seg) = next? else {
            debug!("input channel ended");
            return Ok(());
        };
        // The response (headers) is here; the body may still wait for the producer.
        let answered = Instant::now();
        let seq = seg.seq();
        if !check_content_type(seg.content_type()) {
            let content_type = seg.content_type().unwrap_or_default().to_owned();
            if opts.strict_content_type {
                return Err(BridgeError::ContentType { seq, content_type });
            }
            debug!(seq, content_type, "not MPEG-TS, segment skipped");
            Counters::add(&c.segments_skipped, 1);
            continue;
        }
        Counters::add(&c.segments, 1);
        if let Some(n) = &opts.segment_notify {
            let _ = n.try_send(seq);
        }
        input.start_segment(Some(seq))?;
        send_copy(&mut copy, SegmentEvent::Start { seq_hint: seq }).await;
        let mut first_byte: Option<Instant> = None;
        let mut bytes = 0u64;
        let ok = loop {
            let chunk = tokio::select! {
                biased;
                () = cancel.cancelled() => break false,
                chunk = seg.chunk() => chunk,
            };
            match chunk {
                Ok(Some(b)) => {
                    first_byte.get_or_insert_with(Instant::now);
                    bytes += b.len() as u64;
                    Counters::add(&c.bytes, b.len() as u64);
                    Counters::add(&c.chunks, 1);
                    send_copy(&mut copy, SegmentEvent::Data(b.clone())).await;
                    input.push(b)?;
                }
                Ok(None) => break true,
                Err(e) => {
                    debug!(seq, error = %e, "segment body broke off");
                    break false;
                }
            }
        };
        if let Some(obs) = &opts.on_segment {
            obs(SegmentTiming {
                seq,
                bytes,
                ok,
                first_byte: first_byte.map(|t| t.duration_since(answered)),
                total: first_byte.unwrap_or(answered).elapsed(),
                ack: None,
            });
        }
        input.end_segment()?;
        send_copy(&mut copy, SegmentEvent::End).await;
        trace!(seq, ok, "segment fed");
        Counters::add(
            if ok {
                &c.segments_ok
            } else {
                &c.segments_failed
            },
            1,
        );
        if cancel.is_cancelled() {
            return Ok(());
        }
    }
}

async fn send_copy(copy: &mut Option<mpsc::Sender<SegmentEvent>>, ev: SegmentEvent) {
    if let Some(tx) = copy
        && tx.send(ev).await.is_err()
    {
        *copy = None;
    }
}
