//! Pattern frames → H.264/MPEG-TS segments → decoded frames.

mod common;

use common::*;
use lpgw_media::{InputImage, JpegEncoder, OutputFormat, decode_jpeg};

#[test]
fn yuv_pattern_roundtrip_keeps_count_order_and_content() {
    bounded(120, || {
        let (w, h) = (192, 128);
        let n = 75; // 2.5 s at 30 fps: three one-second GOPs
        let src: Vec<_> = (0..n).map(|i| pattern(w, h, i)).collect();
        let imgs = src.iter().cloned().map(InputImage::Yuv420).collect();
        let (events, pstats) = encode(imgs, publish_cfg(n as usize));
        let segs = segments(&events);
        assert_eq!(pstats.frames_encoded, u64::from(n));
        assert_eq!(pstats.dropped_queue_full, 0);
        assert_eq!(segs.len(), 3, "one segment per forced keyframe");
        assert_eq!(pstats.segments, 3);
        assert_eq!(
            pstats.bytes_out,
            segs.iter().map(|s| s.len() as u64).sum::<u64>()
        );

        // Feed in odd-sized chunks so packets straddle chunk boundaries.
        let (frames, ostats) = decode(feed_segments(&segs, 1000), output_cfg());
        assert_eq!(frames.len(), n as usize);
        assert_eq!(ostats.frames_out, u64::from(n));
        assert_eq!(ostats.decode_errors, 0);
        assert_eq!(ostats.ts_cc_errors, 0);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.pts, Some(i as i64 * 3000), "frame {i} timestamp");
            let yuv = f.yuv.as_ref().expect("yuv requested");
            assert_eq!((yuv.width, yuv.height), (w, h));
            assert_eq!(read_index(yuv), i as u32, "frame {i} content");
            let psnr = psnr_y(yuv, &src[i]);
            assert!(psnr > 30.0, "frame {i} psnr {psnr:.1} dB");
            assert!(f.jpeg.is_none());
        }
        let seqs: Vec<_> = frames.iter().map(|f| f.segment_seq).collect();
        assert_eq!(seqs.first(), Some(&Some(0)));
        assert_eq!(seqs.last(), Some(&Some(2)));
    });
}

#[test]
fn jpeg_in_jpeg_out() {
    bounded(120, || {
        let (w, h) = (160, 96);
        let n = 20;
        let mut enc = JpegEncoder::new(90);
        let src: Vec<_> = (0..n).map(|i| pattern(w, h, i)).collect();
        let imgs = src
            .iter()
            .map(|f| InputImage::Jpeg(enc.encode(f).expect("jpeg encode")))
            .collect();
        let (events, pstats) = encode(imgs, publish_cfg(n as usize));
        assert_eq!(pstats.dropped_invalid, 0);
        let segs = segments(&events);
        let mut cfg = output_cfg();
        cfg.format = OutputFormat::Jpeg { quality: 85 };
        let (frames, _) = decode(feed_segments(&segs, 4096), cfg);
        assert_eq!(frames.len(), n as usize);
        for (i, f) in frames.iter().enumerate() {
            let jpeg = f.jpeg.as_ref().expect("jpeg requested");
            assert!(jpeg.starts_with(&[0xFF, 0xD8]), "JPEG SOI marker");
            let back = decode_jpeg(jpeg).expect("decode output jpeg");
            assert_eq!((back.width, back.height), (w, h));
            assert_eq!(read_index(&back), i as u32);
            let psnr = psnr_y(&back, &src[i]);
            assert!(psnr > 28.0, "frame {i} psnr {psnr:.1} dB");
        }
    });
}

#[test]
fn rgb_input_is_converted() {
    bounded(60, || {
        let (w, h) = (64u32, 48u32);
        // Pure red: after BT.601 limited-range conversion Cr must be high and Cb low.
        let rgb: Vec<u8> = (0..w * h).flat_map(|_| [255u8, 0, 0]).collect();
        let imgs = vec![
            InputImage::Rgb24 {
                width: w,
                height: h,
                data: rgb.into(),
            };
            3
        ];
        let (events, _) = encode(imgs, publish_cfg(3));
        let (frames, _) = decode(feed_segments(&segments(&events), 188), output_cfg());
        assert_eq!(frames.len(), 3);
        let yuv = frames[0].yuv.as_ref().expect("yuv");
        let mid = yuv.u.len() / 2;
        assert!(yuv.v[mid] > 200, "Cr {}", yuv.v[mid]);
        assert!(yuv.u[mid] < 110, "Cb {}", yuv.u[mid]);
    });
}

#[test]
fn jpeg_encoder_quality_changes_size() {
    let f = pattern(128, 128, 5);
    let small = JpegEncoder::new(10).encode(&f).expect("q10");
    let large = JpegEncoder::new(95).encode(&f).expect("q95");
    assert!(
        small.len() < large.len(),
        "{} vs {}",
        small.len(),
        large.len()
    );
    let back = decode_jpeg(&large).expect("decode");
    assert!(psnr_y(&back, &f) > 35.0);
}

#[test]
fn frames_come_out_before_the_segment_ends() {
    use lpgw_media::{Output, SegmentEvent};
    use std::time::Duration;
    bounded(60, || {
        let imgs = (0..10)
            .map(|i| InputImage::Yuv420(pattern(128, 96, i)))
            .collect();
        let (events, _) = encode(imgs, publish_cfg(10));
        let (input, output, mut rx) = Output::spawn(output_cfg()).expect("spawn");
        // Feed the segment start and only its first three access units; no End, no close.
        let mut fed = 0;
        for ev in &events {
            if matches!(ev, SegmentEvent::Data(_)) {
                fed += 1;
            }
            input.send(ev.clone()).expect("send");
            if fed == 3 {
                break;
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < 3 && std::time::Instant::now() < deadline {
            match rx.try_recv() {
                Ok(f) => got.push(f.expect("frame")),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        // Zero-latency stream: every access unit fed so far is already a frame.
        assert_eq!(got.len(), 3);
        assert_eq!(read_index(got[2].yuv.as_ref().expect("yuv")), 2);
        input.close();
        while rx.blocking_recv().is_some() {}
        output.join().expect("join");
    });
}

#[test]
fn bitrate_mode_and_crf_mode_both_encode() {
    use lpgw_media::RateControl;
    bounded(120, || {
        let frames = |n| {
            (0..n)
                .map(|i| InputImage::Yuv420(pattern(192, 128, i)))
                .collect()
        };
        let mut low = publish_cfg(30);
        low.encoder.rate = RateControl::Bitrate(50_000);
        low.encoder.preset = "ultrafast".into();
        let mut high = publish_cfg(30);
        high.encoder.rate = RateControl::Crf(5.0);
        let (_, low_stats) = encode(frames(30), low);
        let (events, high_stats) = encode(frames(30), high);
        assert_eq!(low_stats.frames_encoded, 30);
        assert_eq!(high_stats.frames_encoded, 30);
        assert!(
            low_stats.bytes_out < high_stats.bytes_out,
            "{} vs {}",
            low_stats.bytes_out,
            high_stats.bytes_out
        );
        let (decoded, _) = decode(feed_segments(&segments(&events), 4096), output_cfg());
        assert_eq!(decoded.len(), 30);
    });
}
