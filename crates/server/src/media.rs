//! A job's media: client JPEGs → encoder → the job's input channel, and the output channel →
//! decoder → JPEGs fanned out to every viewer. Bounded at every step: the encoder queue
//! drops its oldest frame, the decoder skips to the newest segment, and each viewer reads a
//! broadcast ring where a slow reader loses frames instead of growing a buffer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lpgw_bridge::{
    ChannelAccess, FeedOptions, MediaSession, PublishOptions, SegmentObserver, SegmentTiming,
    SessionChannels, SessionOptions,
};
use lpgw_media::{
    EncoderConfig, InputFrame, InputImage, Output, OutputConfig, OutputFormat, Publisher,
    PublisherConfig,
};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, warn};

use crate::backend::MediaEndpoints;
use crate::metrics::{Drop, Metrics};
use crate::phase::InputClock;

/// Output frames a viewer may fall behind before it skips ahead.
const VIEWER_BUFFER: usize = 4;
/// Input frames remembered for latency matching.
const PENDING_FRAMES: usize = 512;

/// One processed frame.
#[derive(Debug)]
pub(crate) struct OutFrame {
    pub(crate) jpeg: Bytes,
    /// The id the client gave the input frame this came from, when known.
    pub(crate) client_id: Option<u64>,
    /// Time from the input frame's arrival to this frame's decoding, when matched.
    pub(crate) latency: Option<Duration>,
}

/// Per-job counters shown in the job status.
#[derive(Debug, Default)]
pub(crate) struct MediaCounters {
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) dropped_lag: AtomicU64,
    pub(crate) dropped_invalid: AtomicU64,
}

/// Input frames waiting for their output: (pts, arrival, client id).
#[derive(Default)]
struct Pending {
    /// When the first frame arrived: timestamps count from it, as the encoder rebases its
    /// input to start at 0 and output timestamps must match input ones.
    origin: Option<Instant>,
    clock: InputClock,
    frames: VecDeque<(i64, Instant, Option<u64>)>,
}

/// A job's running media pipeline.
pub(crate) struct JobMedia {
    /// Both directions over the job's channels; moved to new ones by [`Self::rewire`].
    session: Mutex<MediaSession>,
    on_fault: FaultHook,
    publisher: Publisher,
    pending: Arc<Mutex<Pending>>,
    out: broadcast::Sender<Arc<OutFrame>>,
    newest: watch::Receiver<Option<Arc<OutFrame>>>,
    seen_lag: AtomicU64,
    seen_invalid: AtomicU64,
    pub(crate) counters: Arc<MediaCounters>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for JobMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobMedia").finish_non_exhaustive()
    }
}

/// Told when a media channel fails for good, with the reason.
type FaultHook = Arc<dyn Fn(String) + Send + Sync>;

/// The session's view of a job's channels.
fn session_channels(ends: &MediaEndpoints) -> SessionChannels {
    SessionChannels {
        input: ends.publish_url.clone(),
        output: ends.subscribe_url.clone(),
        access: match &ends.http {
            Some(c) => ChannelAccess::Pinned(c.clone()),
            None => ChannelAccess::Verified,
        },
    }
}

/// Reports a failure of the session's current generation to `on_fault`. A generation that
/// is stopped by a rewire ends with `Ok` and reports nothing.
fn watch_session(session: &mut MediaSession, on_fault: &FaultHook) {
    let Some((publishing, feeding)) = session.take_tasks() else {
        return;
    };
    let span = tracing::Span::current();
    for (task, what) in [(publishing, "input"), (feeding, "output")] {
        let fault = on_fault.clone();
        tokio::spawn(
            async move {
                if let Ok(Err(e)) = task.await {
                    warn!(error = %e, "{what} channel failed");
                    fault(format!("{what} channel failed: {e}"));
                }
            }
            .instrument(span.clone()),
        );
    }
}

/// Media settings taken from the service configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MediaSettings {
    pub(crate) fps: u32,
    pub(crate) jpeg_quality: u8,
}

impl JobMedia {
    /// Starts encoder, decoder and both bridges; everything stops when `cancel` fires.
    /// `on_output` runs for every decoded frame (phase tracking); `on_fault` when a media
    /// channel fails for good (an unreachable orchestrator, a certificate that no longer
    /// matches its pin), with the reason.
    pub(crate) fn start(
        ends: &MediaEndpoints,
        settings: MediaSettings,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
        on_output: impl Fn() + Send + Sync + 'static,
        on_fault: impl Fn(String) + Send + Sync + 'static,
    ) -> Result<Arc<Self>, String> {
        let on_fault: FaultHook = Arc::new(on_fault);
        let encoder = EncoderConfig {
            fps: settings.fps.max(1),
            ..EncoderConfig::default()
        };
        let (publisher, segments) = Publisher::spawn(PublisherConfig {
            encoder,
            ..PublisherConfig::default()
        })
        .map_err(|e| e.to_string())?;
        let (input, output, mut frames) = Output::spawn(OutputConfig {
            format: OutputFormat::Jpeg {
                quality: settings.jpeg_quality.clamp(1, 100),
            },
            ..OutputConfig::default()
        })
        .map_err(|e| e.to_string())?;

        let channels = session_channels(ends);
        let opts = SessionOptions {
            publish: PublishOptions {
                close_at_end: false,
                on_segment: Some(segment_observer(&metrics, Direction::In)),
                ..PublishOptions::default()
            },
            feed: FeedOptions {
                strict_content_type: false,
                on_segment: Some(segment_observer(&metrics, Direction::Out)),
                ..FeedOptions::default()
            },
            // A restarting runner may close its old channels long before it has new ones:
            // the decoder waits for them and closes with the job.
            rewirable: true,
            ..SessionOptions::default()
        };
        let mut session = MediaSession::start(&channels, segments, input, opts, cancel.clone())
            .map_err(|e| e.to_string())?;
        let span = tracing::Span::current();
        watch_session(&mut session, &on_fault);

        let (out, _) = broadcast::channel(VIEWER_BUFFER);
        let (newest_tx, newest) = watch::channel(None);
        let pending: Arc<Mutex<Pending>> = Arc::default();
        let counters: Arc<MediaCounters> = Arc::default();
        let media = Arc::new(Self {
            session: Mutex::new(session),
            on_fault,
            publisher,
            pending: pending.clone(),
            out: out.clone(),
            newest,
            seen_lag: AtomicU64::new(0),
            seen_invalid: AtomicU64::new(0),
            counters: counters.clone(),
            metrics: metrics.clone(),
        });

        let c = cancel.clone();
        tokio::spawn(
            async move {
                loop {
                    let f = tokio::select! {
                        () = c.cancelled() => break,
                        f = frames.recv() => f,
                    };
                    let Some(Ok(f)) = f else { break };
                    let Some(jpeg) = f.jpeg else { continue };
                    let (client_id, latency) = f
                        .pts
                        .and_then(|pts| take_pending(&pending, pts))
                        .map_or((None, None), |(at, id)| (id, Some(at.elapsed())));
                    if let Some(l) = latency {
                        metrics.frame_latency.observe(l);
                    }
                    metrics.frames_out.fetch_add(1, Relaxed);
                    counters.frames_out.fetch_add(1, Relaxed);
                    on_output();
                    let frame = Arc::new(OutFrame {
                        jpeg,
                        client_id,
                        latency,
                    });
                    newest_tx.send_replace(Some(frame.clone()));
                    let _ = out.send(frame);
                }
                debug!("output frames ended");
                let joined = tokio::task::spawn_blocking(move || output.join()).await;
                if let Ok(Err(e)) = joined {
                    debug!(error = %e, "output pipeline ended with an error");
                }
            }
            .instrument(span),
        );

        // Encoder drops (lag, undecodable JPEGs) are found on the encoder threads: collect
        // them periodically, not only on the next push; close the encoder when the job ends.
        let m = Arc::downgrade(&media);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                match m.upgrade() {
                    Some(m) => m.sync_drops(),
                    None => return,
                }
            }
            if let Some(m) = m.upgrade() {
                m.publisher.close();
            }
        });
        Ok(media)
    }

    /// Queues one JPEG frame. Never blocks: when the encoder lags the oldest queued frame is
    /// dropped (counted).
    pub(crate) fn push_jpeg(&self, jpeg: Bytes, client_id: Option<u64>) {
        let now = Instant::now();
        let pts = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let origin = *p.origin.get_or_insert(now);
            let pts = p.clock.stamp(now.duration_since(origin));
            if p.frames.len() >= PENDING_FRAMES {
                p.frames.pop_front();
            }
            p.frames.push_back((pts, now, client_id));
            pts
        };
        self.metrics.frames_in.fetch_add(1, Relaxed);
        self.counters.frames_in.fetch_add(1, Relaxed);
        if self
            .publisher
            .push(InputFrame::with_pts(InputImage::Jpeg(jpeg), pts))
            .is_err()
        {
            debug!("encoder closed; frame dropped");
        }
        self.sync_drops();
    }

    /// Moves the encoder's drop counters into the service metrics.
    fn sync_drops(&self) {
        let s = self.publisher.stats();
        let lag = s
            .dropped_queue_full
            .saturating_sub(self.seen_lag.swap(s.dropped_queue_full, Relaxed));
        if lag > 0 {
            self.metrics.dropped(Drop::EncoderLag, lag);
            self.counters.dropped_lag.fetch_add(lag, Relaxed);
        }
        let bad = s
            .dropped_invalid
            .saturating_sub(self.seen_invalid.swap(s.dropped_invalid, Relaxed));
        if bad > 0 {
            self.metrics.dropped(Drop::Invalid, bad);
            self.counters.dropped_invalid.fetch_add(bad, Relaxed);
        }
    }

    /// Moves both directions to the job's new channels (its Scope runner restarted and
    /// created them again). The encoder, the decoder, the counters and every viewer carry
    /// on: frame numbers and timestamps continue where they were.
    pub(crate) fn rewire(&self, ends: &MediaEndpoints) -> Result<(), String> {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        session
            .rewire(&session_channels(ends))
            .map_err(|e| e.to_string())?;
        watch_session(&mut session, &self.on_fault);
        Ok(())
    }

    /// A new viewer of the output.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<OutFrame>> {
        self.out.subscribe()
    }

    /// The newest output frame, if any.
    pub(crate) fn newest(&self) -> Option<Arc<OutFrame>> {
        self.newest.borrow().clone()
    }
}

/// Which trickle channel a segment timing belongs to.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// The job's input channel (our segment POSTs).
    In,
    /// The job's output channel (the runner's segments we read).
    Out,
}

/// Feeds a bridge's per-segment timings into the segment histograms. Only completed
/// segments count towards the durations, so a broken-off segment does not pass for a short
/// one.
fn segment_observer(metrics: &Arc<Metrics>, dir: Direction) -> SegmentObserver {
    let m = metrics.clone();
    Arc::new(move |t: SegmentTiming| observe_segment(&m, dir, &t))
}

fn observe_segment(m: &Metrics, dir: Direction, t: &SegmentTiming) {
    match dir {
        Direction::In => {
            if let Some(ack) = t.ack {
                m.segment_ack_in.observe(ack);
            }
            if t.ok {
                m.segment_duration_in.observe(t.total);
            }
        }
        Direction::Out => {
            if let Some(first) = t.first_byte {
                m.segment_first_byte_out.observe(first);
            }
            if t.ok {
                m.segment_duration_out.observe(t.total);
            }
        }
    }
}

/// Finds the input frame an output frame came from (same timestamp) and forgets it and
/// every older one.
fn take_pending(pending: &Mutex<Pending>, pts: i64) -> Option<(Instant, Option<u64>)> {
    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
    let pos = p.frames.iter().position(|(t, _, _)| *t == pts)?;
    let (_, at, id) = p.frames[pos];
    p.frames.drain(..=pos);
    Some((at, id))
}

/// A cheap check that bytes look like one JPEG picture (SOI at the start, EOI near the end),
/// so obvious garbage is refused before it reaches the decoder thread.
pub(crate) fn looks_like_jpeg(b: &[u8]) -> bool {
    if b.len() < 4 || b[..3] != [0xFF, 0xD8, 0xFF] {
        return false;
    }
    let tail = &b[b.len().saturating_sub(32)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_sniffing() {
        assert!(looks_like_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 0xFF, 0xD9]));
        assert!(!looks_like_jpeg(b"GIF89a......"));
        assert!(!looks_like_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4]));
        assert!(!looks_like_jpeg(&[]));
    }

    #[test]
    fn pending_matches_by_timestamp_and_forgets_older() {
        let p = Mutex::new(Pending::default());
        let now = Instant::now();
        {
            let mut g = p.lock().unwrap();
            for (pts, id) in [(10, 1), (20, 2), (30, 3)] {
                g.frames.push_back((pts, now, Some(id)));
            }
        }
        assert_eq!(take_pending(&p, 20).map(|x| x.1), Some(Some(2)));
        assert!(take_pending(&p, 10).is_none());
        assert_eq!(take_pending(&p, 30).map(|x| x.1), Some(Some(3)));
        assert!(p.lock().unwrap().frames.is_empty());
    }
}
