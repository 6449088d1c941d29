//! Video through a real LV2V job on an in-test devnet: a test pattern goes in through the
//! gateway's publish channel, the devnet runner's effect comes out of the subscribe channel.
//! Checks frame count, order and timestamps, the effect on pixels, that a new prompt sent on
//! the control channel changes the picture, and `lpgw stream` itself.

use std::process::Stdio;
use std::time::Duration;

use lpgw_bridge::{
    CancellationToken, FeedOptions, PublishOptions, StatsHandle, feed_output, publish_segments,
};
use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle};
use lpgw_gateway::{Gateway, Settings, StartRequest};
use lpgw_media::{
    CLOCK_HZ, DecodedFrame, EncoderConfig, InputFrame, InputImage, LagPolicy, Output, OutputConfig,
    OutputFormat, Publisher as MediaPublisher, PublisherConfig as MediaConfig, SegmentEvent,
    Yuv420Frame, apply_prompt_effect, read_test_pattern_index, test_pattern,
};
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::wire::SeqRequest;
use serde_json::json;

const STEP: Duration = Duration::from_secs(25);
const W: u32 = 192;
const H: u32 = 128;
const FPS: u32 = 48;
const TICK: i64 = CLOCK_HZ / FPS as i64;

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

async fn devnet() -> DevnetHandle {
    bounded(
        "devnet start",
        Devnet::start(DevnetConfig {
            tls: false,
            models: vec!["streamdiffusion".into(), "relay".into()],
            status_interval: Duration::from_millis(200),
            ..DevnetConfig::default()
        }),
    )
    .await
    .expect("devnet")
}

fn gateway(d: &DevnetHandle) -> Gateway {
    Gateway::new(Settings {
        orchestrators: vec![d.orchestrator_url().to_owned()],
        ..Settings::default()
    })
    .unwrap()
}

/// Mean absolute difference over all three planes.
fn mad(a: &Yuv420Frame, b: &Yuv420Frame) -> f64 {
    let planes = [(&a.y, &b.y), (&a.u, &b.u), (&a.v, &b.v)];
    let (mut sum, mut n) = (0u64, 0u64);
    for (p, q) in planes {
        assert_eq!(p.len(), q.len());
        sum += p
            .iter()
            .zip(q.iter())
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum::<u64>();
        n += p.len() as u64;
    }
    sum as f64 / n as f64
}

fn expected(index: u32, prompt: &str, strength: f32) -> Yuv420Frame {
    let mut f = test_pattern(W, H, index);
    apply_prompt_effect(&mut f, prompt, strength);
    f
}

/// Publishes `n` paced pattern frames to the job and collects what comes back. After
/// `switch_at` frames, `switch` is sent on the control channel.
async fn round_trip(
    d: &DevnetHandle,
    model: &str,
    params: serde_json::Value,
    n: u32,
    switch: Option<(u32, serde_json::Value)>,
) -> Vec<DecodedFrame> {
    let gw = gateway(d);
    let req = StartRequest {
        params: Some(params),
        ..StartRequest::new(model)
    };
    let job = bounded("start", gw.start_lv2v(&req)).await.expect("job");
    let urls = job.urls().clone();
    let cancel = CancellationToken::new();

    let (input, output, mut frames) = Output::spawn(OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: 8,
        max_buffered_bytes: 8 << 20,
        frame_capacity: 8,
        format: OutputFormat::Yuv420,
    })
    .unwrap();
    let mut sub = Subscriber::new(
        &urls.subscribe_url,
        SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
    )
    .unwrap();
    let feed = tokio::spawn({
        let c = cancel.clone();
        async move {
            feed_output(
                &mut sub,
                &input,
                FeedOptions::default(),
                StatsHandle::new(),
                c,
            )
            .await
        }
    });
    let collect = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(f) = frames.recv().await {
            got.push(f.expect("decoded frame"));
        }
        got
    });

    let (media, events) = MediaPublisher::spawn(MediaConfig {
        encoder: EncoderConfig {
            preset: "ultrafast".into(),
            fps: FPS,
            keyframe_interval: Duration::from_millis(500),
            threads: 1,
            ..EncoderConfig::default()
        },
        queue_capacity: 64,
        min_segment: Duration::from_millis(200),
        event_capacity: 64,
    })
    .unwrap();
    let publish = tokio::spawn({
        let (c, url) = (cancel.clone(), urls.publish_url.clone());
        async move {
            let mut p = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
            publish_segments(
                events,
                &mut p,
                PublishOptions::default(),
                StatsHandle::new(),
                c,
            )
            .await
        }
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1) / FPS);
    for i in 0..n {
        tick.tick().await;
        if let Some((at, msg)) = &switch
            && *at == i
        {
            bounded("control", job.send_control(msg)).await.unwrap();
        }
        let img = InputImage::Yuv420(test_pattern(W, H, i));
        media
            .push(InputFrame::with_pts(img, i64::from(i) * TICK))
            .unwrap();
    }
    media.close();
    bounded("publish", publish)
        .await
        .unwrap()
        .expect("published");
    // The runner flushes and deletes its output once the input channel is gone.
    bounded("feed", feed).await.unwrap().expect("fed");
    let got = bounded("frames", collect).await.unwrap();
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();
    bounded("close", job.close()).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effect_runner_transforms_every_frame_and_follows_the_prompt() {
    let d = devnet().await;
    let n = 96;
    let frames = round_trip(
        &d,
        "streamdiffusion",
        json!({"prompt": "a cat", "strength": 1.0}),
        n,
        Some((
            48,
            json!({"type": "parameters", "params": {"prompt": "a dog"}}),
        )),
    )
    .await;
    assert_eq!(frames.len(), n as usize, "every frame came back");
    for (i, f) in frames.iter().enumerate() {
        let i = i as u32;
        let yuv = f.yuv.as_ref().unwrap();
        assert_eq!((f.width, f.height), (W, H));
        assert_eq!(read_test_pattern_index(yuv), Some(i), "order at {i}");
        assert_eq!(f.pts, Some(i64::from(i) * TICK), "timestamp of frame {i}");
        let cat = mad(yuv, &expected(i, "a cat", 1.0));
        let dog = mad(yuv, &expected(i, "a dog", 1.0));
        let plain = mad(yuv, &test_pattern(W, H, i));
        // Lossy coding twice costs a few levels; the effect moves pixels by tens.
        let (near, far) = if i < 40 {
            (cat, dog)
        } else if i >= 72 {
            (dog, cat)
        } else {
            (cat.min(dog), cat.max(dog))
        };
        assert!(
            near < 6.0,
            "frame {i}: {near:.1} from its effect (cat {cat:.1}, dog {dog:.1})"
        );
        assert!(
            far > 3.0 * near + 6.0,
            "frame {i}: prompts distinguishable (cat {cat:.1}, dog {dog:.1})"
        );
        assert!(
            plain > 3.0 * near + 6.0,
            "frame {i}: effect visible ({plain:.1} from the input)"
        );
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strength_scales_the_effect_and_relay_passes_segments_unchanged() {
    let d = devnet().await;
    let weak = round_trip(
        &d,
        "streamdiffusion",
        json!({"prompt": "x", "strength": 0.3}),
        24,
        None,
    )
    .await;
    assert_eq!(weak.len(), 24);
    let f = &weak[12];
    let yuv = f.yuv.as_ref().unwrap();
    let idx = read_test_pattern_index(yuv).expect("index");
    let near = mad(yuv, &expected(idx, "x", 0.3));
    let strong = mad(yuv, &expected(idx, "x", 1.0));
    assert!(
        near < 6.0 && strong > near + 4.0,
        "weak {near:.1} strong {strong:.1}"
    );

    let relayed = round_trip(&d, "relay", json!({"prompt": "ignored"}), 24, None).await;
    assert_eq!(relayed.len(), 24);
    for (i, f) in relayed.iter().enumerate() {
        let yuv = f.yuv.as_ref().unwrap();
        assert_eq!(read_test_pattern_index(yuv), Some(i as u32));
        assert!(
            mad(yuv, &test_pattern(W, H, i as u32)) < 4.0,
            "relay leaves frame {i} alone"
        );
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lpgw_stream_records_the_processed_video() {
    record_with_lpgw_stream("streamdiffusion", &[], prompt_effect).await;
}

/// `scope` goes through the live-runner flow: discovery, reservation, `POST {app}/scope`, the
/// Scope start sequence (no pipeline named: the configured default loads), then media on the
/// announced `in`/`out` channels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lpgw_stream_through_a_scope_live_runner() {
    record_with_lpgw_stream("scope", &[], prompt_effect).await;
}

/// `--pipeline gray`: the runner loads Scope's `gray` pipeline and the recording is the
/// input's luma with neutral chroma.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lpgw_stream_with_the_gray_pipeline_writes_gray_video() {
    record_with_lpgw_stream("scope", &["--pipeline", "gray"], |i, yuv| {
        let input = test_pattern(128, 96, i);
        let mean_off = |p: &[u8]| {
            p.iter().map(|&v| (f64::from(v) - 128.0).abs()).sum::<f64>() / p.len() as f64
        };
        assert!(mean_off(&yuv.u) < 3.0, "frame {i}: U is not neutral");
        assert!(mean_off(&yuv.v) < 3.0, "frame {i}: V is not neutral");
        let luma_err = yuv
            .y
            .iter()
            .zip(&input.y)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / input.y.len() as f64;
        assert!(
            luma_err < 8.0,
            "frame {i}: luma is not the input's ({luma_err:.1})"
        );
    })
    .await;
}

/// The prompt effect of `lpgw stream --prompt "a cat"`, frame by frame.
fn prompt_effect(i: u32, yuv: &Yuv420Frame) {
    let mut want = test_pattern(128, 96, i);
    apply_prompt_effect(&mut want, "a cat", 0.8);
    let d = mad(yuv, &want);
    assert!(d < 6.0, "frame {i} carries the effect (mad {d:.1})");
}

async fn record_with_lpgw_stream(model: &str, extra: &[&str], check: impl Fn(u32, &Yuv420Frame)) {
    // One folder per run: two runs of one model at once must not share a recording.
    let tag = extra.join("-");
    let dir = std::env::temp_dir().join(format!("lpgw-stream-{model}{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.ts");
    let status = bounded(
        "lpgw stream",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_lpgw"))
            .args(["stream", "--model", model, "--devnet", "--input", "testsrc"])
            .args([
                "--duration",
                "1.5",
                "--fps",
                "24",
                "--size",
                "128x96",
                "--prompt",
                "a cat",
            ])
            .args(extra)
            .arg("--output")
            .arg(&out)
            .env("LPGW_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .unwrap();
    assert!(status.success());
    let ts = std::fs::read(&out).unwrap();
    assert!(
        !ts.is_empty() && ts.len().is_multiple_of(188),
        "{} bytes of TS",
        ts.len()
    );
    // Decode the recording with our own pipeline: 36 frames, in order, with the effect.
    let (input, output, mut frames) = Output::spawn(OutputConfig {
        format: OutputFormat::Yuv420,
        max_pending_segments: 4,
        ..OutputConfig::default()
    })
    .unwrap();
    input.send(SegmentEvent::Start { seq_hint: 0 }).unwrap();
    input.push(ts.into()).unwrap();
    input.end_segment().unwrap();
    input.close();
    let mut idx = Vec::new();
    while let Some(f) = bounded("decode", frames.recv()).await {
        let f = f.unwrap();
        let yuv = f.yuv.unwrap();
        let i = read_test_pattern_index(&yuv).expect("index");
        check(i, &yuv);
        idx.push(i);
    }
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(idx, (0..36).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effect_runner_survives_garbage_on_its_input() {
    let d = devnet().await;
    let gw = gateway(&d);
    let job = bounded(
        "start",
        gw.start_lv2v(&StartRequest::new("streamdiffusion")),
    )
    .await
    .unwrap();
    let urls = job.urls().clone();
    // Valid segments to follow the garbage: 24 frames, 0.5 s GOPs.
    let (media, mut events) = MediaPublisher::spawn(MediaConfig {
        encoder: EncoderConfig {
            preset: "ultrafast".into(),
            fps: 24,
            keyframe_interval: Duration::from_millis(500),
            threads: 1,
            ..EncoderConfig::default()
        },
        queue_capacity: 64,
        min_segment: Duration::ZERO,
        event_capacity: 256,
    })
    .unwrap();
    for i in 0..24u32 {
        let img = InputImage::Yuv420(test_pattern(W, H, i));
        media
            .push(InputFrame::with_pts(img, i64::from(i) * CLOCK_HZ / 24))
            .unwrap();
    }
    media.close();
    let mut segs: Vec<Vec<u8>> = Vec::new();
    while let Some(ev) = bounded("encode", events.recv()).await {
        match ev {
            SegmentEvent::Start { .. } => segs.push(Vec::new()),
            SegmentEvent::Data(b) => segs.last_mut().unwrap().extend_from_slice(&b),
            _ => {}
        }
    }
    assert_eq!(segs.len(), 2);

    let (input, output, mut frames) = Output::spawn(OutputConfig {
        format: OutputFormat::Yuv420,
        max_pending_segments: 8,
        ..OutputConfig::default()
    })
    .unwrap();
    let mut sub = Subscriber::new(
        &urls.subscribe_url,
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
    let mut p =
        Publisher::new(&urls.publish_url, "video/MP2T", PublisherConfig::default()).unwrap();
    let mut noise = vec![0x47u8; 200_000];
    for (k, b) in noise.iter_mut().enumerate() {
        *b = (k.wrapping_mul(2_654_435_761) >> 7) as u8;
    }
    for seg in [
        noise,
        segs[0][..segs[0].len() / 3].to_vec(),
        segs[0].clone(),
        segs[1].clone(),
    ] {
        bounded("write", p.write_segment(seg.into())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    bounded("close input", p.close()).await.unwrap();
    bounded("feed", feed).await.unwrap().expect("output read");
    let mut idx = Vec::new();
    while let Some(f) = bounded("frames", frames.recv()).await {
        let f = f.unwrap();
        idx.push(read_test_pattern_index(f.yuv.as_ref().unwrap()).expect("index"));
    }
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();
    // The truncated copy of the first segment may give a few frames; the two whole segments
    // give all 24, in order, after them.
    let tail = &idx[idx.len().saturating_sub(24)..];
    assert_eq!(tail, (0..24).collect::<Vec<_>>().as_slice(), "{idx:?}");
    bounded("close", job.close()).await;
    d.shutdown().await;
}
