//! `lpgw bench media`: the media pipeline's own throughput, then round trips through a relay
//! runner on an in-process devnet, measured the way `shared/reference-bench` measures the
//! reference Python pipeline (JPEG in, JPEG q80 out, latency by the index each picture
//! carries, steady state after 2 s).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use lpgw_gateway::{Gateway, Settings, StartRequest};
use lpgw_media::{
    BenchOptions, EncoderConfig, JpegEncoder, OutputFormat, SegmentEvent, test_pattern,
};

use crate::cmd::bench_devnet::IsolatedDevnet;
use crate::cmd::stream::{
    JobChannels, RunOptions, RunReport, Source, percentile, run_through, steady,
};

/// Options of `lpgw bench media`.
#[derive(Debug, Args)]
pub(crate) struct MediaBenchArgs {
    /// The reference harness's JPEG pool (`u32` little-endian length + JPEG, repeated); when
    /// absent, 512x512 test patterns are JPEG-encoded at quality 80.
    #[arg(long, default_value = "/tmp/lpgw-reference-bench/work/jpegs.bin")]
    jpegs: PathBuf,
    /// Frames for the media-only figures.
    #[arg(long, default_value_t = 600)]
    frames: usize,
    /// Paced round trips to run, as `FPS:SECONDS` (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "24:20,400:7")]
    rates: Vec<String>,
    /// Also run an unpaced round trip of this many frames (closed loop: the next frame goes in
    /// when the encoder's queue has room), 0 to skip.
    #[arg(long, default_value_t = 2000)]
    unpaced: usize,
    /// Nominal frame rate given to the encoder in the unpaced run (frames are stamped with
    /// the wall clock either way); near the achieved rate, so IDRs stay 2 s apart.
    #[arg(long, default_value_t = 400)]
    unpaced_fps: u32,
    /// The reference harness's prepared stream (MPEG-TS segments, read in name order) for
    /// the output path on exactly the reference's input; skipped when absent.
    #[arg(long, default_value = "/tmp/lpgw-reference-bench/work/dump/prep")]
    reference_stream: PathBuf,
    /// Skip the media-only figures.
    #[arg(long)]
    skip_media: bool,
    /// libx264 slice threads per encoder (0 = libx264 chooses); default: the media crate's
    /// default.
    #[arg(long)]
    x264_threads: Option<usize>,
    /// Also measure resident memory per stream: start this many publisher + output pairs,
    /// run 30 frames through each, and compare VmRSS before and after (0 to skip).
    #[arg(long, default_value_t = 8)]
    rss_streams: usize,
}

/// Resident set size in KiB, from `/proc/self/status`.
fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts `n` publisher + output pairs (JPEG in, JPEG + yuv420p out, as a gateway stream
/// does), runs 30 frames through each and returns the VmRSS growth in KiB while all are alive.
fn rss_growth(pool: &[Bytes], n: usize, encoder: &EncoderConfig) -> anyhow::Result<Option<u64>> {
    use lpgw_media::{InputFrame, InputImage, Output, OutputConfig, Publisher, PublisherConfig};
    const FRAMES: usize = 30;
    let before = vm_rss_kib();
    let mut alive = Vec::new();
    for _ in 0..n {
        let (publisher, mut events) = Publisher::spawn(PublisherConfig {
            encoder: encoder.clone(),
            queue_capacity: FRAMES,
            ..PublisherConfig::default()
        })?;
        let (input, output, mut frames) = Output::spawn(OutputConfig {
            format: OutputFormat::Both { quality: 80 },
            frame_capacity: FRAMES,
            ..OutputConfig::default()
        })?;
        let forward = std::thread::spawn(move || {
            while let Some(ev) = events.blocking_recv() {
                if input.send(ev).is_err() {
                    break;
                }
            }
        });
        for (i, j) in pool.iter().cycle().take(FRAMES).enumerate() {
            publisher.push(InputFrame::with_pts(
                InputImage::Jpeg(j.clone()),
                i as i64 * 3000,
            ))?;
        }
        // Zero-latency coding: pictures come out without closing the stream.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut got = 0;
        while got < FRAMES / 2 && std::time::Instant::now() < deadline {
            match frames.try_recv() {
                Ok(f) => {
                    f?;
                    got += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        alive.push((publisher, output, frames, forward));
    }
    let after = vm_rss_kib();
    for (publisher, output, frames, forward) in alive {
        publisher.close();
        drop(frames);
        let _ = publisher.join();
        let _ = forward.join();
        let _ = output.join();
    }
    Ok(before.zip(after).map(|(a, b)| b.saturating_sub(a)))
}

/// Process CPU time (user + system) in seconds, from `/proc/self/stat` (USER_HZ = 100).
pub(crate) fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(crate::cmd::bench_devnet::stat_cpu_ticks(&stat)? as f64 / 100.0)
}

pub(crate) fn load_pool(path: &PathBuf) -> anyhow::Result<(Vec<Bytes>, String)> {
    if let Ok(data) = std::fs::read(path) {
        let mut pool = Vec::new();
        let mut rest = &data[..];
        while rest.len() >= 4 {
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            anyhow::ensure!(rest.len() >= 4 + n, "truncated JPEG record in {path:?}");
            pool.push(Bytes::copy_from_slice(&rest[4..4 + n]));
            rest = &rest[4 + n..];
        }
        anyhow::ensure!(!pool.is_empty(), "no JPEG in {path:?}");
        let what = format!("{} JPEGs from {}", pool.len(), path.display());
        return Ok((pool, what));
    }
    let mut enc = JpegEncoder::new(80);
    let pool = (0..600)
        .map(|i| enc.encode(&test_pattern(512, 512, i)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((pool, "600 generated 512x512 test patterns, q80".into()))
}

/// The `.ts` files of `dir` in name order, `None` when there are none.
fn read_segments(dir: &PathBuf) -> Option<Vec<Bytes>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ts"))
        .collect();
    names.sort();
    let segs: Vec<Bytes> = names
        .iter()
        .filter_map(|p| std::fs::read(p).ok().map(Bytes::from))
        .collect();
    (!segs.is_empty()).then_some(segs)
}

fn parse_rate(s: &str) -> anyhow::Result<(u32, f64)> {
    let (f, d) = s.split_once(':').context("rate must be FPS:SECONDS")?;
    Ok((f.trim().parse()?, d.trim().parse()?))
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.1}"))
}

/// CPU milliseconds per frame out of one round trip.
#[derive(Clone, Copy, Debug)]
struct RoundTripCpu {
    /// The whole process.
    total: f64,
    /// The process less the devnet's runtime threads: what the gateway side pays.
    gateway: f64,
    /// Of `gateway`, the codec stages' own CPU in the pipeline threads.
    codecs: f64,
}

/// One round trip through a fresh relay job; prints its figures and returns its CPU per
/// frame (`None` when the OS does not tell).
async fn round_trip(
    gw: &Gateway,
    devnet: &IsolatedDevnet,
    pool: &Arc<Vec<Bytes>>,
    fps: u32,
    frames: usize,
    pace: bool,
    encoder: &EncoderConfig,
) -> anyhow::Result<Option<RoundTripCpu>> {
    let job = gw.start_lv2v(&StartRequest::new("relay")).await?;
    let ch = JobChannels {
        publish_url: job.urls().publish_url.clone(),
        subscribe_url: job.urls().subscribe_url.clone(),
        // The job's pinned client, as for every gateway job.
        access: job.channel_client().map_or(
            lpgw_bridge::ChannelAccess::AcceptAnyCertificate,
            lpgw_bridge::ChannelAccess::Pinned,
        ),
    };
    let opts = RunOptions {
        source: Source::Jpegs(pool.clone()),
        fps,
        frames: Some(frames),
        pace,
        encoder: encoder.clone(),
        wall_clock_pts: true,
        output_format: OutputFormat::Jpeg { quality: 80 },
        tail: Duration::from_secs(10),
    };
    // JPEG only, as a gateway delivers it: frames are matched to their input by pts.
    let (cpu0, dev0) = (cpu_secs(), devnet.cpu_secs());
    let r: RunReport = run_through(&ch, opts, None).await?;
    let (cpu1, dev1) = (cpu_secs(), devnet.cpu_secs());
    let dev_ms = dev0
        .zip(dev1)
        .map(|(a, b)| (b - a) * 1000.0 / r.frames_out.max(1) as f64);
    job.close().await;
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let cpu_ms = cpu.map(|c| c * 1000.0 / r.frames_out.max(1) as f64);
    let cores = cpu.map(|c| c / r.wall.as_secs_f64());
    let all = steady(&r, fps, 0.0);
    let st = steady(&r, fps, 2.0);
    let label = if pace {
        format!("paced {fps} fps")
    } else {
        "unpaced (closed loop)".into()
    };
    let rate = r.frames_out as f64 / r.send_duration.as_secs_f64();
    println!(
        "round trip {label}: {}/{} frames out, {} dropped by the publisher, {} unmatched, \
         {rate:.0} fps out over the send time",
        r.frames_out, r.frames_sent, r.publisher_dropped, r.order_errors
    );
    println!(
        "  latency ms: p50 {} p95 {} p99 {}; steady (after 2 s) p50 {} p95 {} p99 {}; \
         first output frame {} ms",
        fmt(percentile(&all, 50.0)),
        fmt(percentile(&all, 95.0)),
        fmt(percentile(&all, 99.0)),
        fmt(percentile(&st, 50.0)),
        fmt(percentile(&st, 95.0)),
        fmt(percentile(&st, 99.0)),
        fmt(r.first_output_ms),
    );
    let codecs = r.codec_cpu_ms / r.frames_out.max(1) as f64;
    let split = cpu_ms.zip(dev_ms).map(|(t, d)| RoundTripCpu {
        total: t,
        gateway: t - d,
        codecs,
    });
    println!(
        "  CPU {} ms per frame, {} cores (whole process); of it the devnet (orchestrator, \
         trickle server, relay runner) {} ms, the gateway side {} ms",
        cpu_ms.map_or("n/a".into(), |v| format!("{v:.2}")),
        cores.map_or("n/a".into(), |v| format!("{v:.2}")),
        dev_ms.map_or("n/a".into(), |v| format!("{v:.2}")),
        split.map_or("n/a".into(), |v| format!("{:.2}", v.gateway)),
    );
    Ok(split)
}

/// Prints a round trip's CPU per frame against the codec stages measured alone.
fn print_overhead(label: &str, cpu: Option<RoundTripCpu>, stages_ms: Option<f64>) {
    if let (Some(c), Some(s)) = (cpu, stages_ms.filter(|s| *s > 0.0)) {
        println!(
            "  {label}: gateway side {:.2} ms per frame = {:.2} x the codec stages alone \
             ({s:.2} ms); whole process with the devnet {:.2} ms = {:.2} x",
            c.gateway,
            c.gateway / s,
            c.total,
            c.total / s,
        );
        let glue = c.gateway - c.codecs;
        println!(
            "    of the gateway side: the same codec calls in the pipeline threads {:.2} ms \
             ({:+.0} % against alone), everything else (queues, threads, muxing, HTTP, \
             payments, control) {glue:.2} ms = {:.0} % of the stages alone",
            c.codecs,
            (c.codecs / s - 1.0) * 100.0,
            glue / s * 100.0,
        );
    }
}

pub(crate) async fn run(args: MediaBenchArgs) -> anyhow::Result<()> {
    let (pool, what) = tokio::task::spawn_blocking({
        let p = args.jpegs.clone();
        move || load_pool(&p)
    })
    .await??;
    let mut encoder = EncoderConfig::default();
    if let Some(t) = args.x264_threads {
        encoder.threads = t;
    }
    println!(
        "input: {what}; x264 superfast / zerolatency / CRF 23, IDR every 2 s, {} slice threads",
        if encoder.threads == 0 {
            "auto".to_string()
        } else {
            encoder.threads.to_string()
        }
    );
    if args.rss_streams > 0 {
        let (n, enc, p) = (args.rss_streams, encoder.clone(), pool.clone());
        let kib = tokio::task::spawn_blocking(move || rss_growth(&p, n, &enc)).await??;
        if let Some(kib) = kib {
            println!(
                "memory: {n} streams (publisher + output, JPEG in, JPEG + yuv420p out) add \
                 {:.1} MB VmRSS, {:.1} MB per stream",
                kib as f64 / 1024.0,
                kib as f64 / 1024.0 / n as f64
            );
        }
    }
    let pool = Arc::new(pool);
    // Pictures stamped closer together than 10 ms cost x264 (and so the decoder) less: its
    // rate control weighs complexity by frame duration. Every comparison therefore uses the
    // same media-time spacing on both sides.
    let media_opts = |fps: u32| BenchOptions {
        frames: args.frames,
        encoder: encoder.clone(),
        jpegs: Some(pool.clone()),
        fps,
        ..BenchOptions::default()
    };
    if !args.skip_media {
        let opts = media_opts(args.unpaced_fps);
        let report =
            tokio::task::spawn_blocking(move || lpgw_media::run_media_bench(&opts)).await??;
        println!(
            "pipelines alone ({} frames of the input above stamped at {} fps, one direction at \
             a time, no network):\n{report}",
            args.frames, args.unpaced_fps
        );
    }
    if !args.skip_media
        && let Some(segments) = read_segments(&args.reference_stream)
    {
        let n = segments.len();
        let out = tokio::task::spawn_blocking(move || {
            let events = segments.into_iter().enumerate().flat_map(|(i, b)| {
                [
                    SegmentEvent::Start { seq_hint: i as u64 },
                    SegmentEvent::Data(b),
                    SegmentEvent::End,
                ]
            });
            lpgw_media::decode_to_jpeg(events, 80)
        })
        .await??;
        println!(
            "output path on the reference's prepared stream ({n} segments from {}): {} frames, \
             {:.0} fps, CPU {} ms/frame (h264 decode {:.2} ms, jpeg encode {:.2} ms per frame)",
            args.reference_stream.display(),
            out.frames,
            out.fps,
            out.cpu_ms_per_frame
                .map_or("n/a".into(), |v| format!("{v:.2}")),
            out.h264_decode_ms,
            out.jpeg_encode_ms,
        );
    }
    let devnet = tokio::task::spawn_blocking(|| IsolatedDevnet::start(&["relay"])).await??;
    let gw = Gateway::new(Settings {
        orchestrators: vec![devnet.orchestrator_url().to_owned()],
        ..Settings::default()
    })?;
    let mut overheads = Vec::new();
    for r in &args.rates {
        let (fps, secs) = parse_rate(r)?;
        let frames = (f64::from(fps) * secs).round() as usize;
        let cpu = round_trip(&gw, &devnet, &pool, fps, frames, true, &encoder).await?;
        overheads.push((format!("paced {fps} fps"), fps, cpu));
    }
    if args.unpaced > 0 {
        let cpu = round_trip(
            &gw,
            &devnet,
            &pool,
            args.unpaced_fps,
            args.unpaced,
            false,
            &encoder,
        )
        .await?;
        overheads.push(("unpaced".to_string(), args.unpaced_fps, cpu));
    }
    if !args.skip_media {
        println!("round-trip CPU per frame against the codec stages alone at the same spacing:");
        let mut measured: Vec<(u32, lpgw_media::StageCosts)> = Vec::new();
        for (label, fps, cpu) in overheads {
            let stages = match measured.iter().find(|(f, _)| *f == fps) {
                Some((_, s)) => *s,
                None => {
                    let opts = media_opts(fps);
                    let s = tokio::task::spawn_blocking(move || {
                        lpgw_media::measure_codec_stages(&opts)
                    })
                    .await??;
                    println!("  at {fps} fps: {s}");
                    measured.push((fps, s));
                    s
                }
            };
            print_overhead(&label, cpu, Some(stages.total_ms()));
        }
    }
    drop(gw);
    tokio::task::spawn_blocking(move || devnet.shutdown()).await?;
    Ok(())
}
