//! Helpers shared by the media integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc;
use std::time::Duration;

use lpgw_media::{
    DecodedFrame, InputFrame, InputImage, LagPolicy, Output, OutputConfig, OutputFormat,
    OutputStats, PublishStats, Publisher, PublisherConfig, SegmentEvent, Yuv420Frame,
};

/// Runs `f` on a thread and fails the test if it does not finish within `secs`.
pub fn bounded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(e) => panic!("test body did not finish in {secs}s: {e}"),
    }
}

const BLOCK: u32 = 16;

/// A frame whose top-left row of 8 blocks spells `index` in binary, over a gradient.
pub fn pattern(width: u32, height: u32, index: u32) -> Yuv420Frame {
    let mut f = Yuv420Frame::filled(width, height, 0, 100, 160);
    for y in 0..height {
        for x in 0..width {
            let v = 40 + (x * 2 + y + index * 4) % 150;
            f.y[(y * width + x) as usize] = v as u8;
        }
    }
    for bit in 0..8 {
        let on = (index >> bit) & 1 == 1;
        for y in 0..BLOCK {
            for x in bit * BLOCK..(bit + 1) * BLOCK {
                f.y[(y * width + x) as usize] = if on { 235 } else { 16 };
            }
        }
    }
    f
}

/// Reads the index back from a decoded pattern frame.
pub fn read_index(f: &Yuv420Frame) -> u32 {
    let mut index = 0;
    for bit in 0..8 {
        let mut sum = 0u32;
        // Sample the block's interior to avoid edge ringing.
        for y in 4..BLOCK - 4 {
            for x in bit * BLOCK + 4..(bit + 1) * BLOCK - 4 {
                sum += u32::from(f.y[(y * f.width + x) as usize]);
            }
        }
        if sum / ((BLOCK - 8) * (BLOCK - 8)) > 128 {
            index |= 1 << bit;
        }
    }
    index
}

/// Peak signal-to-noise ratio of the luma planes, in dB.
pub fn psnr_y(a: &Yuv420Frame, b: &Yuv420Frame) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let mse: f64 =
        a.y.iter()
            .zip(&b.y)
            .map(|(p, q)| {
                let d = f64::from(*p) - f64::from(*q);
                d * d
            })
            .sum::<f64>()
            / a.y.len() as f64;
    if mse == 0.0 {
        return 99.0;
    }
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// Publisher settings for tests: nothing dropped, one-second GOPs, cut on every keyframe.
pub fn publish_cfg(frames: usize) -> PublisherConfig {
    let mut cfg = PublisherConfig {
        queue_capacity: frames.max(1),
        min_segment: Duration::ZERO,
        event_capacity: 4096,
        ..Default::default()
    };
    cfg.encoder.keyframe_interval = Duration::from_secs(1);
    cfg
}

/// Encodes `frames` (at 30 fps media time) and returns all segment events and stats.
pub fn encode(frames: Vec<InputImage>, cfg: PublisherConfig) -> (Vec<SegmentEvent>, PublishStats) {
    let (publisher, mut rx) = Publisher::spawn(cfg).expect("spawn publisher");
    for (i, img) in frames.into_iter().enumerate() {
        publisher
            .push(InputFrame::with_pts(img, i as i64 * 3000))
            .expect("push");
    }
    publisher.close();
    let mut events = Vec::new();
    while let Some(ev) = rx.blocking_recv() {
        events.push(ev);
    }
    let stats = publisher.stats();
    publisher.join().expect("publisher join");
    (events, stats)
}

/// Groups events into whole segments' bytes, checking Start/Data/End grammar on the way.
pub fn segments(events: &[SegmentEvent]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut open = false;
    for ev in events {
        match ev {
            SegmentEvent::Start { seq_hint } => {
                assert!(!open, "Start inside an open segment");
                assert_eq!(*seq_hint as usize, out.len(), "seq_hint counts segments");
                out.push(Vec::new());
                open = true;
            }
            SegmentEvent::Data(b) => {
                assert!(open, "Data outside a segment");
                assert_eq!(b.len() % 188, 0, "Data is whole TS packets");
                out.last_mut().expect("open segment").extend_from_slice(b);
            }
            SegmentEvent::End => {
                assert!(open, "End without Start");
                open = false;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(!open, "last segment not ended");
    out
}

/// Output settings for tests: yuv420p out, nothing skipped.
pub fn output_cfg() -> OutputConfig {
    OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: 10_000,
        max_buffered_bytes: 256 * 1024 * 1024,
        frame_capacity: 8,
        format: OutputFormat::Yuv420,
    }
}

/// One input step for the output side.
pub enum Feed {
    Start,
    Data(Vec<u8>),
    End,
}

/// Feeds whole segments, each in `chunk`-byte pieces, and collects every frame.
pub fn feed_segments(segs: &[Vec<u8>], chunk: usize) -> Vec<Feed> {
    let mut feed = Vec::new();
    for s in segs {
        feed.push(Feed::Start);
        for c in s.chunks(chunk.max(1)) {
            feed.push(Feed::Data(c.to_vec()));
        }
        feed.push(Feed::End);
    }
    feed
}

/// Runs an output pipeline over `feed` and returns the frames and stats.
pub fn decode(feed: Vec<Feed>, cfg: OutputConfig) -> (Vec<DecodedFrame>, OutputStats) {
    let (input, output, mut rx) = Output::spawn(cfg).expect("spawn output");
    let reader = std::thread::spawn(move || {
        let mut frames = Vec::new();
        while let Some(f) = rx.blocking_recv() {
            frames.push(f.expect("frame"));
        }
        frames
    });
    let mut seq = 0;
    for f in feed {
        match f {
            Feed::Start => {
                input.start_segment(Some(seq)).expect("start");
                seq += 1;
            }
            Feed::Data(d) => input.push(d.into()).expect("push"),
            Feed::End => input.end_segment().expect("end"),
        }
    }
    input.close();
    let frames = reader.join().expect("reader");
    output.join().expect("output join");
    (frames, input.stats())
}
