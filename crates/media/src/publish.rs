//! Frames → H.264 → MPEG-TS segments, on a dedicated thread.
//!
//! Frames go into a bounded drop-oldest queue ([`Publisher::push`] never blocks). One thread
//! decodes JPEG or converts RGB with swscale; a second encodes with libx264 and muxes MPEG-TS. Segment
//! bytes stream out as [`SegmentEvent`]s on a bounded channel while the segment is still being
//! produced, so a trickle publisher can forward them into an already-open POST. If that
//! consumer is slow, the worker blocks on the channel and the input queue absorbs the
//! backlog by dropping the oldest frames.
//!
//! No audio track is produced: the accepted inputs (JPEG, RGB, YUV pictures) carry no audio,
//! and a silent AAC track would cost an encoder and bytes for nothing. Adding one later means a
//! second PID in the PMT and interleaving by DTS in the muxer.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use crate::codec::{Converter, EncoderConfig, H264Encoder};
use crate::error::MediaError;
use crate::frame::{InputFrame, InputImage};
use crate::jpeg::JpegDecoder;
use crate::queue::{DropOldest, Pushed};
use crate::segmenter::{Boundary, KeyframeClock, PtsClock, Segmenter};
use crate::stats::{self, PublishCounters, PublishStats};
use crate::ts::Muxer;

/// One step in the stream of segment bytes. Every `Start` is followed by `Data` events and
/// then exactly one `End`, except when the stream stops abruptly (worker error), in which case
/// the channel closes after the last `Data`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentEvent {
    /// A new segment begins; `seq_hint` counts segments from 0 within this pipeline.
    Start {
        /// Local segment counter (the trickle layer may use its own numbering).
        seq_hint: u64,
    },
    /// The next bytes of the current segment (whole 188-byte TS packets).
    Data(Bytes),
    /// The current segment is complete.
    End,
}

/// Publisher settings.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// libx264 settings. Default: see [`EncoderConfig`].
    pub encoder: EncoderConfig,
    /// Input frames that may wait for the encoder before the oldest is dropped. Default 8.
    pub queue_capacity: usize,
    /// Minimum wall-clock length of a segment; cuts happen at the first keyframe after it.
    /// Default 1 s (with the default 2 s keyframe interval segments are about 2 s).
    pub min_segment: Duration,
    /// Capacity of the segment event channel. Default 64.
    pub event_capacity: usize,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            encoder: EncoderConfig::default(),
            queue_capacity: 8,
            min_segment: Duration::from_secs(1),
            event_capacity: 64,
        }
    }
}

/// Handle to a running publisher. Dropping it closes the input; the threads then drain the
/// queue, flush the encoder, end the last segment and exit.
#[derive(Debug)]
pub struct Publisher {
    queue: Arc<DropOldest<(InputFrame, Instant)>>,
    stats: Arc<PublishCounters>,
    threads: Vec<JoinHandle<Result<(), MediaError>>>,
}

impl Publisher {
    /// Starts two threads: `lpgw-media-pub-in` (JPEG decoding, conversion to yuv420p) and
    /// `lpgw-media-pub` (H.264 encoding, muxing), so the two overlap. Returns the handle and
    /// the segment events.
    pub fn spawn(cfg: PublisherConfig) -> Result<(Self, mpsc::Receiver<SegmentEvent>), MediaError> {
        crate::codec::init();
        let queue = Arc::new(DropOldest::new(cfg.queue_capacity));
        let stats = Arc::new(PublishCounters::default());
        let (tx, rx) = mpsc::channel(cfg.event_capacity.max(1));
        // One picture in flight between the stages: JPEG decoding overlaps encoding, and a
        // slow encoder backs up into the drop-oldest queue rather than here.
        let (conv_tx, conv_rx) = std::sync::mpsc::sync_channel(1);
        let converter = ConvertStage {
            queue: Arc::clone(&queue),
            stats: Arc::clone(&stats),
            out: conv_tx,
        };
        let worker = Worker {
            queue: Arc::clone(&queue),
            stats: Arc::clone(&stats),
            tx,
            segmenter: Segmenter::new(cfg.min_segment),
            keys: KeyframeClock::new(cfg.encoder.keyframe_interval),
            clock: PtsClock::new(),
            muxer: Muxer::new(),
            seq: 0,
            cfg,
        };
        let convert_thread = std::thread::Builder::new()
            .name("lpgw-media-pub-in".into())
            .spawn(move || converter.run())
            .map_err(MediaError::Spawn)?;
        let encode_thread = std::thread::Builder::new()
            .name("lpgw-media-pub".into())
            .spawn(move || worker.run(conv_rx))
            .map_err(|e| {
                queue.close();
                MediaError::Spawn(e)
            })?;
        Ok((
            Self {
                queue,
                stats,
                threads: vec![encode_thread, convert_thread],
            },
            rx,
        ))
    }

    /// Queues a frame without blocking. When the queue is full the oldest frame is dropped
    /// (counted in `dropped_queue_full`). Fails only when the worker has stopped.
    pub fn push(&self, frame: InputFrame) -> Result<(), MediaError> {
        stats::add(&self.stats.frames_in, 1);
        match self.queue.push((frame, Instant::now())) {
            Pushed::Queued { dropped, depth } => {
                if dropped > 0 {
                    trace!(dropped, "input queue full, dropped oldest");
                    stats::add(&self.stats.dropped_queue_full, dropped as u64);
                }
                stats::set(&self.stats.queue_depth, depth as u64);
                stats::max(&self.stats.queue_high_water, depth as u64);
                Ok(())
            }
            Pushed::Closed => Err(MediaError::Closed),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PublishStats {
        self.stats.snapshot()
    }

    /// Stops accepting frames; the worker drains the queue, flushes and ends the segment.
    pub fn close(&self) {
        self.queue.close();
    }

    /// Closes and waits for the worker. Blocks: call from a std thread or `spawn_blocking`.
    /// The segment receiver must keep being read (or be dropped) or this can wait forever.
    pub fn join(mut self) -> Result<(), MediaError> {
        self.queue.close();
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

impl Drop for Publisher {
    fn drop(&mut self) {
        self.queue.close();
    }
}

struct Worker {
    queue: Arc<DropOldest<(InputFrame, Instant)>>,
    stats: Arc<PublishCounters>,
    tx: mpsc::Sender<SegmentEvent>,
    segmenter: Segmenter,
    keys: KeyframeClock,
    clock: PtsClock,
    muxer: Muxer,
    seq: u64,
    cfg: PublisherConfig,
}

/// The consumer dropped the segment receiver: nothing left to do.
struct Gone;

/// A frame converted to yuv420p or yuvj420p, with its source timestamp and arrival time.
struct Converted {
    pic: frame::Video,
    src_pts: Option<i64>,
    arrived: Instant,
}

/// First stage: JPEG decoding / RGB conversion, on its own thread.
struct ConvertStage {
    queue: Arc<DropOldest<(InputFrame, Instant)>>,
    stats: Arc<PublishCounters>,
    out: SyncSender<Converted>,
}

impl ConvertStage {
    fn run(self) -> Result<(), MediaError> {
        let _close = CloseOnDrop(Arc::clone(&self.queue));
        let mut jpeg = JpegDecoder::new()?;
        let mut conv = Converter::default();
        while let Ok(item) = self.queue.pop_timeout(Duration::from_millis(500)) {
            let Some((frame, arrived)) = item else {
                continue;
            };
            stats::set(&self.stats.queue_depth, self.queue.len() as u64);
            let t = stats::thread_cpu();
            let pic = match to_yuv420p(&mut jpeg, &mut conv, &frame.image) {
                Ok(p) => p,
                Err(e) => {
                    debug!(error = %e, "dropping input frame");
                    stats::add(&self.stats.dropped_invalid, 1);
                    continue;
                }
            };
            stats::add(&self.stats.convert_us, stats::cpu_us_since(t));
            let converted = Converted {
                pic,
                src_pts: frame.pts,
                arrived,
            };
            if self.out.send(converted).is_err() {
                break; // encoder stage gone
            }
        }
        Ok(())
    }
}

struct CloseOnDrop(Arc<DropOldest<(InputFrame, Instant)>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Worker {
    fn run(mut self, input: Receiver<Converted>) -> Result<(), MediaError> {
        // However the worker ends, `push` must start failing instead of queueing forever.
        let _close = CloseOnDrop(Arc::clone(&self.queue));
        let mut enc: Option<H264Encoder> = None;
        // Only used when a stream mixes ranges (JPEG and yuv420p input): the encoder keeps
        // the range of its first picture and later pictures are converted to it.
        let mut range_conv = Converter::default();
        // Ends when the convert stage exits (queue closed and drained).
        while let Ok(Converted {
            mut pic,
            src_pts,
            arrived,
        }) = input.recv()
        {
            let (w, h) = (pic.width(), pic.height());
            if enc.as_ref().is_some_and(|e| (e.width, e.height) != (w, h)) {
                debug!(w, h, "resolution change, restarting encoder");
                if let Some(mut old) = enc.take()
                    && old.send_eof().is_ok()
                    && self.drain(&mut old).is_err()
                {
                    return Ok(());
                }
                stats::add(&self.stats.encoder_restarts, 1);
                self.segmenter.request_cut();
                self.keys.reset();
            }
            let encoder = match enc.as_mut() {
                Some(e) => e,
                None => match H264Encoder::new(&self.cfg.encoder, w, h, pic.format()) {
                    Ok(e) => enc.insert(e),
                    Err(e) => {
                        // e.g. odd dimensions, which 4:2:0 H.264 cannot code.
                        warn!(error = %e, w, h, "cannot open encoder for frame");
                        stats::add(&self.stats.dropped_encode_error, 1);
                        continue;
                    }
                },
            };
            if pic.format() != encoder.format {
                match range_conv.convert(&pic, encoder.format) {
                    Ok(p) => pic = p,
                    Err(e) => {
                        warn!(error = %e, "cannot convert frame to the encoder's range");
                        stats::add(&self.stats.dropped_encode_error, 1);
                        continue;
                    }
                }
            }
            let pts = self.clock.next(src_pts, arrived);
            stats::set(&self.stats.pts_bumped, self.clock.bumped());
            let force = self.keys.should_force(pts);
            let t = stats::thread_cpu();
            let sent = encoder.send(&mut pic, pts, force);
            stats::add(&self.stats.encode_us, stats::cpu_us_since(t));
            if let Err(e) = sent {
                warn!(error = %e, "encoder rejected frame");
                stats::add(&self.stats.dropped_encode_error, 1);
                continue;
            }
            stats::add(&self.stats.frames_encoded, 1);
            if self.drain(encoder).is_err() {
                return Ok(());
            }
        }
        if let Some(mut e) = enc
            && e.send_eof().is_ok()
            && self.drain(&mut e).is_err()
        {
            return Ok(());
        }
        if self.segmenter.is_open() {
            self.segmenter.close();
            let _ = self.tx.blocking_send(SegmentEvent::End);
        }
        debug!("publisher finished");
        Ok(())
    }

    /// Moves every finished packet from the encoder into segments.
    fn drain(&mut self, enc: &mut H264Encoder) -> Result<(), Gone> {
        loop {
            let t = stats::thread_cpu();
            let pkt = enc.receive();
            stats::add(&self.stats.encode_us, stats::cpu_us_since(t));
            let Some(pkt) = pkt else {
                return Ok(());
            };
            let mut buf = Vec::with_capacity(pkt.data.len() + pkt.data.len() / 8 + 2 * 188);
            match self.segmenter.decide(pkt.is_key, Instant::now()) {
                Boundary::Continue => {}
                b => {
                    if b == Boundary::Cut {
                        self.send(SegmentEvent::End)?;
                        self.seq += 1;
                    }
                    trace!(seq = self.seq, "segment start");
                    self.send(SegmentEvent::Start { seq_hint: self.seq })?;
                    stats::add(&self.stats.segments, 1);
                    self.muxer.write_tables(&mut buf);
                }
            }
            self.muxer
                .write_video(&mut buf, &pkt.data, pkt.pts, pkt.dts, pkt.is_key);
            stats::add(&self.stats.packets_out, 1);
            stats::add(&self.stats.bytes_out, buf.len() as u64);
            self.send(SegmentEvent::Data(Bytes::from(buf)))?;
        }
    }

    fn send(&self, ev: SegmentEvent) -> Result<(), Gone> {
        self.tx.blocking_send(ev).map_err(|_| {
            debug!("segment receiver dropped, stopping publisher");
            self.queue.close();
            Gone
        })
    }
}

/// Turns any accepted input into a 4:2:0 FFmpeg picture: full-range yuvj420p for most
/// JPEGs (kept as decoded), limited-range yuv420p otherwise.
fn to_yuv420p(
    jpeg: &mut JpegDecoder,
    conv: &mut Converter,
    image: &InputImage,
) -> Result<frame::Video, MediaError> {
    match image {
        InputImage::Jpeg(bytes) => {
            let pic = jpeg.decode(bytes)?;
            // Full-range 4:2:0 (the usual JPEG) is encoded as is: no range conversion.
            if matches!(pic.format(), Pixel::YUV420P | Pixel::YUVJ420P) {
                return Ok(pic);
            }
            conv.convert(&pic, Pixel::YUV420P)
        }
        InputImage::Rgb24 {
            width,
            height,
            data,
        } => {
            let (w, h) = (*width as usize, *height as usize);
            if w == 0 || h == 0 || data.len() != w * h * 3 {
                return Err(MediaError::InvalidFrame(format!(
                    "rgb24 {}x{} needs {} bytes, got {}",
                    w,
                    h,
                    w * h * 3,
                    data.len()
                )));
            }
            let mut f = frame::Video::new(Pixel::RGB24, *width, *height);
            let stride = f.stride(0);
            let dst = f.data_mut(0);
            for row in 0..h {
                dst[row * stride..row * stride + w * 3]
                    .copy_from_slice(&data[row * w * 3..(row + 1) * w * 3]);
            }
            conv.convert(&f, Pixel::YUV420P)
        }
        InputImage::Yuv420(y) => {
            y.validate()?;
            Ok(y.to_ffmpeg())
        }
    }
}
