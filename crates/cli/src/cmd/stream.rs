//! `lpgw stream`: publish a test pattern or a video file through a real LV2V job and record
//! the processed output as MPEG-TS. The end-to-end check anyone can run, and the engine of the
//! media round-trip benchmark.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use lpgw_bridge::{
    CancellationToken, ChannelAccess, FeedOptions, MediaSession, SessionChannels, SessionOptions,
};
use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle};
use lpgw_gateway::{Gateway, Settings, StartRequest};
use lpgw_media::{
    CLOCK_HZ, DecodedFrame, EncoderConfig, FileSource, InputFrame, InputImage, LagPolicy,
    MediaError, Output, OutputConfig, OutputFormat, Publisher as MediaPublisher,
    PublisherConfig as MediaConfig, SegmentEvent, read_test_pattern_index, test_pattern,
};
use lpgw_trickle::wire::SeqRequest;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

/// Options of `lpgw stream`.
#[derive(Debug, Args)]
pub(crate) struct StreamArgs {
    /// Pipeline model, e.g. `streamdiffusion` (the devnet applies a visible effect) or `noop`.
    #[arg(long)]
    model: String,
    /// Start an in-process devnet on 127.0.0.1 and use it instead of --orch.
    #[arg(long)]
    devnet: bool,
    /// `testsrc` for a generated pattern, or a video file FFmpeg can read.
    #[arg(long, default_value = "testsrc")]
    input: String,
    /// Where to write the processed MPEG-TS: a file, or `-` for stdout.
    #[arg(long)]
    output: String,
    /// Seconds of input to send. Default: 10 for testsrc, the whole file otherwise.
    #[arg(long)]
    duration: Option<f64>,
    /// Frame rate of the test pattern.
    #[arg(long, default_value_t = 24)]
    fps: u32,
    /// Size of the test pattern, `WxH`.
    #[arg(long, default_value = "512x512", value_parser = parse_size)]
    size: (u32, u32),
    /// Prompt sent with the job's parameters.
    #[arg(long)]
    prompt: Option<String>,
    /// Effect strength (0..1) sent with the job's parameters.
    #[arg(long)]
    strength: Option<f64>,
    /// Send frames as fast as the encoder takes them instead of in real time.
    #[arg(long)]
    no_pace: bool,
    #[command(flatten)]
    scope: crate::cmd::scope_args::ScopeArgs,
    #[command(flatten)]
    gateway: crate::cmd::orch::GatewayArgs,
}

/// Parses `WxH` with even, non-zero sides (4:2:0 H.264 needs even sizes).
pub(crate) fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size {s:?} is not WxH"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in {s:?}"))?;
    if w < 16 || h < 16 || w > 7680 || h > 4320 || w % 2 == 1 || h % 2 == 1 {
        return Err(format!(
            "size {s:?}: sides must be even, 16..=7680 x 16..=4320"
        ));
    }
    Ok((w, h))
}

/// Where input pictures come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// [`test_pattern`] frames, carrying their index.
    TestPattern { width: u32, height: u32 },
    /// A video file, decoded with FFmpeg and paced by its timestamps.
    File(PathBuf),
    /// JPEG pictures sent in turn (the benchmark's pool), cycling when exhausted.
    Jpegs(Arc<Vec<Bytes>>),
}

/// Settings of one run through a job.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    pub(crate) source: Source,
    pub(crate) fps: u32,
    /// Frames to send (`None`: until the source ends).
    pub(crate) frames: Option<usize>,
    pub(crate) pace: bool,
    pub(crate) encoder: EncoderConfig,
    /// Stamp frames with the wall clock at push time (like the reference harness) instead of
    /// source timestamps.
    pub(crate) wall_clock_pts: bool,
    pub(crate) output_format: OutputFormat,
    /// How long to wait for the output to drain after the last input frame.
    pub(crate) tail: Duration,
}

/// What a run measured.
#[derive(Debug, Default)]
pub(crate) struct RunReport {
    pub(crate) frames_sent: usize,
    pub(crate) frames_out: usize,
    pub(crate) publisher_dropped: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) segments_in: u64,
    pub(crate) segments_out: u64,
    /// Output frames matched to their input: (input position, milliseconds since it was
    /// scheduled).
    pub(crate) latencies: Vec<(usize, f64)>,
    /// From the first scheduled input to the first output frame.
    pub(crate) first_output_ms: Option<f64>,
    pub(crate) wall: Duration,
    pub(crate) send_duration: Duration,
    /// Output frames whose index matched no later input frame (out of order or unknown).
    pub(crate) order_errors: usize,
    /// CPU milliseconds the pipelines' codec stages (JPEG or picture input, H.264 encode,
    /// video decode, output rendering) spent over the whole run, from their thread clocks.
    pub(crate) codec_cpu_ms: f64,
}

/// A job's two media channels.
#[derive(Debug, Clone)]
pub(crate) struct JobChannels {
    pub(crate) publish_url: String,
    pub(crate) subscribe_url: String,
    /// How the channels are reached: the job's pinned client for a gateway job; a client of
    /// the session's own only for channels outside a job (benchmarks against a local
    /// trickle server).
    pub(crate) access: ChannelAccess,
}

/// How an output frame is matched to its input.
#[derive(Debug, Clone, Copy)]
enum Label {
    /// The index the test picture carries.
    Index(u32),
    /// The presentation timestamp, relative to the first frame's.
    Pts(i64),
}

/// How long the output may stay quiet after the input ended before it counts as finished.
const OUTPUT_QUIET: Duration = Duration::from_secs(2);

/// Sends `opts.source` into `ch.publish_url`, reads `ch.subscribe_url` back, optionally
/// records the output segments to `record`, and measures.
pub(crate) async fn run_through(
    ch: &JobChannels,
    opts: RunOptions,
    record: Option<mpsc::Sender<SegmentEvent>>,
) -> anyhow::Result<RunReport> {
    let cancel = CancellationToken::new();
    let t_start = Instant::now();

    // Output side first, so no output segment is missed.
    let out_cfg = OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: 4,
        max_buffered_bytes: 32 << 20,
        frame_capacity: 16,
        format: opts.output_format,
    };
    let (input, output, mut frames) = Output::spawn(out_cfg)?;
    let decoder_stats = input.stats_reader();
    // How many frames came back, and when the last one did: a Scope runner keeps its output
    // channel open after the input ends, so the end of the output is not always signalled.
    let progress = std::sync::Arc::new(std::sync::Mutex::new((0usize, Instant::now())));
    let seen = progress.clone();
    let receiver = tokio::spawn(async move {
        let mut got: Vec<(Option<Label>, Instant)> = Vec::new();
        while let Some(f) = frames.recv().await {
            let f: DecodedFrame = match f {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "output pipeline failed");
                    break;
                }
            };
            let now = Instant::now();
            // The picture's own index when planes are delivered; otherwise the pts, which a
            // relay passes through unchanged (reading planes only to label frames would add
            // a conversion the measured path does not need).
            let key = match f.yuv.as_ref() {
                Some(y) => read_test_pattern_index(y).map(Label::Index),
                None => f.pts.map(Label::Pts),
            };
            got.push((key, now));
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = (got.len(), now);
        }
        got
    });

    // Input side.
    let (media, events) = MediaPublisher::spawn(MediaConfig {
        encoder: EncoderConfig {
            fps: opts.fps,
            ..opts.encoder.clone()
        },
        queue_capacity: 8,
        min_segment: Duration::from_millis(500),
        event_capacity: 256,
    })?;
    // One media session for both directions; the output subscription starts at the first
    // segment so none is missed, and the first input POST is opened at once.
    let channels = SessionChannels {
        input: Some(ch.publish_url.clone()),
        output: ch.subscribe_url.clone(),
        access: ch.access.clone(),
    };
    let session = MediaSession::start(
        &channels,
        events,
        input,
        SessionOptions {
            feed: FeedOptions {
                copy_to: record,
                ..FeedOptions::default()
            },
            output_start: Some(SeqRequest::At(0)),
            preconnect: true,
            ..SessionOptions::default()
        },
        cancel.clone(),
    )?;
    let (in_stats, out_stats) = (session.output_stats.clone(), session.input_stats.clone());
    let (publish, feed) = session.into_tasks();
    let producer = {
        let opts = opts.clone();
        std::thread::Builder::new()
            .name("lpgw-stream-src".into())
            .spawn(move || produce(&opts, media))?
    };
    let (sched, pstats) = tokio::task::spawn_blocking(move || producer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("source thread panicked"))??;
    let send_duration = t_start.elapsed();
    match tokio::time::timeout(opts.tail + Duration::from_secs(5), publish).await {
        Ok(r) => r?.context("publishing")?,
        Err(_) => cancel.cancel(),
    }
    // The runner flushes and closes its output once our input channel is gone; one that
    // keeps it open (a real Scope runner) is done once every frame came back, or once its
    // output has been quiet for a while after the input ended.
    let expected = sched.len();
    if tokio::time::timeout(opts.tail, async {
        while !feed.is_finished() {
            let (n, last) = *progress.lock().unwrap_or_else(|p| p.into_inner());
            if n >= expected || (n > 0 && last.elapsed() > OUTPUT_QUIET) {
                cancel.cancel();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_err()
    {
        tracing::warn!("output did not end in time after the input; stopping");
        cancel.cancel();
    }
    let fed = feed.await?;
    let ostats = decoder_stats.get();
    if let Err(e) = fed {
        tracing::warn!(error = %e, "reading the output channel failed");
    }
    let got = receiver.await?;
    let wall = t_start.elapsed();
    tokio::task::spawn_blocking(move || output.join()).await??;

    let mut report = RunReport {
        frames_sent: sched.len(),
        frames_out: got.len(),
        publisher_dropped: pstats.dropped_queue_full
            + pstats.dropped_invalid
            + pstats.dropped_encode_error,
        bytes_out: out_stats.get().bytes,
        segments_out: out_stats.get().segments,
        bytes_in: in_stats.get().bytes,
        segments_in: in_stats.get().segments,
        wall,
        send_duration,
        codec_cpu_ms: (pstats.convert_us
            + pstats.encode_us
            + ostats.decode_us
            + ostats.encode_out_us) as f64
            / 1000.0,
        ..RunReport::default()
    };
    if let (Some((first_sched, _, _)), Some((_, first_out))) = (sched.first(), got.first()) {
        report.first_output_ms = Some(ms(first_out.saturating_duration_since(*first_sched)));
    }
    // Match each output frame to the first later input frame with the same label (labels
    // repeat when a JPEG pool cycles or the 16-bit pattern index wraps).
    let mut pos = 0usize;
    for (key, at) in &got {
        let Some(key) = key else { continue };
        let found = sched[pos.min(sched.len())..]
            .iter()
            .position(|(_, l, p)| match key {
                Label::Index(i) => l == i,
                Label::Pts(t) => p == t,
            })
            .map(|k| pos + k);
        match found {
            Some(p) => {
                report
                    .latencies
                    .push((p, ms(at.saturating_duration_since(sched[p].0))));
                pos = p + 1;
            }
            None => report.order_errors += 1,
        }
    }
    Ok(report)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Input frames as scheduled: when, the index label the picture carries, and its pts
/// relative to the first frame's (what the output reports when timestamps pass through).
type Schedule = Vec<(Instant, u32, i64)>;

/// Pushes the source's frames at their scheduled times; returns each frame's scheduled
/// instant and label, and the publisher's final counters.
fn produce(
    opts: &RunOptions,
    media: MediaPublisher,
) -> anyhow::Result<(Schedule, lpgw_media::PublishStats)> {
    let tick = CLOCK_HZ / i64::from(opts.fps.max(1));
    let interval = Duration::from_secs_f64(1.0 / f64::from(opts.fps.max(1)));
    let limit = opts.frames.unwrap_or(usize::MAX);
    let mut file = match &opts.source {
        Source::File(p) => Some(FileSource::open(p).with_context(|| format!("opening {p:?}"))?),
        _ => None,
    };
    let mut sched = Vec::new();
    let t0 = Instant::now();
    let mut first_pts: Option<i64> = None;
    let mut clock = lpgw_media::segmenter::PtsClock::new();
    let mut first_sent: Option<i64> = None;
    for i in 0..limit {
        let (image, src_pts, due, label) = match &opts.source {
            Source::TestPattern { width, height } => (
                InputImage::Yuv420(test_pattern(*width, *height, i as u32)),
                i as i64 * tick,
                t0 + interval * i as u32,
                i as u32 & 0xFFFF,
            ),
            Source::Jpegs(pool) => {
                let k = i % pool.len().max(1);
                let Some(jpeg) = pool.get(k) else { break };
                (
                    InputImage::Jpeg(jpeg.clone()),
                    i as i64 * tick,
                    t0 + interval * i as u32,
                    k as u32,
                )
            }
            Source::File(_) => {
                let Some(src) = file.as_mut() else { break };
                let Some((yuv, pts)) = src.next_frame()? else {
                    break;
                };
                let pts = pts.unwrap_or(i as i64 * tick);
                let rel = pts - *first_pts.get_or_insert(pts);
                let due = t0 + Duration::from_secs_f64(rel.max(0) as f64 / CLOCK_HZ as f64);
                (InputImage::Yuv420(yuv), pts, due, u32::MAX)
            }
        };
        if opts.pace {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let now = Instant::now();
        let due = if opts.pace { due } else { now };
        // Wall-clock stamps are taken here rather than in the publisher so each frame's pts
        // is known for matching its output.
        let pts = if opts.wall_clock_pts {
            clock.next(None, now)
        } else {
            src_pts
        };
        sched.push((due, label, pts - *first_sent.get_or_insert(pts)));
        let frame = InputFrame::with_pts(image, pts);
        match media.push(frame) {
            Ok(()) => {}
            Err(MediaError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
        if !opts.pace {
            // Unpaced: hand over as fast as the encoder drains, dropping nothing.
            while media.stats().queue_depth >= 4 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    media.close();
    let stats = media.stats();
    Ok((sched, stats))
}

/// Percentile (0..=100) of a sorted slice.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

/// Latencies of the frames sent after `skip` seconds, sorted.
pub(crate) fn steady(report: &RunReport, fps: u32, skip: f64) -> Vec<f64> {
    let first = (skip * f64::from(fps)) as usize;
    let mut v: Vec<f64> = report
        .latencies
        .iter()
        .filter(|(i, _)| *i >= first)
        .map(|(_, l)| *l)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// An in-process devnet on 127.0.0.1 (plain HTTP) serving `models`.
pub(crate) async fn local_devnet(models: &[&str]) -> anyhow::Result<DevnetHandle> {
    let mut list: Vec<String> = models.iter().map(|m| (*m).to_owned()).collect();
    for m in ["noop", "relay", "streamdiffusion"] {
        if !list.iter().any(|x| x == m) {
            list.push(m.to_owned());
        }
    }
    let cfg = DevnetConfig {
        tls: false,
        models: list,
        status_interval: Duration::from_secs(1),
        ..DevnetConfig::default()
    };
    Ok(Devnet::start(cfg).await?)
}

pub(crate) async fn run(args: StreamArgs) -> anyhow::Result<()> {
    let devnet = if args.devnet {
        Some(local_devnet(&[&args.model]).await?)
    } else {
        None
    };
    let settings = match &devnet {
        Some(d) => Settings {
            orchestrators: vec![d.orchestrator_url().to_owned()],
            ceiling: args.gateway.pay.resolve()?.0,
            ..Settings::default()
        },
        None => args.gateway.settings()?,
    };
    let gateway = Gateway::new(settings)?;
    let mut params = serde_json::Map::new();
    if let Some(p) = &args.prompt {
        params.insert("prompt".into(), json!(p));
    }
    if let Some(s) = args.strength {
        params.insert("strength".into(), json!(s));
    }
    args.scope.merge_into(&mut params)?;
    let req = StartRequest {
        params: (!params.is_empty()).then(|| params.into()),
        wallet: args.gateway.wallet()?,
        ..StartRequest::new(args.model.clone())
    };
    // The routing policy picks the flow: live-runner models (`scope`) through discovery,
    // reservation and the Scope protocol, others through the legacy LV2V path.
    let mut job = gateway.start(&req).await.context("starting the job")?;
    let media = job
        .media()
        .context("the stream announced no media channels")?;
    let ch = JobChannels {
        publish_url: media
            .input
            .clone()
            .context("the stream runs in text mode: it takes no input")?,
        subscribe_url: media.output.clone(),
        access: job
            .media_client()
            .map_or(ChannelAccess::Verified, ChannelAccess::Pinned),
    };
    eprintln!(
        "job {} on {} ({})",
        job.manifest_id(),
        job.orchestrator_url(),
        job.route().flow_name()
    );
    let events = job.events();
    let mut events = events;
    let event_count = tokio::spawn(async move {
        let (mut n, mut last) = (0u64, None);
        if let Some(ev) = events.as_mut() {
            while let Some(e) = ev.recv().await {
                n += 1;
                last = Some(e);
            }
        }
        (n, last)
    });

    let (source, frames) = if args.input == "testsrc" {
        let (width, height) = args.size;
        let secs = args.duration.unwrap_or(10.0).max(0.0);
        (
            Source::TestPattern { width, height },
            Some((secs * f64::from(args.fps)).round() as usize),
        )
    } else {
        let frames = args
            .duration
            .map(|d| (d.max(0.0) * f64::from(args.fps)).round() as usize);
        (Source::File(PathBuf::from(&args.input)), frames)
    };
    let opts = RunOptions {
        source,
        fps: args.fps,
        frames,
        pace: !args.no_pace,
        encoder: EncoderConfig::default(),
        wall_clock_pts: false,
        output_format: OutputFormat::Yuv420,
        tail: Duration::from_secs(10),
    };
    let (rec_tx, rec_rx) = mpsc::channel::<SegmentEvent>(64);
    let writer = tokio::spawn(write_output(args.output.clone(), rec_rx));
    let result = run_through(&ch, opts, Some(rec_tx)).await;
    let written = writer.await?;
    job.close().await;
    let (events_seen, last_event) = event_count.await.unwrap_or((0, None));
    if let Some(d) = devnet {
        d.shutdown().await;
    }
    let report = result?;
    let written = written?;
    print_report(&report, args.fps, written, events_seen);
    if let Some(ev) = last_event {
        eprintln!("last runner event: {ev}");
    }
    anyhow::ensure!(report.frames_out > 0, "no frame came back from the job");
    Ok(())
}

/// Writes recorded segment bytes to `path` (`-` = stdout); returns the byte count.
async fn write_output(path: String, mut rx: mpsc::Receiver<SegmentEvent>) -> anyhow::Result<u64> {
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = if path == "-" {
        Box::new(tokio::io::stdout())
    } else {
        Box::new(
            tokio::fs::File::create(&path)
                .await
                .with_context(|| format!("creating {path}"))?,
        )
    };
    let mut n = 0u64;
    while let Some(ev) = rx.recv().await {
        if let SegmentEvent::Data(b) = ev {
            out.write_all(&b).await?;
            n += b.len() as u64;
        }
    }
    out.flush().await?;
    Ok(n)
}

fn print_report(r: &RunReport, fps: u32, written: u64, events: u64) {
    eprintln!(
        "sent {} frames in {:.1} s ({} dropped before encoding), {} segments, {} bytes",
        r.frames_sent,
        r.send_duration.as_secs_f64(),
        r.publisher_dropped,
        r.segments_out,
        r.bytes_out
    );
    eprintln!(
        "received {} frames, {} segments, {} bytes ({} written), {} runner events",
        r.frames_out, r.segments_in, r.bytes_in, written, events
    );
    if let Some(f) = r.first_output_ms {
        eprintln!("first output frame after {f:.0} ms");
    }
    let all = steady(r, fps, 0.0);
    let st = steady(r, fps, 2.0);
    if let (Some(p50), Some(p95)) = (percentile(&all, 50.0), percentile(&all, 95.0)) {
        eprint!("latency p50 {p50:.1} ms, p95 {p95:.1} ms");
        if let (Some(s50), Some(s95)) = (percentile(&st, 50.0), percentile(&st, 95.0)) {
            eprint!("; after 2 s p50 {s50:.1} ms, p95 {s95:.1} ms");
        }
        eprintln!(
            " ({} frames with an index, {} out of order)",
            all.len(),
            r.order_errors
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_are_checked() {
        assert_eq!(parse_size("640x360"), Ok((640, 360)));
        assert_eq!(parse_size("16X16"), Ok((16, 16)));
        for bad in ["640", "641x360", "0x0", "axb", "8x8"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(51.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
