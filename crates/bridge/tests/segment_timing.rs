//! The per-segment timing observers of both bridges, against a real trickle server on
//! loopback: one report per segment, with the sequence numbers, byte counts and durations
//! that segment had.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lpgw_bridge::{
    CancellationToken, FeedOptions, PublishOptions, SegmentObserver, SegmentTiming, StatsHandle,
    feed_output, publish_segments,
};
use lpgw_media::{
    CLOCK_HZ, EncoderConfig, InputFrame, InputImage, LagPolicy, Output, OutputConfig, OutputFormat,
    Publisher as MediaPublisher, PublisherConfig as MediaConfig, SegmentEvent, test_pattern,
};
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::server::{ServerConfig, TrickleServer, nodelay};
use lpgw_trickle::wire::SeqRequest;
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(25);

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

async fn serve() -> (TrickleServer, String) {
    let server = TrickleServer::new(ServerConfig::default());
    let app = axum::Router::new().nest("/ai/trickle", server.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(nodelay(listener), app).await;
    });
    (server, format!("http://{addr}/ai/trickle"))
}

/// Encodes `n` small pattern frames (a keyframe, so a segment, every 0.5 s at 24 fps).
async fn encode_events(n: u32) -> Vec<SegmentEvent> {
    let (p, mut rx) = MediaPublisher::spawn(MediaConfig {
        encoder: EncoderConfig {
            preset: "ultrafast".into(),
            fps: 24,
            keyframe_interval: Duration::from_millis(500),
            threads: 1,
            ..EncoderConfig::default()
        },
        queue_capacity: 256,
        min_segment: Duration::ZERO,
        event_capacity: 256,
    })
    .unwrap();
    for i in 0..n {
        let img = InputImage::Yuv420(test_pattern(256, 144, i));
        p.push(InputFrame::with_pts(img, i64::from(i) * (CLOCK_HZ / 24)))
            .unwrap();
    }
    p.close();
    let mut evs = Vec::new();
    while let Some(e) = bounded(rx.recv()).await {
        evs.push(e);
    }
    evs
}

/// An observer that records every report.
fn recorder() -> (SegmentObserver, Arc<Mutex<Vec<SegmentTiming>>>) {
    let seen: Arc<Mutex<Vec<SegmentTiming>>> = Arc::default();
    let s = seen.clone();
    (Arc::new(move |t| s.lock().unwrap().push(t)), seen)
}

#[tokio::test]
async fn each_segment_is_timed_once_on_both_sides() {
    let (server, base) = serve().await;
    server.create_channel("t", "video/MP2T");
    let url = format!("{base}/t");

    let events = encode_events(48).await;
    let mut sizes: Vec<u64> = Vec::new();
    for e in &events {
        match e {
            SegmentEvent::Start { .. } => sizes.push(0),
            SegmentEvent::Data(b) => *sizes.last_mut().unwrap() += b.len() as u64,
            _ => {}
        }
    }
    assert!(sizes.len() >= 3, "keyframe every 0.5 s: {sizes:?}");

    // Subscriber first, so it reads every segment live.
    let (input, output, mut frames) = Output::spawn(OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: 64,
        max_buffered_bytes: 4 << 20,
        frame_capacity: 8,
        format: OutputFormat::Yuv420,
    })
    .unwrap();
    let drain = tokio::spawn(async move { while frames.recv().await.is_some() {} });
    let (out_obs, out_seen) = recorder();
    let in_stats = StatsHandle::new();
    let cancel = CancellationToken::new();
    let feed = {
        let (s, c) = (in_stats.clone(), cancel.clone());
        let mut sub = Subscriber::new(
            &url,
            SubscriberConfig {
                start: SeqRequest::At(0),
                ..SubscriberConfig::default()
            },
        )
        .unwrap();
        let opts = FeedOptions {
            on_segment: Some(out_obs),
            ..FeedOptions::default()
        };
        tokio::spawn(async move { feed_output(&mut sub, &input, opts, s, c).await })
    };

    let (in_obs, in_seen) = recorder();
    let (tx, rx) = mpsc::channel(events.len());
    for e in events {
        tx.send(e).await.unwrap();
    }
    drop(tx);
    let mut p = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    let opts = PublishOptions {
        close_at_end: false,
        on_segment: Some(in_obs),
        ..PublishOptions::default()
    };
    let out_stats = StatsHandle::new();
    bounded(publish_segments(
        rx,
        &mut p,
        opts,
        out_stats.clone(),
        cancel.clone(),
    ))
    .await
    .expect("publish ok");
    let sent = out_stats.get().bytes;
    bounded(async {
        while in_stats.get().bytes < sent {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    bounded(p.close()).await.unwrap();
    bounded(feed).await.unwrap().expect("feed ok");
    bounded(drain).await.unwrap();
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();

    // Publish side: every segment answered, once, after its last byte.
    let mut ins = in_seen.lock().unwrap().clone();
    ins.sort_by_key(|t| t.seq);
    assert_eq!(ins.len(), sizes.len(), "{ins:?}");
    for (i, t) in ins.iter().enumerate() {
        assert_eq!(t.seq, i as u64, "{ins:?}");
        assert_eq!(t.bytes, sizes[i], "{t:?}");
        assert!(t.ok, "{t:?}");
        assert_eq!(t.first_byte, None, "{t:?}");
        let ack = t.ack.expect("acknowledged");
        assert!(ack <= t.total && t.total < STEP, "{t:?}");
    }

    // Subscribe side: every segment fed, in order, each with a first byte.
    let outs = out_seen.lock().unwrap().clone();
    assert_eq!(outs.len(), sizes.len(), "{outs:?}");
    for (i, t) in outs.iter().enumerate() {
        assert_eq!(t.seq, i as u64, "{outs:?}");
        assert_eq!(t.bytes, sizes[i], "{t:?}");
        assert!(t.ok, "{t:?}");
        assert_eq!(t.ack, None, "{t:?}");
        let first = t.first_byte.expect("a first byte");
        assert!(first < STEP && t.total < STEP, "{t:?}");
    }
}
