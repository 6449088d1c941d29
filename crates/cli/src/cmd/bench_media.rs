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
use lpgw_media::{BenchOptions, EncoderConfig, JpegEncoder, OutputFormat, test_pattern};

use crate::cmd::stream::{
    JobChannels, RunOptions, RunReport, Source, local_devnet, percentile, run_through, steady,
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
    /// Skip the media-only figures.
    #[arg(long)]
    skip_media: bool,
}

/// Process CPU time (user + system) in seconds, from `/proc/self/stat` (USER_HZ = 100).
pub(crate) fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut it = rest.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn load_pool(path: &PathBuf) -> anyhow::Result<(Vec<Bytes>, String)> {
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

fn parse_rate(s: &str) -> anyhow::Result<(u32, f64)> {
    let (f, d) = s.split_once(':').context("rate must be FPS:SECONDS")?;
    Ok((f.trim().parse()?, d.trim().parse()?))
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.1}"))
}

/// One round trip through a fresh relay job; prints and returns its figures.
async fn round_trip(
    gw: &Gateway,
    pool: &Arc<Vec<Bytes>>,
    fps: u32,
    frames: usize,
    pace: bool,
) -> anyhow::Result<()> {
    let job = gw.start_lv2v(&StartRequest::new("relay")).await?;
    let ch = JobChannels {
        publish_url: job.urls().publish_url.clone(),
        subscribe_url: job.urls().subscribe_url.clone(),
    };
    let opts = RunOptions {
        source: Source::Jpegs(pool.clone()),
        fps,
        frames: Some(frames),
        pace,
        encoder: EncoderConfig::default(),
        wall_clock_pts: true,
        output_format: OutputFormat::Both { quality: 80 },
        tail: Duration::from_secs(10),
    };
    let cpu0 = cpu_secs();
    let r: RunReport = run_through(&ch, opts, None).await?;
    let cpu1 = cpu_secs();
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
    println!(
        "  CPU {} ms per frame, {} cores (whole process: gateway, devnet trickle server, relay)",
        cpu_ms.map_or("n/a".into(), |v| format!("{v:.2}")),
        cores.map_or("n/a".into(), |v| format!("{v:.2}")),
    );
    Ok(())
}

pub(crate) async fn run(args: MediaBenchArgs) -> anyhow::Result<()> {
    let (pool, what) = tokio::task::spawn_blocking({
        let p = args.jpegs.clone();
        move || load_pool(&p)
    })
    .await??;
    println!("input: {what}; x264 superfast / zerolatency / CRF 23, IDR every 2 s");
    if !args.skip_media {
        let opts = BenchOptions {
            frames: args.frames,
            ..BenchOptions::default()
        };
        let report =
            tokio::task::spawn_blocking(move || lpgw_media::run_media_bench(&opts)).await??;
        println!("media only (generated 512x512 frames, no network):\n{report}");
    }
    let devnet = local_devnet(&["relay"]).await?;
    let gw = Gateway::new(Settings {
        orchestrators: vec![devnet.orchestrator_url().to_owned()],
        ..Settings::default()
    })?;
    let pool = Arc::new(pool);
    for r in &args.rates {
        let (fps, secs) = parse_rate(r)?;
        let frames = (f64::from(fps) * secs).round() as usize;
        round_trip(&gw, &pool, fps, frames, true).await?;
    }
    if args.unpaced > 0 {
        round_trip(&gw, &pool, 30, args.unpaced, false).await?;
    }
    devnet.shutdown().await;
    Ok(())
}
