//! `lpgw bench trickle`: loopback relay throughput and first-byte latency, for our clients
//! and, side by side in the same run, for the official Python SDK's clients against the same
//! server.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::server::{ServerConfig, TrickleServer};
use lpgw_trickle::wire::SeqRequest;

/// Options of `lpgw bench trickle`.
#[derive(Debug, Args)]
pub(crate) struct TrickleBenchArgs {
    /// Segments published per throughput run.
    #[arg(long, default_value_t = 64)]
    segments: u64,
    /// Bytes per segment.
    #[arg(long, default_value_t = 4 << 20)]
    segment_bytes: usize,
    /// Bytes per write.
    #[arg(long, default_value_t = 64 << 10)]
    chunk_bytes: usize,
    /// Subscriber counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 10])]
    subscribers: Vec<usize>,
    /// Segments timed for first-byte latency.
    #[arg(long, default_value_t = 1000)]
    latency_samples: usize,
    /// Python interpreter with `livepeer-gateway` installed, to measure its clients too
    /// (see scripts/interop-venv.sh).
    #[arg(long, env = "LPGW_PYTHON")]
    python: Option<PathBuf>,
}

async fn start_server() -> anyhow::Result<(TrickleServer, String)> {
    let server = TrickleServer::new(ServerConfig {
        autocreate: true,
        ..ServerConfig::default()
    });
    let app = server.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(lpgw_trickle::server::nodelay(listener), app).await });
    Ok((server, format!("http://{addr}")))
}

/// One throughput run: a publisher and `subs` subscribers on a fresh channel.
async fn relay(
    base: &str,
    server: &TrickleServer,
    a: &TrickleBenchArgs,
    subs: usize,
) -> anyhow::Result<(f64, f64)> {
    let channel = format!("relay-{subs}-{}", rand_suffix());
    server.create_channel(&channel, "application/octet-stream");
    let url = format!("{base}/{channel}");
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..subs {
        let mut sub = Subscriber::new(
            &url,
            SubscriberConfig {
                start: SeqRequest::At(0),
                ..SubscriberConfig::default()
            },
        )?;
        let received = received.clone();
        let segments = a.segments;
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok(Some(mut seg)) = sub.next_segment().await else {
                    break;
                };
                while let Ok(Some(c)) = seg.chunk().await {
                    received.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
                if seg.seq() + 1 >= segments {
                    break;
                }
            }
            sub.stats()
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let payload = Bytes::from(vec![0x5a; a.segment_bytes]);
    let mut publisher = Publisher::new(
        &url,
        "application/octet-stream",
        PublisherConfig {
            start_seq: Some(0),
            ..PublisherConfig::default()
        },
    )?;
    let t0 = Instant::now();
    for _ in 0..a.segments {
        let mut w = publisher.next_segment().await?;
        let mut off = 0;
        while off < payload.len() {
            let end = (off + a.chunk_bytes).min(payload.len());
            w.write(payload.slice(off..end)).await?;
            off = end;
        }
        w.finish().await?;
    }
    for t in tasks {
        let stats = tokio::time::timeout(Duration::from_secs(120), t).await??;
        tracing::debug!(?stats, "subscriber done");
    }
    let secs = t0.elapsed().as_secs_f64();
    let total = received.load(Ordering::Relaxed) as f64;
    let expected = (a.segments as usize * a.segment_bytes * subs) as f64;
    if total < expected {
        println!(
            "note: subscribers fell behind the 5-segment window and skipped {:.0}% of bytes",
            100.0 * (1.0 - total / expected)
        );
    }
    server.delete_channel(&channel);
    Ok((total / subs as f64 / secs / 1e6, total / secs / 1e6))
}

/// First-byte latency: the publisher writes a 64-byte segment carrying its index; the
/// preconnected subscriber notes when the first byte arrives.
async fn latency(base: &str, server: &TrickleServer, n: usize) -> anyhow::Result<(f64, f64)> {
    let channel = format!("latency-{}", rand_suffix());
    server.create_channel(&channel, "application/octet-stream");
    let url = format!("{base}/{channel}");
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..=n).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    let mut sub = Subscriber::new(&url, SubscriberConfig::default())?;
    let reader = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            while lat.len() < n {
                let Ok(Some(mut seg)) = sub.next_segment().await else {
                    break;
                };
                let Ok(Some(first)) = seg.chunk().await else {
                    continue;
                };
                let t1 = epoch.elapsed().as_nanos() as u64;
                let idx = u32::from_be_bytes(first[..4].try_into().unwrap_or_default()) as usize;
                if let Some(t0) = sent.get(idx).map(|t| t.load(Ordering::Acquire))
                    && t0 > 0
                {
                    lat.push((t1 - t0) as f64 / 1e6);
                }
                while let Ok(Some(_)) = seg.chunk().await {}
                if idx >= n {
                    break;
                }
            }
            lat
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut publisher = Publisher::new(&url, "application/octet-stream", Default::default())?;
    for i in 0..=n {
        let mut w = publisher.next_segment().await?;
        // Let the subscriber's preconnected GET for this segment land first.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut msg = (i as u32).to_be_bytes().to_vec();
        msg.resize(64, b'x');
        sent[i].store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        w.write(Bytes::from(msg)).await?;
        w.finish().await?;
        if reader.is_finished() {
            break;
        }
    }
    let mut lat = tokio::time::timeout(Duration::from_secs(60), reader).await??;
    anyhow::ensure!(!lat.is_empty(), "no latency samples");
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    server.delete_channel(&channel);
    Ok((p(0.5), p(0.99)))
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

async fn python(py: &PathBuf, args: &[String]) -> anyhow::Result<serde_json::Value> {
    let script = std::env::var_os("LPGW_TRICKLE_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tests/interop/trickle_peer.py"));
    let out = tokio::process::Command::new(py)
        .arg(&script)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "python peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub(crate) async fn run(a: TrickleBenchArgs) -> anyhow::Result<()> {
    let (server, base) = start_server().await?;
    println!(
        "trickle relay on loopback: {} segments x {} bytes, {}-byte writes",
        a.segments, a.segment_bytes, a.chunk_bytes
    );
    println!("| client | subscribers | MB/s per subscriber | MB/s total |");
    println!("|---|---|---|---|");
    let mut ours = Vec::new();
    for &subs in &a.subscribers {
        let (per, total) = relay(&base, &server, &a, subs).await?;
        println!("| lpgw | {subs} | {per:.0} | {total:.0} |");
        ours.push((subs, per));
    }
    let mut theirs = Vec::new();
    if let Some(py) = &a.python {
        for &subs in &a.subscribers {
            let name = format!("py-relay-{subs}-{}", rand_suffix());
            server.create_channel(&name, "application/octet-stream");
            let ch = format!("{base}/{name}");
            let v = python(
                py,
                &[
                    "bench-relay".into(),
                    ch,
                    "--segments".into(),
                    a.segments.to_string(),
                    "--size".into(),
                    a.segment_bytes.to_string(),
                    "--chunk".into(),
                    a.chunk_bytes.to_string(),
                    "--subs".into(),
                    subs.to_string(),
                ],
            )
            .await?;
            let per = v["mb_per_s_per_sub"].as_f64().unwrap_or(f64::NAN);
            let total = v["mb_per_s_total"].as_f64().unwrap_or(f64::NAN);
            println!("| python sdk 1.0.0 | {subs} | {per:.0} | {total:.0} |");
            theirs.push((subs, per));
        }
        for ((subs, o), (_, t)) in ours.iter().zip(&theirs) {
            println!("ratio lpgw/python with {subs} subscriber(s): {:.1}x", o / t);
        }
    }
    println!();
    println!(
        "first-byte latency, publisher write -> subscriber read ({} segments):",
        a.latency_samples
    );
    let (p50, p99) = latency(&base, &server, a.latency_samples).await?;
    println!("| client | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!("| lpgw | {p50:.3} | {p99:.3} |");
    if let Some(py) = &a.python {
        let name = format!("py-latency-{}", rand_suffix());
        server.create_channel(&name, "application/octet-stream");
        let ch = format!("{base}/{name}");
        let v = python(
            py,
            &[
                "bench-latency".into(),
                ch,
                "--n".into(),
                a.latency_samples.to_string(),
            ],
        )
        .await?;
        println!(
            "| python sdk 1.0.0 | {:.3} | {:.3} |",
            v["p50_ms"].as_f64().unwrap_or(f64::NAN),
            v["p99_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    server.shutdown();
    Ok(())
}
