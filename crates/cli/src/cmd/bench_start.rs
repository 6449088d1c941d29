//! `lpgw bench start`: LV2V job-start latency when most candidates are dead or slow.
//!
//! Ten candidate orchestrators: three healthy TLS devnets (added latency 0, 15 and 40 ms by
//! default, `--healthy-ms`), three devnets whose GetOrchestrator answers only after a latency
//! past every timeout, and four closed ports. Measured in one run against the same devnets: our gateway with all ten,
//! our gateway with only the fastest healthy one, and the official Python SDK's `start_lv2v`
//! with all ten. "Cold" rounds use a fresh gateway each (no pinned certificates, no pooled
//! connections), as the SDK's `start_lv2v` does; "warm" rounds reuse one gateway, as a
//! long-running gateway service does. Every job is closed untimed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle, Faults};
use lpgw_gateway::{Gateway, Settings, StartRequest};

/// Options of `lpgw bench start`.
#[derive(Debug, Args)]
pub(crate) struct StartBenchArgs {
    /// Timed rounds per configuration of our gateway.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Timed rounds of the Python SDK (each waits for its probe timeout).
    #[arg(long, default_value_t = 5)]
    sdk_rounds: usize,
    /// Added latency of the three healthy orchestrators, in milliseconds (fastest first);
    /// non-zero values stand in for network round trips.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0, 15, 40])]
    healthy_ms: Vec<u64>,
    /// Latency of the slow orchestrators, in milliseconds (past both gateways' timeouts).
    #[arg(long, default_value_t = 10_000)]
    slow_ms: u64,
    /// Model to start.
    #[arg(long, default_value = "noop")]
    model: String,
    /// Probes in flight at once (default: the gateway's default).
    #[arg(long)]
    probe_concurrency: Option<usize>,
    /// Python interpreter with `livepeer-gateway` installed (see scripts/interop-venv.sh).
    #[arg(long, env = "LPGW_PYTHON")]
    python: Option<PathBuf>,
}

/// The candidate set: URLs in the order given to both gateways, and the fastest healthy one.
struct Field {
    devnets: Vec<DevnetHandle>,
    urls: Vec<String>,
    fastest: String,
}

async fn field(a: &StartBenchArgs) -> anyhow::Result<Field> {
    let start = |latency: Duration| {
        Devnet::start(DevnetConfig {
            models: vec![a.model.clone()],
            // Sessions the SDK leaves open (it does not delete the publish channel) must not
            // exhaust capacity during the run.
            capacity: 10_000,
            faults: Faults {
                latency,
                ..Faults::default()
            },
            ..DevnetConfig::default()
        })
    };
    let mut devnets = Vec::new();
    let mut url_of = |h: DevnetHandle| {
        let u = h.orchestrator_url().to_owned();
        devnets.push(h);
        u
    };
    let slow = Duration::from_millis(a.slow_ms);
    let ms = |i: usize| Duration::from_millis(a.healthy_ms.get(i).copied().unwrap_or(0));
    let h0 = url_of(start(ms(0)).await?);
    let h15 = url_of(start(ms(1)).await?);
    let h40 = url_of(start(ms(2)).await?);
    let s1 = url_of(start(slow).await?);
    let s2 = url_of(start(slow).await?);
    let s3 = url_of(start(slow).await?);
    let mut dead = Vec::new();
    for _ in 0..4 {
        // Bound then closed: connections are refused.
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        dead.push(format!("https://{}", l.local_addr()?));
    }
    // Slow and dead ones first in every batch of five, the fastest last.
    let urls = vec![
        s1,
        dead[0].clone(),
        h40,
        dead[1].clone(),
        s2,
        dead[2].clone(),
        h15,
        s3,
        dead[3].clone(),
        h0.clone(),
    ];
    Ok(Field {
        devnets,
        urls,
        fastest: h0,
    })
}

fn gateway(urls: &[String], a: &StartBenchArgs) -> anyhow::Result<Gateway> {
    let defaults = Settings::default();
    Ok(Gateway::new(Settings {
        orchestrators: urls.to_vec(),
        probe_concurrency: a.probe_concurrency.unwrap_or(defaults.probe_concurrency),
        ..defaults
    })?)
}

/// One timed start; returns the latency and the orchestrator used. The job is closed untimed.
async fn start_once(gw: &Gateway, model: &str) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let job = gw.start_lv2v(&StartRequest::new(model)).await?;
    let elapsed = started.elapsed();
    let used = job.orchestrator_url().to_owned();
    job.close().await;
    Ok((elapsed, used))
}

/// Latencies in ms of `rounds` starts, and how often the fastest orchestrator was used.
/// Cold: a fresh gateway per start. Warm: one gateway, after one untimed start.
async fn series(
    urls: &[String],
    fastest: &str,
    a: &StartBenchArgs,
    warm: bool,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let shared = gateway(urls, a)?;
    start_once(&shared, &a.model).await?;
    let (mut ms, mut picked) = (Vec::new(), 0);
    for _ in 0..a.rounds {
        let gw = if warm {
            shared.clone()
        } else {
            gateway(urls, a)?
        };
        let (d, used) = start_once(&gw, &a.model).await?;
        ms.push(d.as_secs_f64() * 1e3);
        picked += usize::from(used == fastest);
    }
    Ok((ms, picked))
}

#[derive(Debug, Clone, Copy)]
struct Summary {
    p50: f64,
    p90: f64,
    min: f64,
    max: f64,
}

fn summarize(ms: &[f64]) -> Summary {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i.min(v.len() - 1)]
    };
    Summary {
        p50: at(0.5),
        p90: at(0.9),
        min: v[0],
        max: v[v.len() - 1],
    }
}

async fn sdk(py: &PathBuf, urls: &[String], a: &StartBenchArgs) -> anyhow::Result<Vec<f64>> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/bench_start.py");
    let out = tokio::process::Command::new(py)
        .arg(script)
        .args(["--orch", &urls.join(","), "--model", &a.model])
        .args(["--rounds", &a.sdk_rounds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running the python sdk")?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("the python sdk printed no JSON")?;
    anyhow::ensure!(v["ok"] == true, "python sdk failed: {}", v["error"]);
    Ok(v["ms"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default())
}

pub(crate) async fn run(a: StartBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.rounds > 0, "--rounds must be positive");
    anyhow::ensure!(a.healthy_ms.len() == 3, "--healthy-ms takes three values");
    let f = field(&a).await?;
    eprintln!(
        "10 candidates: 3 healthy ({:?} ms), 3 slow ({} ms), 4 closed ports",
        a.healthy_ms, a.slow_ms
    );
    let one = std::slice::from_ref(&f.fastest);
    let (cold_all, cold_picked) = series(&f.urls, &f.fastest, &a, false).await?;
    let (cold_one, _) = series(one, &f.fastest, &a, false).await?;
    let (warm_all, warm_picked) = series(&f.urls, &f.fastest, &a, true).await?;
    let (warm_one, _) = series(one, &f.fastest, &a, true).await?;
    let sdk_ms = match &a.python {
        Some(py) if a.sdk_rounds > 0 => {
            eprintln!(
                "python sdk: {} rounds (each waits for its 5 s probe timeout)",
                a.sdk_rounds
            );
            Some(sdk(py, &f.urls, &a).await?)
        }
        _ => {
            eprintln!("python sdk: skipped (no --python / LPGW_PYTHON)");
            None
        }
    };

    println!("| gateway | candidates | connections | rounds | p50 ms | p90 ms | min ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    let row = |name: &str, cands: &str, conns: &str, ms: &[f64]| {
        let s = summarize(ms);
        println!(
            "| {name} | {cands} | {conns} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            ms.len(),
            s.p50,
            s.p90,
            s.min,
            s.max
        );
        s
    };
    let (ten, one) = ("10 (7 dead or slow)", "1 (fastest healthy only)");
    let c10 = row("lpgw", ten, "cold", &cold_all);
    let c1 = row("lpgw", one, "cold", &cold_one);
    let w10 = row("lpgw", ten, "warm", &warm_all);
    let w1 = row("lpgw", one, "warm", &warm_one);
    let sdk = sdk_ms
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| row("python sdk 1.0.0", ten, "cold", v));
    println!();
    println!(
        "lpgw 10 candidates / fastest only (p50): cold {:.2}x, warm {:.2}x; fastest picked in \
         {cold_picked}/{n} cold and {warm_picked}/{n} warm rounds",
        c10.p50 / c1.p50,
        w10.p50 / w1.p50,
        n = a.rounds
    );
    if let Some(s) = sdk {
        println!(
            "python sdk / lpgw with 10 candidates (p50): {:.0}x cold, {:.0}x warm",
            s.p50 / c10.p50,
            s.p50 / w10.p50
        );
    }
    for d in f.devnets {
        d.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_picks_ranks() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.p50, s.min, s.max), (3.0, 1.0, 5.0));
        assert_eq!(s.p90, 5.0);
    }
}
