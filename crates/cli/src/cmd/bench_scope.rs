//! `lpgw bench scope`: time from a Scope start to the first processed output frame.
//!
//! One in-process devnet (offchain, TLS, its built-in Scope runners) serves both clients in
//! the same run, rounds alternating: our gateway (`Gateway::start` with the `scope` model,
//! which discovers, reserves and sends `start_stream`; then test-pattern frames through the
//! media publisher and the trickle bridge into the `in` channel while the `out` channel is
//! decoded) and the official Python SDK (`start_scope`, `start_stream` on its control
//! channel, `MediaPublish` and `MediaOutput`; `tests/interop/bench_scope.py`). Each round is
//! a fresh gateway and, for the SDK, a fresh process whose clock starts after its imports.
//! Test-pattern frames are made before the clock starts on both sides; both send them paced
//! at the same frame rate and size.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use lpgw_bridge::{
    CancellationToken, ChannelAccess, MediaSession, SessionChannels, SessionOptions,
};
use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle};
use lpgw_gateway::{Gateway, Settings, StartRequest};
use lpgw_media::{
    CLOCK_HZ, EncoderConfig, InputFrame, InputImage, LagPolicy, Output, OutputConfig, OutputFormat,
    Publisher as MediaPublisher, PublisherConfig as MediaConfig, test_pattern,
};
use lpgw_trickle::wire::SeqRequest;
use serde_json::json;

/// Options of `lpgw bench scope`.
#[derive(Debug, Args)]
pub(crate) struct ScopeBenchArgs {
    /// Timed rounds per client.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Frame rate of the test pattern.
    #[arg(long, default_value_t = 24)]
    fps: u32,
    /// Size of the test pattern, `WxH`.
    #[arg(long, default_value = "256x144", value_parser = crate::cmd::stream::parse_size)]
    size: (u32, u32),
    /// Pause before each round so the previous round's teardown (the runner ending its
    /// stream, the SDK process exiting) does not load the next, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pause_ms: u64,
    /// Give up on a round after this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Python interpreter with `livepeer-gateway` installed (see scripts/interop-venv.sh).
    #[arg(long, env = "LPGW_PYTHON")]
    python: Option<PathBuf>,
}

/// One round: milliseconds from the start call to media channels known, and to the first
/// decoded output frame.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Round {
    start_ms: f64,
    first_frame_ms: f64,
    /// The route our gateway took (`None` for the SDK).
    route: Option<lpgw_gateway::Route>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Our side of one round.
async fn ours(
    d: &DevnetHandle,
    a: &ScopeBenchArgs,
    frames: &[InputImage],
) -> anyhow::Result<Round> {
    let settings = Settings {
        orchestrators: vec![d.orchestrator_url().to_owned()],
        ..Settings::default()
    };
    let t0 = Instant::now();
    let gw = Gateway::new(settings)?;
    let mut req = StartRequest::new("scope");
    req.params = Some(json!({"prompt": "bench"}));
    let job = gw.start(&req).await.context("starting the scope job")?;
    let route = Some(job.route());
    let Ok(job) = job.into_scope() else {
        anyhow::bail!("the scope model started a job of another kind");
    };
    let media = job
        .media()
        .context("the Scope stream announced no media channels")?
        .clone();
    let start_ms = ms(t0.elapsed());
    let input = media
        .input
        .clone()
        .context("the Scope stream runs in text mode: no input channel")?;
    // The job's pinned client, as for every gateway job.
    let channels = SessionChannels {
        input: Some(input),
        output: media.output.clone(),
        access: job
            .channel_client()
            .map_or(ChannelAccess::AcceptAnyCertificate, ChannelAccess::Pinned),
    };
    let first = media_round(&channels, a, frames).await;
    job.close().await;
    Ok(Round {
        start_ms,
        first_frame_ms: ms(first?.saturating_duration_since(t0)),
        route,
    })
}

/// Publishes paced frames into `input` until the first decoded frame arrives from `output`;
/// returns when it did.
async fn media_round(
    channels: &SessionChannels,
    a: &ScopeBenchArgs,
    frames: &[InputImage],
) -> anyhow::Result<Instant> {
    let cancel = CancellationToken::new();
    let out_cfg = OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: 4,
        max_buffered_bytes: 32 << 20,
        frame_capacity: 16,
        format: OutputFormat::Yuv420,
    };
    let (seg_in, out_worker, mut decoded) = Output::spawn(out_cfg)?;
    let (media, events) = MediaPublisher::spawn(MediaConfig {
        encoder: EncoderConfig {
            fps: a.fps,
            keyframe_interval: Duration::from_millis(500),
            ..EncoderConfig::default()
        },
        queue_capacity: 8,
        min_segment: Duration::from_millis(500),
        event_capacity: 256,
    })?;
    let session = MediaSession::start(
        channels,
        events,
        seg_in,
        SessionOptions {
            output_start: Some(SeqRequest::At(0)),
            ..SessionOptions::default()
        },
        cancel.clone(),
    )?;
    let fps = a.fps.max(1);
    let tick = CLOCK_HZ / i64::from(fps);
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(fps)));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = tokio::time::sleep(Duration::from_secs(a.timeout_secs));
    tokio::pin!(deadline);
    let mut i = 0usize;
    let result = loop {
        tokio::select! {
            f = decoded.recv() => break match f {
                Some(Ok(_)) => Ok(Instant::now()),
                Some(Err(e)) => Err(anyhow::Error::from(e).context("decoding the output")),
                None => Err(anyhow::anyhow!("the output ended before a frame")),
            },
            _ = pace.tick() => {
                let image = frames[i % frames.len()].clone();
                media.push(InputFrame::with_pts(image, i as i64 * tick))?;
                i += 1;
            }
            () = &mut deadline => break Err(anyhow::anyhow!("no output frame within {} s", a.timeout_secs)),
        }
    };
    media.close();
    cancel.cancel();
    let (publish, feed) = session.into_tasks();
    for task in [publish, feed] {
        let _ = task.await;
    }
    drop(decoded);
    tokio::task::spawn_blocking(move || {
        let _ = media.join();
        out_worker.join()
    })
    .await??;
    result
}

/// The SDK's side of one round, in a fresh interpreter.
async fn sdk(py: &Path, d: &DevnetHandle, a: &ScopeBenchArgs) -> anyhow::Result<Round> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/bench_scope.py");
    let (w, h) = a.size;
    let out = tokio::process::Command::new(py)
        .arg(script)
        .args(["--orch", d.orchestrator_url()])
        .args(["--fps", &a.fps.to_string(), "--size", &format!("{w}x{h}")])
        .args(["--timeout", &a.timeout_secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(a.timeout_secs + 30), out)
        .await
        .context("the python sdk did not finish")?
        .context("running the python sdk")?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("the python sdk printed no JSON")?;
    anyhow::ensure!(v["ok"] == true, "python sdk failed: {}", v["error"]);
    let num = |k: &str| {
        v[k].as_f64()
            .with_context(|| format!("python sdk printed no {k}"))
    };
    Ok(Round {
        start_ms: num("start_ms")?,
        first_frame_ms: num("first_frame_ms")?,
        route: None,
    })
}

/// Median, min and max of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    median: f64,
    min: f64,
    max: f64,
}

fn summarize(v: &[f64]) -> Option<Summary> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return None;
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

fn cell(s: Option<Summary>) -> String {
    s.map_or_else(
        || "–".to_owned(),
        |s| format!("{:.0} ms ({:.0}–{:.0})", s.median, s.min, s.max),
    )
}

fn table(rows: &[(&str, &[Round])]) -> String {
    let mut t = String::from(
        "| client | rounds | start → media channels, median (min–max) | start → first output frame, median (min–max) |\n|---|---|---|---|\n",
    );
    for (name, r) in rows {
        let start: Vec<f64> = r.iter().map(|x| x.start_ms).collect();
        let first: Vec<f64> = r.iter().map(|x| x.first_frame_ms).collect();
        t.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            r.len(),
            cell(summarize(&start)),
            cell(summarize(&first))
        ));
    }
    t
}

pub(crate) async fn run(a: ScopeBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.rounds > 0, "--rounds must be positive");
    let d = Devnet::start(DevnetConfig {
        // Sessions a client leaves behind must not exhaust the runners during the run.
        live: lpgw_devnet::LiveConfig {
            scope: Some(lpgw_devnet::ScopeRunnerConfig {
                capacity: 1000,
                serverless_capacity: 1000,
                ..lpgw_devnet::ScopeRunnerConfig::default()
            }),
            ..lpgw_devnet::LiveConfig::default()
        },
        ..DevnetConfig::default()
    })
    .await?;
    let (w, h) = a.size;
    let frames: Vec<InputImage> = (0..a.fps.max(1))
        .map(|i| InputImage::Yuv420(test_pattern(w, h, i)))
        .collect();
    if a.python.is_none() {
        eprintln!("python sdk: skipped (no --python / LPGW_PYTHON)");
    }
    let (mut ours_r, mut sdk_r) = (Vec::new(), Vec::new());
    let pause = Duration::from_millis(a.pause_ms);
    for k in 0..a.rounds {
        tokio::time::sleep(pause).await;
        let r = ours(&d, &a, &frames).await?;
        eprintln!(
            "round {}: lpgw start {:.0} ms, first frame {:.0} ms ({:?})",
            k + 1,
            r.start_ms,
            r.first_frame_ms,
            r.route.unwrap_or(lpgw_gateway::Route::LiveRunner)
        );
        ours_r.push(r);
        if let Some(py) = &a.python {
            tokio::time::sleep(pause).await;
            let r = sdk(py, &d, &a).await?;
            eprintln!(
                "round {}: python sdk start {:.0} ms, first frame {:.0} ms",
                k + 1,
                r.start_ms,
                r.first_frame_ms
            );
            sdk_r.push(r);
        }
    }
    d.shutdown().await;
    let mut rows: Vec<(&str, &[Round])> = vec![("lpgw", &ours_r)];
    if a.python.is_some() {
        rows.push(("python sdk 1.0.0", &sdk_r));
    }
    println!(
        "Scope start to first processed frame, {w}x{h} at {} fps, in-process devnet (offchain, TLS)\n",
        a.fps
    );
    print!("{}", table(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_median_min_max() {
        let s = summarize(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn table_has_a_row_per_client() {
        let r = [Round {
            start_ms: 10.4,
            first_frame_ms: 900.0,
            route: None,
        }];
        let t = table(&[("lpgw", &r), ("python sdk 1.0.0", &[])]);
        assert!(
            t.contains("| lpgw | 1 | 10 ms (10–10) | 900 ms (900–900) |"),
            "{t}"
        );
        assert!(t.contains("| python sdk 1.0.0 | 0 | – | – |"), "{t}");
    }
}
