//! Streams written by FFmpeg's own MPEG-TS muxer (as a runner would send them): B-frames,
//! an audio track to ignore, and other codecs. Generated with:
//!
//! ```text
//! ffmpeg -f lavfi -i testsrc=size=160x120:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
//!   -t 2 -c:v libx264 -preset veryfast -bf 3 -g 30 -pix_fmt yuv420p -c:a aac -b:a 32k -f mpegts h264_bframes_aac.ts
//! ffmpeg -f lavfi -i testsrc=size=160x120:rate=30 -t 1 -c:v libx265 -f mpegts hevc.ts
//! ffmpeg -f lavfi -i testsrc=size=160x120:rate=30 -t 1 -c:v mpeg2video -f mpegts mpeg2.ts
//! ```

mod common;

use common::*;

fn check(name: &'static str, bytes: &'static [u8], want_frames: usize) {
    bounded(60, move || {
        // Deliver in awkward chunk sizes, as a network would.
        let (frames, stats) = decode(feed_segments(&[bytes.to_vec()], 1317), output_cfg());
        assert_eq!(frames.len(), want_frames, "{name}: {stats:?}");
        assert_eq!(stats.decode_errors, 0, "{name}");
        for f in &frames {
            assert_eq!((f.width, f.height), (160, 120), "{name}");
            assert!(f.yuv.is_some());
        }
        let pts: Vec<i64> = frames.iter().map(|f| f.pts.expect("pts")).collect();
        assert!(
            pts.windows(2).all(|w| w[1] - w[0] == 3000),
            "{name}: {pts:?}"
        );
    });
}

#[test]
fn h264_with_b_frames_and_audio() {
    check("h264", include_bytes!("fixtures/h264_bframes_aac.ts"), 60);
}

#[test]
fn hevc() {
    check("hevc", include_bytes!("fixtures/hevc.ts"), 30);
}

#[test]
fn mpeg2() {
    check("mpeg2", include_bytes!("fixtures/mpeg2.ts"), 30);
}
