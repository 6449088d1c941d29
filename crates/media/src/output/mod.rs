//! MPEG-TS segments → decoded frames (and JPEG), on dedicated threads.
//!
//! Segment bytes are fed incrementally through [`SegmentInput`] (start, chunks, end) so
//! decoding starts while a segment is still arriving. The worker demuxes the first video
//! stream, decodes it with the FFmpeg decoder for its codec, and sends [`DecodedFrame`]s on a
//! bounded channel. When the consumer is slow, the worker blocks on that channel, segments pile
//! up in the input buffer, and the [`LagPolicy`] decides: skip to the newest segment, or fail.
//! Damage (lost packets, garbage, truncation, decoder errors) costs the frames up to the next
//! keyframe, never the stream.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ffmpeg_next::format::Pixel;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use crate::codec::{Converter, VideoDecoder};
use crate::error::MediaError;
use crate::frame::{DecodedFrame, Yuv420Frame};
use crate::jpeg::JpegEncoder;
use crate::stats::{self, OutputCounters};
use crate::ts::{Demuxer, EsPacket};

mod inbox;

use inbox::{InState, Inbox, Item};
pub use inbox::{OutputStatsReader, SegmentInput};

/// What to do when segments arrive faster than frames are consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LagPolicy {
    /// Drop every older queued segment (and the rest of the one being decoded) and continue
    /// with the newest. Latency stays bounded; frames are lost.
    #[default]
    SkipToNewest,
    /// Stop the pipeline with [`MediaError::Lagging`].
    Fail,
}

/// Which picture encodings each [`DecodedFrame`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputFormat {
    /// Packed yuv420p planes only.
    Yuv420,
    /// JPEG only, at the given quality (1..=100).
    Jpeg {
        /// JPEG quality, see [`JpegEncoder`].
        quality: u8,
    },
    /// Both.
    Both {
        /// JPEG quality, see [`JpegEncoder`].
        quality: u8,
    },
}

/// Output pipeline settings.
#[derive(Clone, Debug)]
pub struct OutputConfig {
    /// Lag handling. Default [`LagPolicy::SkipToNewest`].
    pub lag: LagPolicy,
    /// Segments (complete or partial) allowed to wait behind the one being decoded before
    /// the lag policy applies. Default 2.
    pub max_pending_segments: usize,
    /// Bytes allowed to wait in the input buffer; beyond that incoming bytes are dropped until
    /// the next segment starts. Default 32 MiB.
    pub max_buffered_bytes: usize,
    /// Capacity of the decoded-frame channel. Default 4.
    pub frame_capacity: usize,
    /// Picture encodings to deliver. Default JPEG at quality 80.
    pub format: OutputFormat,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            lag: LagPolicy::default(),
            max_pending_segments: 2,
            max_buffered_bytes: 32 * 1024 * 1024,
            frame_capacity: 4,
            format: OutputFormat::Jpeg { quality: 80 },
        }
    }
}

/// Handle to the output threads: `lpgw-media-out` (demux, decode) and `lpgw-media-out-enc`
/// (yuv420p copy, JPEG encoding), which overlap.
#[derive(Debug)]
#[must_use = "dropping the Output handle detaches the worker; keep it to join"]
pub struct Output {
    threads: Vec<JoinHandle<Result<(), MediaError>>>,
}

impl Output {
    /// Starts the worker. Returns the input side, the worker handle and the frame channel.
    /// The last item on the channel is an `Err` if the pipeline failed (e.g. lagging under
    /// [`LagPolicy::Fail`]); a normal end just closes the channel.
    #[allow(clippy::type_complexity)]
    pub fn spawn(
        cfg: OutputConfig,
    ) -> Result<
        (
            SegmentInput,
            Self,
            mpsc::Receiver<Result<DecodedFrame, MediaError>>,
        ),
        MediaError,
    > {
        crate::codec::init();
        let inbox = Arc::new(Inbox {
            state: Mutex::new(InState::default()),
            ready: Condvar::new(),
        });
        let stats = Arc::new(OutputCounters::default());
        let (tx, rx) = mpsc::channel(cfg.frame_capacity.max(1));
        // A couple of pictures in flight between decoding and JPEG encoding.
        let (render_tx, render_rx) = std::sync::mpsc::sync_channel(2);
        let (r_inbox, r_stats, format) = (Arc::clone(&inbox), Arc::clone(&stats), cfg.format);
        let render_thread = std::thread::Builder::new()
            .name("lpgw-media-out-enc".into())
            .spawn(move || {
                // Built on the thread: the scaler and JPEG encoder are not `Send`.
                let stage = RenderStage {
                    inbox: r_inbox,
                    stats: r_stats,
                    tx,
                    format,
                    conv: Converter::default(),
                    jpeg: None,
                };
                stage.run(render_rx);
                Ok(())
            })
            .map_err(MediaError::Spawn)?;
        let worker = OutWorker {
            inbox: Arc::clone(&inbox),
            stats: Arc::clone(&stats),
            render: render_tx,
            demux: Demuxer::new(),
            dec: None,
            need_key: true,
            unwrap: PtsUnwrap::default(),
            seq: None,
        };
        let decode_thread = std::thread::Builder::new()
            .name("lpgw-media-out".into())
            .spawn(move || worker.run())
            .map_err(MediaError::Spawn)?;
        Ok((
            SegmentInput { inbox, stats, cfg },
            Self {
                threads: vec![decode_thread, render_thread],
            },
            rx,
        ))
    }

    /// Waits for the worker to exit. Blocks: call from a std thread or `spawn_blocking`.
    pub fn join(mut self) -> Result<(), MediaError> {
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            let r = t.join().unwrap_or(Err(MediaError::Closed));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Unwraps 33-bit PES timestamps into a continuous i64 timeline.
#[derive(Debug, Default)]
struct PtsUnwrap {
    last_raw: Option<u64>,
    value: i64,
}

impl PtsUnwrap {
    fn unwrap(&mut self, raw: u64) -> i64 {
        const WRAP: i64 = 1 << 33;
        match self.last_raw {
            None => self.value = raw as i64,
            Some(last) => {
                let mut d = (raw as i64 - last as i64).rem_euclid(WRAP);
                if d >= WRAP / 2 {
                    d -= WRAP;
                }
                self.value += d;
            }
        }
        self.last_raw = Some(raw);
        self.value
    }
}

struct OutWorker {
    inbox: Arc<Inbox>,
    stats: Arc<OutputCounters>,
    render: SyncSender<ToRender>,
    demux: Demuxer,
    dec: Option<VideoDecoder>,
    need_key: bool,
    unwrap: PtsUnwrap,
    seq: Option<u64>,
}

/// Work for the render stage.
enum ToRender {
    Frame(ffmpeg_next::frame::Video, Option<u64>),
    Fail(usize),
}

/// Second stage: yuv420p copy and JPEG encoding, on its own thread so it overlaps decoding.
struct RenderStage {
    inbox: Arc<Inbox>,
    stats: Arc<OutputCounters>,
    tx: mpsc::Sender<Result<DecodedFrame, MediaError>>,
    format: OutputFormat,
    conv: Converter,
    jpeg: Option<JpegEncoder>,
}

/// The consumer dropped the frame receiver.
struct Gone;

struct CloseOnDrop(Arc<Inbox>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.closed = true;
        s.items.clear();
        s.bytes = 0;
        s.starts = 0;
    }
}

enum Next {
    Item(Item),
    Skip,
    Failed(usize),
    Closed,
}

impl OutWorker {
    fn next(&self) -> Next {
        let mut s = self.inbox.lock();
        loop {
            if let Some(p) = s.failed {
                return Next::Failed(p);
            }
            if s.skip_current {
                s.skip_current = false;
                return Next::Skip;
            }
            if let Some(item) = s.items.pop_front() {
                match &item {
                    Item::Start(_) => s.starts -= 1,
                    Item::Data(b) => s.bytes -= b.len(),
                    Item::End => {}
                }
                stats::set(&self.stats.queue_segments, s.starts as u64);
                stats::set(&self.stats.queue_bytes, s.bytes as u64);
                return Next::Item(item);
            }
            if s.closed {
                return Next::Closed;
            }
            s = self
                .inbox
                .ready
                .wait_timeout(s, Duration::from_millis(500))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn run(mut self) -> Result<(), MediaError> {
        // However the worker ends, the input side must start failing instead of buffering.
        let _close = CloseOnDrop(Arc::clone(&self.inbox));
        let mut packets = Vec::new();
        loop {
            let res = match self.next() {
                Next::Item(Item::Start(seq)) => {
                    trace!(?seq, "segment start");
                    // A segment that never got its End (truncated input) ends here.
                    self.demux.end_segment(&mut packets);
                    let r = self.decode_all(&mut packets);
                    self.seq = seq;
                    r
                }
                Next::Item(Item::Data(b)) => {
                    self.demux.push(&b, &mut packets);
                    self.decode_all(&mut packets)
                }
                Next::Item(Item::End) => {
                    self.demux.end_segment(&mut packets);
                    self.decode_all(&mut packets)
                }
                Next::Skip => {
                    self.demux.reset_partial();
                    self.need_key = true;
                    Ok(())
                }
                Next::Failed(pending_segments) => {
                    let _ = self.render.send(ToRender::Fail(pending_segments));
                    return Err(MediaError::Lagging { pending_segments });
                }
                Next::Closed => break,
            };
            self.sync_demux_stats();
            if res.is_err() {
                return Ok(());
            }
        }
        self.demux.end_segment(&mut packets);
        if self.decode_all(&mut packets).is_ok() {
            if let Some(dec) = self.dec.as_mut() {
                dec.send_eof();
            }
            let _ = self.receive_frames();
        }
        self.sync_demux_stats();
        debug!("output finished");
        Ok(())
    }

    fn sync_demux_stats(&self) {
        stats::set(&self.stats.ts_cc_errors, self.demux.cc_errors);
        stats::set(&self.stats.ts_skipped_bytes, self.demux.skipped_bytes);
    }

    fn decode_all(&mut self, packets: &mut Vec<EsPacket>) -> Result<(), Gone> {
        for pkt in packets.drain(..) {
            stats::add(&self.stats.packets_demuxed, 1);
            if self.inbox.lock().skip_current {
                // The lag policy dropped this segment: stop spending time on it.
                stats::add(&self.stats.dropped_waiting_keyframe, 1);
                continue;
            }
            if pkt.gap_before {
                // Something before this unit was lost; later frames may reference it.
                self.need_key = true;
            }
            if pkt.corrupt {
                stats::add(&self.stats.dropped_corrupt, 1);
                self.need_key = true;
                continue;
            }
            let id = pkt.codec.ffmpeg_id();
            if self.dec.as_ref().is_none_or(|d| d.id != id) {
                match VideoDecoder::new(id) {
                    Ok(d) => self.dec = Some(d),
                    Err(e) => {
                        warn!(error = %e, "cannot open decoder");
                        stats::add(&self.stats.decode_errors, 1);
                        continue;
                    }
                }
                self.need_key = true;
            }
            if self.need_key && !pkt.is_key {
                stats::add(&self.stats.dropped_waiting_keyframe, 1);
                continue;
            }
            self.need_key = false;
            let pts = pkt.pts.map(|p| self.unwrap.unwrap(p));
            let t = stats::thread_cpu();
            let sent = self.dec.as_mut().map(|d| d.send(&pkt.data, pts));
            stats::add(&self.stats.decode_us, stats::cpu_us_since(t));
            if let Some(Err(e)) = sent {
                trace!(error = %e, "decoder rejected packet");
                stats::add(&self.stats.decode_errors, 1);
                self.need_key = true;
            }
            self.receive_frames()?;
        }
        Ok(())
    }

    fn receive_frames(&mut self) -> Result<(), Gone> {
        loop {
            let t = stats::thread_cpu();
            let pic = self.dec.as_mut().and_then(VideoDecoder::receive);
            stats::add(&self.stats.decode_us, stats::cpu_us_since(t));
            let Some(pic) = pic else {
                return Ok(());
            };
            stats::add(&self.stats.frames_decoded, 1);
            if pic.is_corrupt() {
                stats::add(&self.stats.dropped_corrupt_frames, 1);
                self.need_key = true;
                continue;
            }
            if self.render.send(ToRender::Frame(pic, self.seq)).is_err() {
                debug!("frame receiver dropped, stopping output");
                return Err(Gone);
            }
        }
    }
}

impl RenderStage {
    fn run(mut self, input: Receiver<ToRender>) {
        // If the consumer goes away, the input side must stop buffering.
        let _close = CloseOnDrop(Arc::clone(&self.inbox));
        while let Ok(item) = input.recv() {
            let pic = match item {
                ToRender::Frame(pic, seq) => (pic, seq),
                ToRender::Fail(pending_segments) => {
                    let _ = self
                        .tx
                        .blocking_send(Err(MediaError::Lagging { pending_segments }));
                    return;
                }
            };
            let t = stats::thread_cpu();
            let out = self.render(&pic.0, pic.1);
            stats::add(&self.stats.encode_out_us, stats::cpu_us_since(t));
            let frame = match out {
                Ok(f) => f,
                Err(e) => {
                    warn!(error = %e, "cannot convert decoded frame");
                    stats::add(&self.stats.decode_errors, 1);
                    continue;
                }
            };
            if self.tx.blocking_send(Ok(frame)).is_err() {
                debug!("frame receiver dropped, stopping output");
                return;
            }
            stats::add(&self.stats.frames_out, 1);
        }
    }

    fn render(
        &mut self,
        pic: &ffmpeg_next::frame::Video,
        seq: Option<u64>,
    ) -> Result<DecodedFrame, MediaError> {
        let (want_yuv, quality) = match self.format {
            OutputFormat::Yuv420 => (true, None),
            OutputFormat::Jpeg { quality } => (false, Some(quality)),
            OutputFormat::Both { quality } => (true, Some(quality)),
        };
        let yuv = if want_yuv {
            if pic.format() == Pixel::YUV420P {
                Some(Yuv420Frame::from_ffmpeg(pic))
            } else {
                let conv = self.conv.convert(pic, Pixel::YUV420P)?;
                Some(Yuv420Frame::from_ffmpeg(&conv))
            }
        } else {
            None
        };
        let jpeg = match quality {
            Some(q) => Some(
                self.jpeg
                    .get_or_insert_with(|| JpegEncoder::new(q))
                    .encode_ffmpeg(pic)?,
            ),
            None => None,
        };
        Ok(DecodedFrame {
            pts: pic.timestamp().or(pic.pts()),
            segment_seq: seq,
            yuv,
            jpeg,
            width: pic.width(),
            height: pic.height(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PtsUnwrap;

    #[test]
    fn unwrap_crosses_33_bit_boundary() {
        let mut u = PtsUnwrap::default();
        let top = (1u64 << 33) - 3000;
        assert_eq!(u.unwrap(top), top as i64);
        assert_eq!(u.unwrap(0), top as i64 + 3000);
        assert_eq!(u.unwrap(3000), top as i64 + 6000);
        // A small step backwards stays a step backwards.
        assert_eq!(u.unwrap(0), top as i64 + 3000);
    }
}
