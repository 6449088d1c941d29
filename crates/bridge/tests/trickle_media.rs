//! Media over a real trickle server on loopback: frames in, frames out, and what happens
//! when the channel carries garbage, the wrong content type, or a publisher that stalls; and
//! the per-segment timing observers of both directions; and a media session that moves to
//! new channels mid-stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lpgw_bridge::{
    BridgeError, CancellationToken, FeedOptions, PublishOptions, SegmentObserver, SegmentTiming,
    StatsHandle, feed_output, publish_segments,
};
use lpgw_media::{
    CLOCK_HZ, DecodedFrame, EncoderConfig, InputFrame, InputImage, LagPolicy, MediaError, Output,
    OutputConfig, OutputFormat, Publisher as MediaPublisher, PublisherConfig as MediaConfig,
    SegmentEvent, read_test_pattern_index, test_pattern,
};
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::server::{ServerConfig, TrickleServer, nodelay};
use lpgw_trickle::wire::SeqRequest;
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(25);
const W: u32 = 256;
const H: u32 = 144;
const TICK: i64 = CLOCK_HZ / 24;

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

/// A trickle server on 127.0.0.1:0; returns it and its base URL.
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

fn media_cfg() -> MediaConfig {
    MediaConfig {
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
    }
}

fn out_cfg() -> OutputConfig {
    OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: 64,
        max_buffered_bytes: 4 << 20,
        frame_capacity: 8,
        format: OutputFormat::Yuv420,
    }
}

fn sub(url: &str) -> Subscriber {
    Subscriber::new(
        url,
        SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
    )
    .unwrap()
}

/// Collects decoded frames until the channel ends.
async fn collect(mut rx: mpsc::Receiver<Result<DecodedFrame, MediaError>>) -> Vec<DecodedFrame> {
    let mut frames = Vec::new();
    while let Some(f) = rx.recv().await {
        frames.push(f.expect("frame"));
    }
    frames
}

/// Encodes `n` pattern frames and returns the segment events (for raw publishing).
async fn encode_events(n: u32) -> Vec<SegmentEvent> {
    let (p, mut rx) = MediaPublisher::spawn(media_cfg()).unwrap();
    for i in 0..n {
        let img = InputImage::Yuv420(test_pattern(W, H, i));
        p.push(InputFrame::with_pts(img, i64::from(i) * TICK))
            .unwrap();
    }
    p.close();
    let mut evs = Vec::new();
    while let Some(e) = bounded(rx.recv()).await {
        evs.push(e);
    }
    evs
}

/// Whole segments' bytes from publisher events.
fn segments(evs: &[SegmentEvent]) -> Vec<Vec<u8>> {
    let mut segs: Vec<Vec<u8>> = Vec::new();
    for e in evs {
        match e {
            SegmentEvent::Start { .. } => segs.push(Vec::new()),
            SegmentEvent::Data(b) => segs.last_mut().unwrap().extend_from_slice(b),
            _ => {}
        }
    }
    segs
}

#[tokio::test]
async fn frames_cross_trickle_in_order_with_their_timestamps() {
    let (server, base) = serve().await;
    server.create_channel("rt", "video/MP2T");
    let url = format!("{base}/rt");
    let n = 60u32;

    let (input, output, rx) = Output::spawn(out_cfg()).unwrap();
    let in_stats = StatsHandle::new();
    let cancel = CancellationToken::new();
    let mut subscriber = sub(&url);
    let feed = {
        let (s, c) = (in_stats.clone(), cancel.clone());
        tokio::spawn(async move {
            let r = feed_output(&mut subscriber, &input, FeedOptions::default(), s, c).await;
            (r, input.stats())
        })
    };
    let frames = tokio::spawn(collect(rx));

    let (media, events) = MediaPublisher::spawn(media_cfg()).unwrap();
    let out_stats = StatsHandle::new();
    let publish = {
        let (s, c, url) = (out_stats.clone(), cancel.clone(), url.clone());
        tokio::spawn(async move {
            let mut p = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
            // The channel is deleted only once the reader has everything: the burst below
            // runs far ahead of it, and a deleted channel ends its readers at once.
            let opts = PublishOptions {
                close_at_end: false,
                ..PublishOptions::default()
            };
            let r = publish_segments(events, &mut p, opts, s, c).await;
            (r, p)
        })
    };
    for i in 0..n {
        let img = InputImage::Yuv420(test_pattern(W, H, i));
        media
            .push(InputFrame::with_pts(img, 1000 + i64::from(i) * TICK))
            .unwrap();
    }
    media.close();
    let (r, mut p) = bounded(publish).await.unwrap();
    r.expect("publish ok");
    let sent = out_stats.get().bytes;
    bounded(async {
        while in_stats.get().bytes < sent {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    bounded(p.close()).await.unwrap();
    let (fed, ostats) = bounded(feed).await.unwrap();
    fed.expect("feed ok");
    let frames = bounded(frames).await.unwrap();
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();

    let ps = out_stats.get();
    assert!(ps.segments >= 2, "keyframe every 0.5 s: {ps:?}");
    assert_eq!(ps.segments_ok, ps.segments, "{ps:?}");
    assert_eq!(ps.segments_failed, 0);
    let fs = in_stats.get();
    assert_eq!(fs.segments, ps.segments, "every segment fed: {fs:?}");
    assert_eq!(fs.bytes, ps.bytes);
    assert_eq!(ostats.bytes_in, ps.bytes, "the decoder got every byte");

    assert_eq!(frames.len(), n as usize);
    for (i, f) in frames.iter().enumerate() {
        let yuv = f.yuv.as_ref().expect("yuv requested");
        assert_eq!((f.width, f.height), (W, H));
        assert_eq!(read_test_pattern_index(yuv), Some(i as u32), "frame {i}");
        // Source timestamps are kept, shifted so the stream starts at zero.
        assert_eq!(f.pts, Some(i as i64 * TICK), "frame {i} pts");
    }
}

#[tokio::test]
async fn garbage_and_truncated_segments_cost_frames_not_the_stream() {
    let (server, base) = serve().await;
    server.create_channel("g", "video/MP2T");
    let url = format!("{base}/g");
    let segs = segments(&encode_events(36).await);
    assert!(segs.len() >= 3, "{}", segs.len());
    let frames_per_seg = 12; // 0.5 s GOPs at 24 fps

    let cfg = OutputConfig {
        max_buffered_bytes: 256 << 10,
        ..out_cfg()
    };
    let (input, output, rx) = Output::spawn(cfg).unwrap();
    let input = std::sync::Arc::new(input);
    let cancel = CancellationToken::new();
    let mut subscriber = sub(&url);
    let fed_stats = StatsHandle::new();
    let feed = tokio::spawn({
        let (c, st, input) = (cancel.clone(), fed_stats.clone(), input.clone());
        async move {
            let r = feed_output(&mut subscriber, &input, FeedOptions::default(), st, c).await;
            (r, input.stats())
        }
    });
    let frames = tokio::spawn(collect(rx));

    let mut p = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    // A good segment, pure garbage, a big garbage segment over the decoder's byte bound,
    // half a segment, then a good one.
    let mut noise = vec![0u8; 3 << 20];
    let mut x = 0x1234_5678u32;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let half = segs[1][..segs[1].len() / 2].to_vec();
    let plan: Vec<Bytes> = vec![
        segs[0].clone().into(),
        Bytes::from_static(b"\x47garbage that starts like a TS packet and is not one"),
        noise.into(),
        half.into(),
        segs[2].clone().into(),
    ];
    let total: usize = plan.iter().map(Bytes::len).sum();
    let mut sent = 0;
    for seg in plan {
        sent += seg.len() as u64;
        bounded(p.write_segment(seg))
            .await
            .expect("segment published");
        // One segment at a time: the byte bound is shared by everything queued, so a good
        // segment arriving while garbage still waits would be cut by design.
        bounded(async {
            while fed_stats.get().bytes < sent || input.stats().queue_bytes > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(input.stats().queue_bytes <= 256 << 10, "buffer bound held");
    }
    // Deleting the channel ends its readers at once: let the reader catch up first.
    bounded(async {
        while fed_stats.get().bytes < total as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    bounded(p.close()).await.unwrap();
    let (fed, stats) = bounded(feed).await.unwrap();
    fed.expect("feed survives garbage");
    let frames = bounded(frames).await.unwrap();
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();

    let idx: Vec<u32> = frames
        .iter()
        .map(|f| read_test_pattern_index(f.yuv.as_ref().unwrap()).expect("index"))
        .collect();
    // Both good segments decode completely; the truncated one gives at most its first half.
    for i in 0..frames_per_seg {
        assert!(idx.contains(&i), "frame {i} of the first segment: {idx:?}");
        assert!(
            idx.contains(&(24 + i)),
            "frame {} of the last segment",
            24 + i
        );
    }
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "in order: {idx:?}");
    assert!(frames.len() < 36, "the truncated segment lost frames");
    assert!(
        stats.bytes_dropped_overflow > 0 || stats.ts_skipped_bytes > 0,
        "garbage was dropped: {stats:?}"
    );
    assert!(
        stats.queue_bytes <= 256 << 10,
        "buffer bound held: {stats:?}"
    );
}

#[tokio::test]
async fn a_channel_that_is_not_video_is_refused() {
    let (server, base) = serve().await;
    server.create_channel("j", "application/json");
    let url = format!("{base}/j");
    let mut p = Publisher::new(&url, "application/json", PublisherConfig::default()).unwrap();
    bounded(p.write_segment(Bytes::from_static(b"{\"a\":1}")))
        .await
        .unwrap();
    let (input, _output, _rx) = Output::spawn(out_cfg()).unwrap();
    let mut subscriber = sub(&url);
    let stats = StatsHandle::new();
    let r = bounded(feed_output(
        &mut subscriber,
        &input,
        FeedOptions::default(),
        stats.clone(),
        CancellationToken::new(),
    ))
    .await;
    match r {
        Err(BridgeError::ContentType { seq, content_type }) => {
            assert_eq!(seq, 0);
            assert_eq!(content_type, "application/json");
        }
        other => panic!("expected a content-type error, got {other:?}"),
    }
    assert_eq!(stats.get().bytes, 0, "nothing reached the decoder");
    assert!(
        input.push(Bytes::from_static(b"x")).is_err(),
        "input closed"
    );
}

#[tokio::test]
async fn a_stalled_publisher_delivers_what_it_sent_and_cancels_cleanly() {
    let (server, base) = serve().await;
    server.create_channel("s", "video/MP2T");
    let url = format!("{base}/s");
    let evs = encode_events(12).await;
    let seg = segments(&evs).remove(0);
    assert!(seg.len() > 188 * 20);

    let (input, output, mut rx) = Output::spawn(out_cfg()).unwrap();
    let cancel = CancellationToken::new();
    let mut subscriber = sub(&url);
    let stats = StatsHandle::new();
    let feed = tokio::spawn({
        let (c, s) = (cancel.clone(), stats.clone());
        async move {
            let r = feed_output(&mut subscriber, &input, FeedOptions::default(), s, c).await;
            (r, input.stats())
        }
    });
    let mut p = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    let mut w = bounded(p.next_segment()).await.unwrap();
    // Most of the segment, cut on a packet boundary, then nothing more: a stalled publisher.
    let cut = (seg.len() * 3 / 4) / 188 * 188;
    bounded(w.write(Bytes::copy_from_slice(&seg[..cut])))
        .await
        .unwrap();
    // Frames whose bytes arrived come out while the segment is still open.
    let first = bounded(rx.recv()).await.expect("a frame").expect("ok");
    assert_eq!(
        read_test_pattern_index(first.yuv.as_ref().unwrap()),
        Some(0)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stats.get().segments_ok, 0, "segment still open");
    cancel.cancel();
    let (r, ostats) = bounded(feed).await.unwrap();
    r.expect("cancellation is a clean end");
    let mut n = 1;
    while let Some(f) = bounded(rx.recv()).await {
        f.expect("frame");
        n += 1;
    }
    assert!((2..12).contains(&n), "only the frames that were sent: {n}");
    assert!(ostats.queue_bytes <= seg.len() as u64);
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();
    drop(w);
}

/// An observer that records every report.
fn recorder() -> (SegmentObserver, Arc<Mutex<Vec<SegmentTiming>>>) {
    let seen: Arc<Mutex<Vec<SegmentTiming>>> = Arc::default();
    let s = seen.clone();
    (Arc::new(move |t| s.lock().unwrap().push(t)), seen)
}

#[tokio::test]
async fn each_segment_is_timed_once_on_both_sides_of_the_bridge() {
    let (server, base) = serve().await;
    server.create_channel("t", "video/MP2T");
    let url = format!("{base}/t");

    let events = encode_events(48).await;
    let sizes: Vec<u64> = segments(&events).iter().map(|s| s.len() as u64).collect();
    assert!(sizes.len() >= 3, "keyframe every 0.5 s: {sizes:?}");

    // Subscriber first, so it reads every segment live.
    let (input, output, mut frames) = Output::spawn(out_cfg()).unwrap();
    let drain = tokio::spawn(async move { while frames.recv().await.is_some() {} });
    let (out_obs, out_seen) = recorder();
    let in_stats = StatsHandle::new();
    let cancel = CancellationToken::new();
    let feed = {
        let (s, c) = (in_stats.clone(), cancel.clone());
        let mut sub = sub(&url);
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

/// Two channels `a` and `b` on one trickle server, each an echo (published and read back,
/// no runner), and 48 encoded frames with the indices of their segment starts.
struct Echo {
    server: TrickleServer,
    echo: Box<dyn Fn(&str) -> lpgw_bridge::SessionChannels>,
    evs: Vec<SegmentEvent>,
    starts: Vec<usize>,
}

async fn echo_channels() -> Echo {
    use lpgw_bridge::{ChannelAccess, SessionChannels};
    let (server, base) = serve().await;
    server.create_channel("a", "video/MP2T");
    server.create_channel("b", "video/MP2T");
    let echo = Box::new(move |name: &str| SessionChannels {
        input: Some(format!("{base}/{name}")),
        output: format!("{base}/{name}"),
        access: ChannelAccess::Verified,
    });
    let evs = encode_events(48).await;
    let starts: Vec<usize> = evs
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, SegmentEvent::Start { .. }))
        .map(|(i, _)| i)
        .collect();
    Echo {
        server,
        echo,
        evs,
        starts,
    }
}

#[tokio::test]
async fn a_session_moves_to_new_channels_keeping_its_encoder_and_decoder() {
    use lpgw_bridge::{MediaSession, SessionOptions};
    let Echo {
        server: _server,
        echo,
        evs,
        starts,
    } = echo_channels().await;
    assert!(
        starts.len() >= 4,
        "keyframe every 0.5 s: {} segments",
        starts.len()
    );
    let half = starts[starts.len() / 2];

    let (input, output, mut rx) = Output::spawn(out_cfg()).unwrap();
    let got: Arc<Mutex<Vec<DecodedFrame>>> = Arc::default();
    let collector = tokio::spawn({
        let got = got.clone();
        async move {
            while let Some(f) = rx.recv().await {
                got.lock().unwrap().push(f.expect("frame"));
            }
        }
    });
    let (tx, segments) = mpsc::channel(256);
    let opts = SessionOptions {
        publish: PublishOptions {
            close_at_end: false,
            ..PublishOptions::default()
        },
        output_start: Some(SeqRequest::At(0)),
        ..SessionOptions::default()
    };
    let cancel = CancellationToken::new();
    let mut session =
        MediaSession::start(&echo("a"), segments, input, opts, cancel.clone()).unwrap();
    assert_eq!(session.generation(), 0);
    let (pub_a, feed_a) = session.take_tasks().unwrap();
    for e in &evs[..half] {
        tx.send(e.clone()).await.unwrap();
    }
    // Everything published so far has been read back before the move.
    bounded(async {
        loop {
            let (i, o) = (session.input_stats.get(), session.output_stats.get());
            if o.segments_ok as usize == starts.len() / 2 && o.bytes == i.bytes {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let wait_frames = |n: usize| {
        let got = got.clone();
        bounded(async move {
            while got.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    session.rewire(&echo("b")).unwrap();
    assert_eq!(session.generation(), 1);
    // The old generation stops without an error.
    bounded(pub_a).await.unwrap().expect("old publish ok");
    bounded(feed_a).await.unwrap().expect("old feed ok");
    let (pub_b, feed_b) = session.take_tasks().unwrap();
    assert!(session.take_tasks().is_none(), "tasks are handed out once");
    for e in &evs[half..] {
        tx.send(e.clone()).await.unwrap();
    }
    drop(tx);
    bounded(pub_b).await.unwrap().expect("new publish ok");
    wait_frames(48).await;
    cancel.cancel();
    bounded(feed_b).await.unwrap().expect("new feed ok");
    let s = session.input_stats.get();
    assert_eq!(
        s.segments as usize,
        starts.len(),
        "counted across both: {s:?}"
    );
    assert_eq!(s.segments_ok, s.segments, "{s:?}");
    drop(session);
    bounded(collector).await.unwrap();
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();
    // Every frame once, in order, through one decoder; the second half came over `b`.
    let frames = got.lock().unwrap();
    assert_eq!(frames.len(), 48);
    for (i, f) in frames.iter().enumerate() {
        let yuv = f.yuv.as_ref().expect("yuv requested");
        assert_eq!(read_test_pattern_index(yuv), Some(i as u32), "frame {i}");
    }
}

/// Publishes half of a stream over channel `a`, removes `a` (as a restarting runner that
/// closes its channels does), moves the session to `b` and publishes the rest: returns how
/// many frames the one decoder delivered in all.
async fn frames_across_a_closed_old_output(rewirable: bool) -> usize {
    use lpgw_bridge::{MediaSession, SessionOptions};
    let Echo {
        server,
        echo,
        evs,
        starts,
    } = echo_channels().await;
    let half = starts[starts.len() / 2];
    let (input, output, mut rx) = Output::spawn(out_cfg()).unwrap();
    let got = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let collector = tokio::spawn({
        let got = got.clone();
        async move {
            while let Some(f) = rx.recv().await {
                f.expect("frame");
                got.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let (tx, segments) = mpsc::channel(256);
    let opts = SessionOptions {
        publish: PublishOptions {
            close_at_end: false,
            ..PublishOptions::default()
        },
        output_start: Some(SeqRequest::At(0)),
        rewirable,
        ..SessionOptions::default()
    };
    let cancel = CancellationToken::new();
    let mut session =
        MediaSession::start(&echo("a"), segments, input, opts, cancel.clone()).unwrap();
    let (_, feed_a) = session.take_tasks().unwrap();
    for e in &evs[..half] {
        tx.send(e.clone()).await.unwrap();
    }
    bounded(async {
        while session.output_stats.get().segments_ok as usize != starts.len() / 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    server.delete_channel("a");
    // The old output ends by itself, before any move.
    bounded(feed_a).await.unwrap().expect("old feed ok");
    session.rewire(&echo("b")).unwrap();
    let (pub_b, _feed_b) = session.take_tasks().unwrap();
    for e in &evs[half..] {
        tx.send(e.clone()).await.unwrap();
    }
    drop(tx);
    bounded(pub_b).await.unwrap().expect("new publish ok");
    // Whatever `b` carries is decoded well within this.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cancel.cancel();
    bounded(collector).await.unwrap();
    tokio::task::spawn_blocking(move || output.join())
        .await
        .unwrap()
        .unwrap();
    got.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn a_rewirable_session_keeps_its_decoder_when_the_old_output_ends_first() {
    assert_eq!(frames_across_a_closed_old_output(true).await, 48);
    // Without the option the end of the old output ends the decoder and its frames.
    let plain = frames_across_a_closed_old_output(false).await;
    assert!(plain < 48, "{plain} frames");
}
