//! Media interop with the official Python SDK (livepeer-gateway 1.0.0): its `MediaPublish`
//! feeds a devnet job whose output we decode, and its `MediaOutput` decodes what our
//! publisher streams. The peer is `tests/interop/media_peer.py`.
//!
//! The SDK lives in a venv outside the tree (`scripts/interop-venv.sh`); when it is missing
//! the tests say so and pass, unless `LPGW_REQUIRE_INTEROP=1`, in which case they fail.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use lpgw_bridge::{
    CancellationToken, FeedOptions, PublishOptions, StatsHandle, feed_output, publish_segments,
};
use lpgw_devnet::{Devnet, DevnetConfig};
use lpgw_gateway::{Gateway, Settings, StartRequest};
use lpgw_media::{
    CLOCK_HZ, EncoderConfig, InputFrame, InputImage, LagPolicy, Output, OutputConfig, OutputFormat,
    Publisher as MediaPublisher, PublisherConfig as MediaConfig, Yuv420Frame, apply_prompt_effect,
    read_test_pattern_index, test_pattern,
};
use lpgw_testkit::python;
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::server::{ServerConfig, TrickleServer, nodelay};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(40);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

fn peer(py: &PathBuf, args: &[&str]) -> tokio::process::Command {
    let script = lpgw_testkit::interop_script("media_peer.py");
    let mut c = tokio::process::Command::new(py);
    c.arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    c
}

fn parse(out: &[u8]) -> Value {
    let text = String::from_utf8_lossy(out);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("peer output {text:?}: {e}"))
}

/// The peer's picture for frame `index` (see media_peer.py), rebuilt here.
fn peer_pattern(w: u32, h: u32, index: u32) -> Yuv420Frame {
    let mut f = Yuv420Frame::filled(w, h, 0, 128, 128);
    for y in 0..h {
        for x in 0..w {
            f.y[(y * w + x) as usize] = ((x + y * 2 + index * 3) % 150 + 40) as u8;
        }
    }
    let b = (w / 16).min(h / 4).min(32);
    for bit in 0..16 {
        let on = (index >> (15 - bit)) & 1 == 1;
        for (row, value) in [(0, on), (1, !on)] {
            for y in row * b..(row + 1) * b {
                for x in bit * b..(bit + 1) * b {
                    f.y[(y * w + x) as usize] = if value { 235 } else { 16 };
                }
            }
        }
    }
    f
}

fn mad(a: &Yuv420Frame, b: &Yuv420Frame) -> f64 {
    let (mut sum, mut n) = (0u64, 0u64);
    for (p, q) in [(&a.y, &b.y), (&a.u, &b.u), (&a.v, &b.v)] {
        sum += p
            .iter()
            .zip(q.iter())
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum::<u64>();
        n += p.len() as u64;
    }
    sum as f64 / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_media_publish_through_a_devnet_job_decodes_here() {
    let Some(py) = python() else { return };
    let d = bounded(
        "devnet",
        Devnet::start(DevnetConfig {
            tls: false,
            ..DevnetConfig::default()
        }),
    )
    .await
    .unwrap();
    let gw = Gateway::new(Settings {
        orchestrators: vec![d.orchestrator_url().to_owned()],
        ..Settings::default()
    })
    .unwrap();
    let req = StartRequest {
        params: Some(json!({"prompt": "interop", "strength": 1.0})),
        ..StartRequest::new("streamdiffusion")
    };
    let job = bounded("start", gw.start_lv2v(&req)).await.unwrap();
    let (input, output, mut frames) = Output::spawn(OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: 8,
        format: OutputFormat::Yuv420,
        ..OutputConfig::default()
    })
    .unwrap();
    let mut sub = Subscriber::new(
        &job.urls().subscribe_url,
        SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
    )
    .unwrap();
    let feed = tokio::spawn(async move {
        feed_output(
            &mut sub,
            &input,
            FeedOptions::default(),
            StatsHandle::new(),
            CancellationToken::new(),
        )
        .await
    });
    let collect = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(f) = frames.recv().await {
            got.push(f.expect("frame"));
        }
        got
    });
    let n = 48;
    let out = bounded(
        "python publish",
        peer(
            &py,
            &[
                "publish",
                "--url",
                &job.urls().publish_url,
                "--frames",
                "48",
                "--fps",
                "24",
            ],
        )
        .output(),
    )
    .await
    .unwrap();
    let v = parse(&out.stdout);
    assert_eq!(v["ok"], true, "{v}");
    let dropped = v["dropped"].as_u64().unwrap();
    // The SDK's close deletes the input channel; the runner then flushes and ends its output.
    bounded("feed", feed).await.unwrap().expect("feed");
    let got = bounded("frames", collect).await.unwrap();
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();
    let idx: Vec<u32> = got
        .iter()
        .filter_map(|f| read_test_pattern_index(f.yuv.as_ref().unwrap()))
        .collect();
    assert_eq!(
        got.len() as u64,
        n - dropped,
        "every frame the SDK encoded came back: {idx:?} {v}"
    );
    let mut last = None;
    for f in &got {
        let yuv = f.yuv.as_ref().unwrap();
        assert_eq!((f.width, f.height), (256, 144));
        let i = read_test_pattern_index(yuv).expect("index");
        assert!(last.is_none_or(|l| i > l), "in order");
        last = Some(i);
        let mut want = peer_pattern(256, 144, i);
        apply_prompt_effect(&mut want, "interop", 1.0);
        let near = mad(yuv, &want);
        let plain = mad(yuv, &peer_pattern(256, 144, i));
        assert!(
            near < 6.0 && plain > 3.0 * near + 6.0,
            "frame {i}: effect {near:.1}, input {plain:.1}"
        );
    }
    bounded("close", job.close()).await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_publisher_decodes_with_sdk_media_output() {
    let Some(py) = python() else { return };
    let server = TrickleServer::new(ServerConfig::default());
    server.create_channel("v", "video/MP2T");
    let app = axum::Router::new().nest("/ai/trickle", server.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ai/trickle/v", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(nodelay(listener), app).await;
    });
    let reader = peer(&py, &["subscribe", "--url", &url, "--timeout", "30"])
        .spawn()
        .unwrap();

    let (media, events) = MediaPublisher::spawn(MediaConfig {
        encoder: EncoderConfig {
            fps: 24,
            keyframe_interval: Duration::from_millis(500),
            ..EncoderConfig::default()
        },
        queue_capacity: 64,
        min_segment: Duration::from_millis(200),
        ..MediaConfig::default()
    })
    .unwrap();
    let stats = StatsHandle::new();
    let publish = tokio::spawn({
        let (url, stats) = (url.clone(), stats.clone());
        async move {
            let mut p = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
            let opts = PublishOptions {
                close_at_end: false,
                ..PublishOptions::default()
            };
            let r = publish_segments(events, &mut p, opts, stats, CancellationToken::new()).await;
            (r, p)
        }
    });
    let n = 48u32;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / 48);
    for i in 0..n {
        tick.tick().await;
        let img = InputImage::Yuv420(test_pattern(256, 144, i));
        media
            .push(InputFrame::with_pts(img, i64::from(i) * CLOCK_HZ / 24))
            .unwrap();
    }
    media.close();
    let (r, mut p) = bounded("publish", publish).await.unwrap();
    r.unwrap();
    assert!(stats.get().segments >= 2);
    // Give the reader time to fetch the last segment before the channel goes away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bounded("close", p.close()).await.unwrap();
    let out = bounded("python subscribe", reader.wait_with_output())
        .await
        .unwrap();
    let v = parse(&out.stdout);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["frames"], n, "{v}");
    let want: Vec<Value> = (0..n).map(|i| json!(i)).collect();
    assert_eq!(v["indices"], Value::Array(want), "{v}");
    assert_eq!(v["sizes"], json!([[256, 144]]));
}
