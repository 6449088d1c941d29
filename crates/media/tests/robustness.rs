//! Damaged input, resolution changes, stalled producers and slow consumers.

mod common;

use std::time::Duration;

use common::*;
use lpgw_media::{
    InputFrame, InputImage, LagPolicy, MediaError, Output, OutputFormat, Publisher,
    PublisherConfig, SegmentEvent,
};

/// Three one-second segments of 30 frames each at 128x96.
fn three_segments() -> Vec<Vec<u8>> {
    let imgs = (0..90)
        .map(|i| InputImage::Yuv420(pattern(128, 96, i)))
        .collect();
    let (events, _) = encode(imgs, publish_cfg(90));
    let segs = segments(&events);
    assert_eq!(segs.len(), 3);
    segs
}

fn indices(frames: &[lpgw_media::DecodedFrame]) -> Vec<u32> {
    frames
        .iter()
        .map(|f| read_index(f.yuv.as_ref().expect("yuv")))
        .collect()
}

#[test]
fn truncated_segment_costs_only_its_tail() {
    bounded(120, || {
        let mut segs = three_segments();
        let half = (segs[1].len() / 2 / 188) * 188 + 77; // also leaves a partial TS packet
        segs[1].truncate(half);
        let (frames, stats) = decode(feed_segments(&segs, 500), output_cfg());
        let idx = indices(&frames);
        assert!(
            idx.len() < 90 && idx.len() >= 60,
            "got {} frames",
            idx.len()
        );
        // Segments 0 and 2 arrive whole.
        assert_eq!(&idx[..30], &(0..30).collect::<Vec<_>>()[..]);
        assert_eq!(&idx[idx.len() - 30..], &(60..90).collect::<Vec<_>>()[..]);
        assert!(stats.ts_skipped_bytes > 0);
        let pts: Vec<_> = frames.iter().map(|f| f.pts.expect("pts")).collect();
        assert!(pts.windows(2).all(|w| w[0] < w[1]), "monotonic pts");
    });
}

#[test]
fn garbage_segment_and_garbage_inside_segment() {
    bounded(120, || {
        let mut segs = three_segments();
        let garbage: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        // Corrupt the middle of segment 1 in place and add a pure-garbage segment.
        let mid = segs[1].len() / 2;
        segs[1][mid..mid + 3000].copy_from_slice(&garbage[..3000]);
        segs.insert(2, garbage);
        let (frames, stats) = decode(feed_segments(&segs, 4096), output_cfg());
        let idx = indices(&frames);
        assert!(
            idx.len() >= 60 && idx.len() < 90,
            "got {} frames",
            idx.len()
        );
        assert_eq!(&idx[..30], &(0..30).collect::<Vec<_>>()[..]);
        // The last segment starts with a keyframe, so it decodes completely.
        assert_eq!(&idx[idx.len() - 30..], &(60..90).collect::<Vec<_>>()[..]);
        assert!(stats.dropped_corrupt + stats.dropped_waiting_keyframe + stats.decode_errors > 0);
    });
}

#[test]
fn only_garbage_produces_no_frames_and_no_panic() {
    bounded(60, || {
        let feed = vec![
            Feed::Start,
            Feed::Data(vec![0x47; 10_000]),
            Feed::Data((0..=255u8).cycle().take(20_000).collect()),
            Feed::End,
            Feed::Start,
            Feed::End,
            Feed::Start,
            Feed::Data(vec![]),
        ];
        let (frames, stats) = decode(feed, output_cfg());
        assert!(frames.is_empty());
        assert_eq!(stats.segments_in, 3);
    });
}

#[test]
fn resolution_change_mid_stream() {
    bounded(120, || {
        let mut imgs: Vec<_> = (0..20)
            .map(|i| InputImage::Yuv420(pattern(160, 120, i)))
            .collect();
        imgs.extend((20..40).map(|i| InputImage::Yuv420(pattern(144, 64, i))));
        let (events, pstats) = encode(imgs, publish_cfg(40));
        assert_eq!(pstats.encoder_restarts, 1);
        let segs = segments(&events);
        assert!(segs.len() >= 2);
        let (frames, stats) = decode(feed_segments(&segs, 2048), output_cfg());
        assert_eq!(frames.len(), 40);
        assert_eq!(stats.decode_errors, 0);
        for (i, f) in frames.iter().enumerate() {
            let want = if i < 20 { (160, 120) } else { (144, 64) };
            assert_eq!((f.width, f.height), want, "frame {i}");
        }
        assert_eq!(indices(&frames), (0..40).collect::<Vec<_>>());
        // Also with JPEG output, which must re-create its encoder.
        let mut cfg = output_cfg();
        cfg.format = OutputFormat::Both { quality: 70 };
        let (frames, _) = decode(feed_segments(&segs, 2048), cfg);
        assert_eq!(frames.len(), 40);
        let last = lpgw_media::decode_jpeg(frames[39].jpeg.as_ref().expect("jpeg")).expect("jpeg");
        assert_eq!((last.width, last.height), (144, 64));
    });
}

#[test]
fn invalid_inputs_are_dropped_and_counted() {
    bounded(60, || {
        let mut imgs = vec![
            InputImage::Jpeg(b"not a jpeg".to_vec().into()),
            InputImage::Rgb24 {
                width: 10,
                height: 10,
                data: vec![0; 5].into(),
            },
        ];
        imgs.extend((0..5).map(|i| InputImage::Yuv420(pattern(128, 96, i))));
        let (events, stats) = encode(imgs, publish_cfg(8));
        assert_eq!(stats.dropped_invalid, 2);
        assert_eq!(stats.frames_encoded, 5);
        assert_eq!(segments(&events).len(), 1);
    });
}

#[test]
fn stalled_segment_consumer_bounds_the_input_queue() {
    bounded(120, || {
        let cfg = PublisherConfig {
            queue_capacity: 4,
            event_capacity: 2,
            ..publish_cfg(4)
        };
        let (publisher, mut rx) = Publisher::spawn(cfg).expect("spawn");
        // Nobody reads `rx` while 200 frames arrive: the worker blocks on the event
        // channel and the input queue must drop the oldest frames instead of growing.
        for i in 0..200 {
            publisher
                .push(InputFrame::new(InputImage::Yuv420(pattern(128, 96, i))))
                .expect("push");
        }
        let s = publisher.stats();
        assert!(s.queue_high_water <= 4, "high water {}", s.queue_high_water);
        assert!(
            s.dropped_queue_full >= 150,
            "dropped {}",
            s.dropped_queue_full
        );
        assert_eq!(s.frames_in, 200);
        publisher.close();
        let mut n = 0;
        while rx.blocking_recv().is_some() {
            n += 1;
        }
        let s = publisher.stats();
        assert!(n > 0);
        assert_eq!(s.frames_in, s.frames_encoded + s.dropped_queue_full);
        publisher.join().expect("join");
    });
}

#[test]
fn stalled_producer_then_resume_uses_increasing_wall_clock() {
    bounded(60, || {
        let (publisher, mut rx) = Publisher::spawn(publish_cfg(4)).expect("spawn");
        publisher
            .push(InputFrame::new(InputImage::Yuv420(pattern(64, 48, 0))))
            .expect("push");
        // The producer stalls; the worker must idle without emitting or dying.
        std::thread::sleep(Duration::from_millis(700));
        publisher
            .push(InputFrame::new(InputImage::Yuv420(pattern(64, 48, 1))))
            .expect("push");
        publisher.close();
        let mut events = Vec::new();
        while let Some(ev) = rx.blocking_recv() {
            events.push(ev);
        }
        publisher.join().expect("join");
        let segs = segments(&events);
        let (frames, _) = decode(feed_segments(&segs, 188), output_cfg());
        assert_eq!(frames.len(), 2);
        let (a, b) = (frames[0].pts.expect("pts"), frames[1].pts.expect("pts"));
        // Wall-clock timestamps: the gap reflects the stall (at least 0.5 s of 90 kHz).
        assert!(b - a >= 45_000, "gap {}", b - a);
    });
}

#[test]
fn slow_frame_consumer_skips_to_newest_segment() {
    bounded(120, || {
        let imgs = (0..150)
            .map(|i| InputImage::Yuv420(pattern(128, 96, i)))
            .collect();
        let (events, _) = encode(imgs, publish_cfg(150));
        let segs = segments(&events);
        assert_eq!(segs.len(), 5);
        let mut cfg = output_cfg();
        cfg.max_pending_segments = 1;
        cfg.frame_capacity = 1;
        let (input, output, mut rx) = Output::spawn(cfg).expect("spawn");
        // Nobody reads frames while every segment arrives.
        for (i, s) in segs.iter().enumerate() {
            input.start_segment(Some(i as u64)).expect("start");
            input.push(s.clone().into()).expect("push");
            input.end_segment().expect("end");
            let st = input.stats();
            assert!(st.queue_segments <= 1, "queued {}", st.queue_segments);
        }
        input.close();
        let mut frames = Vec::new();
        while let Some(f) = rx.blocking_recv() {
            frames.push(f.expect("frame"));
        }
        output.join().expect("join");
        let st = input.stats();
        assert!(st.segments_skipped >= 2, "skipped {}", st.segments_skipped);
        assert!(frames.len() < 150);
        // The newest segment is always delivered in full.
        let idx = indices(&frames);
        assert_eq!(&idx[idx.len() - 30..], &(120..150).collect::<Vec<_>>()[..]);
        assert!(frames.iter().all(|f| f.segment_seq.is_some()));
    });
}

#[test]
fn fail_policy_reports_lagging() {
    bounded(60, || {
        let mut cfg = output_cfg();
        cfg.lag = LagPolicy::Fail;
        cfg.max_pending_segments = 2;
        cfg.frame_capacity = 1;
        let segs = three_segments();
        let (input, output, mut rx) = Output::spawn(cfg).expect("spawn");
        // Nobody reads frames, so the worker blocks and segments pile up.
        let mut result = Ok(());
        for i in 0..12 {
            result = input
                .start_segment(Some(i))
                .and_then(|()| input.push(segs[i as usize % 3].clone().into()))
                .and_then(|()| input.end_segment());
            if result.is_err() {
                break;
            }
        }
        assert!(
            matches!(result, Err(MediaError::Lagging { .. })),
            "{result:?}"
        );
        assert!(matches!(
            input.push(vec![0x47].into()),
            Err(MediaError::Lagging { .. })
        ));
        let mut last = None;
        while let Some(item) = rx.blocking_recv() {
            last = Some(item);
        }
        assert!(
            matches!(last, Some(Err(MediaError::Lagging { .. }))),
            "{last:?}"
        );
        assert!(matches!(output.join(), Err(MediaError::Lagging { .. })));
    });
}

#[test]
fn byte_bound_drops_data_until_next_segment() {
    bounded(60, || {
        let segs = three_segments();
        let mut cfg = output_cfg();
        cfg.max_buffered_bytes = 4096;
        let (input, output, mut rx) = Output::spawn(cfg).expect("spawn");
        for (i, s) in segs.iter().enumerate() {
            input.start_segment(Some(i as u64)).expect("start");
            for c in s.chunks(1024) {
                input.push(c.to_vec().into()).expect("push");
                assert!(input.stats().queue_bytes <= 4096);
            }
            input.end_segment().expect("end");
        }
        input.close();
        let mut n = 0;
        while let Some(f) = rx.blocking_recv() {
            f.expect("frame");
            n += 1;
        }
        output.join().expect("join");
        assert!(n <= 90);
    });
}

#[test]
fn dropping_receivers_stops_workers() {
    bounded(60, || {
        let (publisher, rx) = Publisher::spawn(publish_cfg(4)).expect("spawn");
        drop(rx);
        for i in 0..3 {
            let _ = publisher.push(InputFrame::new(InputImage::Yuv420(pattern(64, 48, i))));
        }
        publisher.join().expect("publisher stops cleanly");

        let (input, output, rx) = Output::spawn(output_cfg()).expect("spawn");
        drop(rx);
        let segs = three_segments();
        for s in &segs {
            let _ = input.send(SegmentEvent::Start { seq_hint: 0 });
            let _ = input.send(SegmentEvent::Data(s.clone().into()));
            let _ = input.send(SegmentEvent::End);
        }
        drop(input);
        output.join().expect("output stops cleanly");
    });
}
