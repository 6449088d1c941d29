//! `lpgw bench service`: the gateway service end to end, in one process. An in-process devnet
//! whose runner relays (model `relay`: segments copied from the input channel to the output
//! channel), the service on 127.0.0.1, and WebSocket clients that send 512×512 JPEGs tagged
//! with frame ids (`?meta=1`) and receive the processed JPEGs.
//!
//! Measures (a) one unpaced stream's throughput and CPU per frame, next to the same frames
//! through the media pipeline alone (no service, no WebSocket) so the bridge's own cost shows;
//! (b) latency at fixed rates; (c) how many concurrent 24 fps streams run with no frame lost.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use futures::{SinkExt as _, StreamExt as _};
use lpgw_devnet::{Devnet, DevnetConfig};
use lpgw_gateway::{Gateway, Settings, StartRequest};
use lpgw_media::{EncoderConfig, JpegEncoder, OutputFormat, test_pattern};
use lpgw_server::{AppState, ServerConfig};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::cmd::bench_media::{cpu_secs, load_pool};
use crate::cmd::stream::{JobChannels, RunOptions, Source, percentile, run_through};

/// Options of `lpgw bench service`.
#[derive(Debug, Args)]
pub(crate) struct ServiceBenchArgs {
    /// Distinct 512×512 JPEGs generated for the input (cycled).
    #[arg(long, default_value_t = 240)]
    pool: u32,
    /// Use these JPEGs instead (the reference harness's pool format: `u32` little-endian
    /// length + JPEG, repeated), e.g. `/tmp/lpgw-reference-bench/work/jpegs.bin` for the
    /// reference's noisier content.
    #[arg(long)]
    jpegs: Option<std::path::PathBuf>,
    /// Frames of the unpaced single-stream run (0 to skip).
    #[arg(long, default_value_t = 1500)]
    unpaced: usize,
    /// Frames in flight in the unpaced run: the next frame is sent when fewer than this many
    /// are waiting for their output.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Paced single-stream rates for the latency figures (comma separated; `0` to skip).
    #[arg(long, value_delimiter = ',', default_value = "24,30,60")]
    rates: Vec<u32>,
    /// Seconds per paced latency run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Steps of concurrent 24 fps streams, e.g. 4 → 4, 8, 12, … until a frame is lost (0 to
    /// skip).
    #[arg(long, default_value_t = 4)]
    streams_step: usize,
    /// Most concurrent streams tried.
    #[arg(long, default_value_t = 64)]
    streams_max: usize,
    /// Seconds per concurrency step.
    #[arg(long, default_value_t = 10.0)]
    streams_seconds: f64,
    /// Wall-clock budget for all concurrency steps together, in seconds; no new step starts
    /// after it.
    #[arg(long, default_value_t = 240)]
    streams_budget: u64,
}

/// How a client sends.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Frame `i` at `t0 + i/fps`; latency counts from that scheduled time.
    Fixed { fps: u32 },
    /// Closed loop: at most `window` frames waiting for output; latency from the send.
    Window { window: usize },
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientReport {
    sent: usize,
    received: usize,
    /// (frame id, milliseconds from scheduled send to output received).
    latencies: Vec<(usize, f64)>,
    /// From the first send to the last output received.
    wall: Duration,
}

/// The service and its devnet, in this process.
struct Bench {
    http: reqwest::Client,
    addr: SocketAddr,
    pool: Arc<Vec<Bytes>>,
}

impl Bench {
    async fn start_job(&self) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("http://{}/start-job", self.addr))
            .json(&json!({ "model_id": "relay" }))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "start-job answered {status}: {body}");
        body.get("job_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("start-job answer without job_id")
    }

    async fn stop_job(&self, id: &str) {
        let _ = self
            .http
            .delete(format!("http://{}/stop-job/{id}", self.addr))
            .send()
            .await;
    }

    /// Runs one WebSocket client on job `id`: `frames` frames at `pace`, then waits (bounded)
    /// for the outputs still on their way.
    async fn client(&self, id: &str, frames: usize, pace: Pace) -> anyhow::Result<ClientReport> {
        let url = format!("ws://{}/ws/stream?job_id={id}&meta=1", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .context("websocket connect")?;
        let (mut tx, mut rx) = ws.split();
        // Send (or scheduled) time of each frame, by id.
        let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; frames]));
        let (last_tx, mut last_rx) = watch::channel::<Option<usize>>(None);
        let done = CancellationToken::new();

        let reader = {
            let sent_at = sent_at.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(frames);
                let mut received = 0usize;
                let mut tag: Option<usize> = None;
                let mut last_at = None;
                loop {
                    let m = tokio::select! {
                        () = done.cancelled() => break,
                        m = rx.next() => m,
                    };
                    let Some(Ok(m)) = m else { break };
                    match m {
                        Message::Text(t) => {
                            tag = serde_json::from_str::<Value>(t.as_str())
                                .ok()
                                .and_then(|v| v.get("id").and_then(Value::as_u64))
                                .and_then(|v| usize::try_from(v).ok());
                        }
                        Message::Binary(_) => {
                            let now = Instant::now();
                            received += 1;
                            last_at = Some(now);
                            if let Some(i) = tag.take() {
                                let at = sent_at
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get(i)
                                    .copied()
                                    .flatten();
                                if let Some(at) = at {
                                    latencies.push((i, now.duration_since(at).as_secs_f64() * 1e3));
                                }
                                let _ = last_tx.send(Some(i));
                            }
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                (received, latencies, last_at)
            })
        };

        let t0 = Instant::now();
        let mut sent = 0usize;
        for i in 0..frames {
            let at = match pace {
                Pace::Fixed { fps } => {
                    let at = t0 + Duration::from_secs_f64(i as f64 / f64::from(fps));
                    tokio::time::sleep_until(at.into()).await;
                    at
                }
                Pace::Window { window } => {
                    // Wait until the output has caught up to within `window` frames; a lost
                    // frame must not stall the run, so the wait is bounded.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        last_rx.wait_for(|l| i < window || l.is_some_and(|l| l + window >= i)),
                    )
                    .await;
                    Instant::now()
                }
            };
            if let Some(slot) = sent_at.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
                *slot = Some(at);
            }
            let jpeg = self.pool[i % self.pool.len()].clone();
            tx.feed(Message::text(json!({ "id": i }).to_string()))
                .await?;
            tx.send(Message::Binary(jpeg)).await?;
            sent += 1;
        }
        // Tail: wait for the last frame's output, or 3 s with nothing new.
        let last = frames.saturating_sub(1);
        loop {
            let r = tokio::time::timeout(Duration::from_secs(3), last_rx.changed()).await;
            if !matches!(r, Ok(Ok(()))) || last_rx.borrow().is_some_and(|l| l >= last) {
                break;
            }
        }
        done.cancel();
        let (received, mut latencies, last_at) = reader.await?;
        let _ = tx.send(Message::Close(None)).await;
        latencies.sort_by_key(|(i, _)| *i);
        Ok(ClientReport {
            sent,
            received,
            latencies,
            wall: last_at.map_or(Duration::ZERO, |l| l.duration_since(t0)),
        })
    }
}

fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v
}

fn ms(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.1}"))
}

fn gen_pool(n: u32) -> anyhow::Result<Vec<Bytes>> {
    let mut enc = JpegEncoder::new(80);
    (0..n.max(1))
        .map(|i| Ok(enc.encode(&test_pattern(512, 512, i * 7))?))
        .collect()
}

/// (a) One unpaced stream through the service, and the same frames through the media
/// pipeline alone.
async fn unpaced(b: &Bench, gw: &Gateway, args: &ServiceBenchArgs) -> anyhow::Result<()> {
    let id = b.start_job().await?;
    let c0 = cpu_secs();
    let r = b
        .client(
            &id,
            args.unpaced,
            Pace::Window {
                window: args.window.max(1),
            },
        )
        .await?;
    let c1 = cpu_secs();
    b.stop_job(&id).await;
    let svc_cpu = c0
        .zip(c1)
        .map(|(a, b)| (b - a) * 1e3 / r.received.max(1) as f64);
    let svc_fps = r.received as f64 / r.wall.as_secs_f64().max(1e-9);

    // The media pipeline alone, same job kind and output format, closed loop.
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
        source: Source::Jpegs(b.pool.clone()),
        fps: 24,
        frames: Some(args.unpaced),
        pace: false,
        encoder: EncoderConfig::default(),
        wall_clock_pts: true,
        output_format: OutputFormat::Jpeg { quality: 80 },
        tail: Duration::from_secs(5),
    };
    let c0 = cpu_secs();
    let m = run_through(&ch, opts, None).await?;
    let c1 = cpu_secs();
    job.close().await;
    let media_cpu = c0
        .zip(c1)
        .map(|(a, b)| (b - a) * 1e3 / m.frames_out.max(1) as f64);
    let media_fps = m.frames_out as f64 / m.wall.as_secs_f64().max(1e-9);

    let lat = sorted(r.latencies.iter().map(|x| x.1));
    println!(
        "\n### (a) One stream, unpaced (closed loop, {} in flight)\n",
        args.window
    );
    println!("| path | frames out / in | fps | CPU ms/frame (whole process) | p50 ms | p95 ms |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| service: WebSocket → service → relay → service → WebSocket | {} / {} | {svc_fps:.0} | {} | {} | {} |",
        r.received,
        r.sent,
        svc_cpu.map_or("n/a".into(), |v| format!("{v:.2}")),
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 95.0)),
    );
    println!(
        "| media pipeline alone (same relay job, no service) | {} / {} | {media_fps:.0} | {} | – | – |",
        m.frames_out,
        m.frames_sent,
        media_cpu.map_or("n/a".into(), |v| format!("{v:.2}")),
    );
    if let (Some(s), Some(m)) = (svc_cpu, media_cpu) {
        println!(
            "\nbridge cost over the media pipeline: {:.2} ms CPU per frame",
            s - m
        );
    }
    Ok(())
}

/// (b) Latency of one paced stream at each rate.
async fn paced(b: &Bench, args: &ServiceBenchArgs) -> anyhow::Result<()> {
    println!("\n### (b) One stream, paced, {} s per rate\n", args.seconds);
    println!(
        "| fps | frames out / in | p50 ms | p95 ms | p99 ms | steady p50 | steady p95 | steady p99 | CPU ms/frame |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &fps in args.rates.iter().filter(|&&r| r > 0) {
        let frames = (f64::from(fps) * args.seconds).round() as usize;
        let id = b.start_job().await?;
        let c0 = cpu_secs();
        let r = b.client(&id, frames, Pace::Fixed { fps }).await?;
        let c1 = cpu_secs();
        b.stop_job(&id).await;
        let cpu = c0
            .zip(c1)
            .map(|(a, b)| (b - a) * 1e3 / r.received.max(1) as f64);
        let all = sorted(r.latencies.iter().map(|x| x.1));
        let first_steady = 2 * fps as usize;
        let st = sorted(
            r.latencies
                .iter()
                .filter(|(i, _)| *i >= first_steady)
                .map(|x| x.1),
        );
        println!(
            "| {fps} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
            r.received,
            r.sent,
            ms(percentile(&all, 50.0)),
            ms(percentile(&all, 95.0)),
            ms(percentile(&all, 99.0)),
            ms(percentile(&st, 50.0)),
            ms(percentile(&st, 95.0)),
            ms(percentile(&st, 99.0)),
            cpu.map_or("n/a".into(), |v| format!("{v:.2}")),
        );
    }
    Ok(())
}

/// (c) Concurrent 24 fps streams, stepping up until a frame is lost.
async fn concurrent(b: &Arc<Bench>, args: &ServiceBenchArgs) -> anyhow::Result<()> {
    const FPS: u32 = 24;
    println!(
        "\n### (c) Concurrent {FPS} fps streams, {} s each step\n",
        args.streams_seconds
    );
    println!(
        "| streams | frames out / in | lost | steady p50 ms | steady p95 ms | steady p99 ms | CPU cores | CPU ms/frame |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let frames = (f64::from(FPS) * args.streams_seconds).round() as usize;
    let budget = Instant::now() + Duration::from_secs(args.streams_budget);
    let mut best = 0usize;
    let mut n = args.streams_step;
    while n <= args.streams_max && Instant::now() < budget {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(b.start_job().await?);
        }
        let c0 = cpu_secs();
        let t0 = Instant::now();
        let runs: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(k, id)| {
                let b = b.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    // Spread the streams' frame times over one interval, as independent
                    // cameras would be.
                    let offset = Duration::from_secs_f64(k as f64 / (n as f64 * f64::from(FPS)));
                    tokio::time::sleep(offset).await;
                    b.client(&id, frames, Pace::Fixed { fps: FPS }).await
                })
            })
            .collect();
        let mut reports = Vec::with_capacity(n);
        for r in runs {
            reports.push(r.await??);
        }
        let wall = t0.elapsed().as_secs_f64();
        let c1 = cpu_secs();
        for id in &ids {
            b.stop_job(id).await;
        }
        let sent: usize = reports.iter().map(|r| r.sent).sum();
        let received: usize = reports.iter().map(|r| r.received).sum();
        let lost = sent.saturating_sub(received);
        let first_steady = 2 * FPS as usize;
        let st = sorted(reports.iter().flat_map(|r| {
            r.latencies
                .iter()
                .filter(|(i, _)| *i >= first_steady)
                .map(|x| x.1)
        }));
        let cpu = c0.zip(c1).map(|(a, b)| b - a);
        println!(
            "| {n} | {received} / {sent} | {lost} | {} | {} | {} | {} | {} |",
            ms(percentile(&st, 50.0)),
            ms(percentile(&st, 95.0)),
            ms(percentile(&st, 99.0)),
            cpu.map_or("n/a".into(), |c| format!("{:.2}", c / wall)),
            cpu.map_or("n/a".into(), |c| format!(
                "{:.2}",
                c * 1e3 / received.max(1) as f64
            )),
        );
        if lost > 0 {
            break;
        }
        best = n;
        n += args.streams_step;
    }
    println!("\nmost concurrent {FPS} fps streams with no frame lost: {best}");
    Ok(())
}

pub(crate) async fn run(args: ServiceBenchArgs) -> anyhow::Result<()> {
    let (n, jpegs) = (args.pool, args.jpegs.clone());
    let (pool, what) = tokio::task::spawn_blocking(move || match jpegs {
        Some(p) => load_pool(&p),
        None => gen_pool(n).map(|p| {
            let what = format!("{} generated 512x512 test patterns, JPEG q80", p.len());
            (p, what)
        }),
    })
    .await??;
    let pool = Arc::new(pool);
    println!("input: {what}, cycled; output JPEG q80");
    // Room for every stream of the largest step, plus the jobs of the single-stream runs.
    let capacity = u32::try_from(args.streams_max.max(1) + 4).unwrap_or(u32::MAX);
    let devnet = Devnet::start(DevnetConfig {
        tls: false,
        models: vec!["relay".into(), "noop".into()],
        capacity,
        status_interval: Duration::from_secs(1),
        ..DevnetConfig::default()
    })
    .await?;
    let gw = Gateway::new(Settings {
        orchestrators: vec![devnet.orchestrator_url().to_owned()],
        ..Settings::default()
    })?;
    let config = ServerConfig {
        max_jobs: 1024,
        max_jobs_per_key: 1024,
        // Every client of the benchmark is on 127.0.0.1.
        max_jobs_per_ip: 0,
        start_rate_per_ip: 0.0,
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(lpgw_server::run(
        listener,
        AppState::new(config, gw.clone()),
        shutdown.clone(),
    ));
    let bench = Arc::new(Bench {
        http: reqwest::Client::new(),
        addr,
        pool,
    });
    let result = async {
        if args.unpaced > 0 {
            unpaced(&bench, &gw, &args).await?;
        }
        if args.rates.iter().any(|&r| r > 0) {
            paced(&bench, &args).await?;
        }
        if args.streams_step > 0 {
            concurrent(&bench, &args).await?;
        }
        anyhow::Ok(())
    }
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    devnet.shutdown().await;
    result
}
