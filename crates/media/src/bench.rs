//! Throughput benchmark of both pipeline directions (not a test: numbers depend on the
//! machine). `lpgw bench media` calls [`run_media_bench`].

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::EncoderConfig;
use crate::error::MediaError;
use crate::frame::{CLOCK_HZ, InputFrame, InputImage, Yuv420Frame};
use crate::jpeg::JpegEncoder;
use crate::output::{LagPolicy, Output, OutputConfig, OutputFormat};
use crate::publish::{Publisher, PublisherConfig, SegmentEvent};

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Frame width. Default 512.
    pub width: u32,
    /// Frame height. Default 512.
    pub height: u32,
    /// Frames per run. Default 600.
    pub frames: usize,
    /// Source frame rate stamped on the frames (media time only; input is not paced).
    /// Default 30.
    pub fps: u32,
    /// Quality of the input and output JPEGs. Default 80.
    pub jpeg_quality: u8,
    /// Encoder settings. Default superfast / zerolatency / CRF 23 / IDR every 2 s.
    pub encoder: EncoderConfig,
    /// JPEGs to feed (cycled up to `frames`), so the figures can be taken on the same
    /// pictures as a round trip; `None` generates [`bench_frame`]s at `jpeg_quality`.
    pub jpegs: Option<std::sync::Arc<Vec<Bytes>>>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            width: 512,
            height: 512,
            frames: 600,
            fps: 30,
            jpeg_quality: 80,
            encoder: EncoderConfig::default(),
            jpegs: None,
        }
    }
}

/// Measured figures. CPU time is the whole process's user + system time over the run, so
/// it includes every pipeline thread.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct BenchReport {
    /// Frames pushed as JPEG.
    pub frames: usize,
    /// JPEG → segments: frames per wall-clock second.
    pub input_fps: f64,
    /// JPEG → segments: CPU milliseconds per frame (`None` if unavailable on this OS).
    pub input_cpu_ms_per_frame: Option<f64>,
    /// Segments produced.
    pub segments: u64,
    /// MPEG-TS bytes produced.
    pub ts_bytes: u64,
    /// Frames dropped on the input side (should be 0: the queue holds every frame).
    pub input_dropped: u64,
    /// Segments → JPEG: frames decoded and JPEG-encoded.
    pub frames_out: usize,
    /// Segments → JPEG: frames per wall-clock second.
    pub output_fps: f64,
    /// Segments → JPEG: CPU milliseconds per frame.
    pub output_cpu_ms_per_frame: Option<f64>,
    /// Milliseconds per frame spent decoding JPEG and converting to yuv420p.
    pub jpeg_decode_ms: f64,
    /// Milliseconds per frame spent in libx264.
    pub h264_encode_ms: f64,
    /// Milliseconds per frame spent in the video decoder.
    pub h264_decode_ms: f64,
    /// Milliseconds per frame spent converting and JPEG-encoding output.
    pub jpeg_encode_ms: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpu = |c: Option<f64>| c.map_or("n/a".to_string(), |v| format!("{v:.2} ms"));
        writeln!(
            f,
            "input  (JPEG -> segments): {} frames, {:.0} fps, CPU {}/frame, {} segments, {} bytes, {} dropped",
            self.frames,
            self.input_fps,
            cpu(self.input_cpu_ms_per_frame),
            self.segments,
            self.ts_bytes,
            self.input_dropped
        )?;
        writeln!(
            f,
            "output (segments -> JPEG): {} frames, {:.0} fps, CPU {}/frame",
            self.frames_out,
            self.output_fps,
            cpu(self.output_cpu_ms_per_frame)
        )?;
        write!(
            f,
            "per frame: jpeg decode {:.2} ms, h264 encode {:.2} ms, h264 decode {:.2} ms, jpeg encode {:.2} ms",
            self.jpeg_decode_ms, self.h264_encode_ms, self.h264_decode_ms, self.jpeg_encode_ms
        )
    }
}

/// Process CPU time (user + system) from `/proc/self/stat`, in clock ticks of 1/100 s
/// (Linux's fixed USER_HZ).
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut it = rest.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// A varied test picture: moving gradients, a bouncing block and per-frame noise, so the
/// encoder cannot coast on identical frames.
pub fn bench_frame(width: u32, height: u32, index: usize) -> Yuv420Frame {
    let mut f = Yuv420Frame::filled(width, height, 0, 128, 128);
    let t = index as u32;
    let mut seed = (index as u32).wrapping_mul(2_654_435_761) | 1;
    let (bx, by) = ((t * 7) % width.max(1), (t * 5) % height.max(1));
    for y in 0..height {
        for x in 0..width {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mut v = (x + y + t * 3) % 256;
            if x.abs_diff(bx) < 48 && y.abs_diff(by) < 48 {
                v = 255 - v;
            }
            let noise = seed % 9;
            f.y[(y * width + x) as usize] = (v + noise).min(255) as u8;
        }
    }
    let (cw, ch) = f.chroma_size();
    for y in 0..ch {
        for x in 0..cw {
            f.u[(y * cw + x) as usize] = ((x * 2 + t) % 256) as u8;
            f.v[(y * cw + x) as usize] = ((y * 2 + t * 2) % 256) as u8;
        }
    }
    f
}

/// The JPEGs a run feeds: `opts.jpegs` cycled to `opts.frames`, or generated pictures.
pub(crate) fn bench_inputs(opts: &BenchOptions) -> Result<Vec<Bytes>, MediaError> {
    match &opts.jpegs {
        Some(pool) if !pool.is_empty() => {
            Ok(pool.iter().cycle().take(opts.frames).cloned().collect())
        }
        _ => {
            let mut jpeg = JpegEncoder::new(opts.jpeg_quality);
            (0..opts.frames)
                .map(|i| jpeg.encode(&bench_frame(opts.width, opts.height, i)))
                .collect()
        }
    }
}

/// Runs JPEG → segments, then segments → JPEG, and reports throughput. Blocking; takes a few
/// seconds at the defaults.
pub fn run_media_bench(opts: &BenchOptions) -> Result<BenchReport, MediaError> {
    let inputs = bench_inputs(opts)?;
    let mut report = BenchReport {
        frames: inputs.len(),
        ..Default::default()
    };

    // Input path. The queue holds every frame so none is dropped and the encoder never idles.
    let cfg = PublisherConfig {
        encoder: EncoderConfig {
            fps: opts.fps,
            ..opts.encoder.clone()
        },
        queue_capacity: inputs.len().max(1),
        min_segment: Duration::ZERO,
        event_capacity: 1024,
    };
    let (publisher, mut events) = Publisher::spawn(cfg)?;
    let tick = CLOCK_HZ / i64::from(opts.fps.max(1));
    let cpu0 = process_cpu_time();
    let t0 = Instant::now();
    for (i, j) in inputs.into_iter().enumerate() {
        publisher.push(InputFrame::with_pts(InputImage::Jpeg(j), i as i64 * tick))?;
    }
    publisher.close();
    let mut collected = Vec::new();
    while let Some(ev) = events.blocking_recv() {
        collected.push(ev);
    }
    let elapsed = t0.elapsed();
    let cpu1 = process_cpu_time();
    let stats = publisher.stats();
    publisher.join()?;
    report.input_fps = stats.frames_encoded as f64 / elapsed.as_secs_f64();
    report.input_cpu_ms_per_frame = per_frame(cpu0, cpu1, stats.frames_encoded);
    report.segments = stats.segments;
    report.ts_bytes = stats.bytes_out;
    report.input_dropped = stats.dropped_queue_full + stats.dropped_invalid;
    report.jpeg_decode_ms = ms_per(stats.convert_us, stats.frames_encoded);
    report.h264_encode_ms = ms_per(stats.encode_us, stats.frames_encoded);

    let out = decode_to_jpeg(collected, opts.jpeg_quality)?;
    report.h264_decode_ms = out.h264_decode_ms;
    report.jpeg_encode_ms = out.jpeg_encode_ms;
    report.frames_out = out.frames;
    report.output_fps = out.fps;
    report.output_cpu_ms_per_frame = out.cpu_ms_per_frame;
    Ok(report)
}

/// What [`decode_to_jpeg`] measured.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct OutputBenchReport {
    /// Pictures decoded and JPEG-encoded.
    pub frames: usize,
    /// Pictures per wall-clock second.
    pub fps: f64,
    /// Process CPU milliseconds per picture.
    pub cpu_ms_per_frame: Option<f64>,
    /// Milliseconds per picture in the video decoder.
    pub h264_decode_ms: f64,
    /// Milliseconds per picture converting and JPEG-encoding.
    pub jpeg_encode_ms: f64,
}

/// The output path alone: every segment queued up front (nothing skipped), demuxed,
/// decoded and JPEG-encoded at `quality`. Blocking.
pub fn decode_to_jpeg(
    segments: impl IntoIterator<Item = SegmentEvent>,
    quality: u8,
) -> Result<OutputBenchReport, MediaError> {
    let cfg = OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: usize::MAX,
        max_buffered_bytes: usize::MAX,
        frame_capacity: 64,
        format: OutputFormat::Jpeg { quality },
    };
    let (input, output, mut frames) = Output::spawn(cfg)?;
    let cpu0 = process_cpu_time();
    let t0 = Instant::now();
    for ev in segments {
        input.send(ev)?;
    }
    input.close();
    let mut n = 0usize;
    while let Some(f) = frames.blocking_recv() {
        f?;
        n += 1;
    }
    let elapsed = t0.elapsed();
    let cpu1 = process_cpu_time();
    let ostats = input.stats();
    output.join()?;
    Ok(OutputBenchReport {
        frames: n,
        fps: n as f64 / elapsed.as_secs_f64(),
        cpu_ms_per_frame: per_frame(cpu0, cpu1, n as u64),
        h264_decode_ms: ms_per(ostats.decode_us, n as u64),
        jpeg_encode_ms: ms_per(ostats.encode_out_us, n as u64),
    })
}

fn ms_per(total_us: u64, frames: u64) -> f64 {
    if frames == 0 {
        return 0.0;
    }
    total_us as f64 / 1000.0 / frames as f64
}

fn per_frame(a: Option<Duration>, b: Option<Duration>, frames: u64) -> Option<f64> {
    let (a, b) = (a?, b?);
    (frames > 0).then(|| (b.saturating_sub(a)).as_secs_f64() * 1000.0 / frames as f64)
}
