//! The four codec stages of a round trip, each measured alone: one thread, one stage at a
//! time, no queues, no muxing, no network. Their sum is what a JPEG → trickle → JPEG round
//! trip cannot avoid paying, so a pipeline's own overhead is its CPU per frame against it.

use std::time::Duration;

use crate::bench::{BenchOptions, bench_inputs};
use crate::codec::{EncoderConfig, H264Encoder, VideoDecoder};
use crate::error::MediaError;
use crate::frame::CLOCK_HZ;
use crate::jpeg::{JpegDecoder, JpegEncoder};
use crate::segmenter::KeyframeClock;

/// CPU milliseconds per frame of each codec stage measured alone.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct StageCosts {
    /// Frames run through every stage.
    pub frames: usize,
    /// JPEG → YUV with FFmpeg's mjpeg decoder (no conversion: the pictures stay full range).
    pub jpeg_decode_ms: f64,
    /// libx264 with the configured settings, forced IDRs at the configured media interval.
    pub h264_encode_ms: f64,
    /// H.264 → YUV with FFmpeg's decoder.
    pub h264_decode_ms: f64,
    /// YUV → JPEG with FFmpeg's mjpeg encoder.
    pub jpeg_encode_ms: f64,
}

impl StageCosts {
    /// The four stages added up.
    pub fn total_ms(&self) -> f64 {
        self.jpeg_decode_ms + self.h264_encode_ms + self.h264_decode_ms + self.jpeg_encode_ms
    }
}

impl std::fmt::Display for StageCosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "codec stages alone, CPU per frame over {} frames: jpeg decode {:.2} ms, h264 encode \
             {:.2} ms, h264 decode {:.2} ms, jpeg encode {:.2} ms; sum {:.2} ms",
            self.frames,
            self.jpeg_decode_ms,
            self.h264_encode_ms,
            self.h264_decode_ms,
            self.jpeg_encode_ms,
            self.total_ms()
        )
    }
}

/// Runs `opts.frames` pictures (the given JPEGs, or generated ones) through the four stages on
/// the calling thread and adds up each stage's thread CPU time. Blocking.
pub fn measure_codec_stages(opts: &BenchOptions) -> Result<StageCosts, MediaError> {
    let inputs = bench_inputs(opts)?;
    let n = inputs.len();
    let Some(first) = inputs.first() else {
        return Ok(StageCosts::default());
    };
    let mut jpeg_dec = JpegDecoder::new()?;
    let probe = jpeg_dec.decode(first)?;
    let cfg = EncoderConfig {
        fps: opts.fps,
        ..opts.encoder.clone()
    };
    let mut encoder = H264Encoder::new(&cfg, probe.width(), probe.height(), probe.format())?;
    let mut video = VideoDecoder::new(ffmpeg_next::codec::Id::H264)?;
    let mut jpeg_enc = JpegEncoder::new(opts.jpeg_quality);
    let mut keys = KeyframeClock::new(opts.encoder.keyframe_interval);
    let tick = CLOCK_HZ / i64::from(opts.fps.max(1));
    let mut spent = [Duration::ZERO; 4];
    // Each stage runs over every picture before the next stage starts, so its working set
    // stays in cache as it would on a pipeline thread of its own; only the stage's calls are
    // timed, on this thread's CPU clock. Pictures are dropped as soon as a pass is done
    // with them, so no pass pays for memory piling up.
    let timed = |slot: &mut Duration, f: &mut dyn FnMut() -> Result<(), MediaError>| {
        let t0 = crate::stats::thread_cpu();
        let r = f();
        *slot += crate::stats::thread_cpu() - t0;
        r
    };
    for j in &inputs {
        timed(&mut spent[0], &mut || jpeg_dec.decode(j).map(drop))?;
    }
    let mut packets = Vec::with_capacity(n);
    for (i, j) in inputs.iter().enumerate() {
        let mut pic = jpeg_dec.decode(j)?;
        let pts = i as i64 * tick;
        let force = keys.should_force(pts);
        timed(&mut spent[1], &mut || {
            encoder.send(&mut pic, pts, force)?;
            while let Some(p) = encoder.receive() {
                packets.push(p);
            }
            Ok(())
        })?;
    }
    let mut out = 0usize;
    for p in &packets {
        timed(&mut spent[2], &mut || {
            video.send(&p.data, Some(p.pts))?;
            while video.receive().is_some() {
                out += 1;
            }
            Ok(())
        })?;
    }
    let mut video = VideoDecoder::new(ffmpeg_next::codec::Id::H264)?;
    for p in &packets {
        video.send(&p.data, Some(p.pts))?;
        while let Some(f) = video.receive() {
            timed(&mut spent[3], &mut || jpeg_enc.encode_ffmpeg(&f).map(drop))?;
        }
    }
    // Zero-latency coding: every picture comes out as soon as it goes in.
    if out != n {
        return Err(MediaError::NoPicture);
    }
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    Ok(StageCosts {
        frames: n,
        jpeg_decode_ms: per(spent[0]),
        h264_encode_ms: per(spent[1]),
        h264_decode_ms: per(spent[2]),
        jpeg_encode_ms: per(spent[3]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_runs_over_every_frame() {
        let opts = BenchOptions {
            width: 64,
            height: 64,
            frames: 12,
            ..BenchOptions::default()
        };
        let c = measure_codec_stages(&opts).expect("stages");
        assert_eq!(c.frames, 12);
        // Every stage did timed work (the thread clock counts nanoseconds).
        let stages = [
            c.jpeg_decode_ms,
            c.h264_encode_ms,
            c.h264_decode_ms,
            c.jpeg_encode_ms,
        ];
        assert!(stages.iter().all(|v| v.is_finite() && *v > 0.0), "{c:?}");
        assert!((c.total_ms() - stages.iter().sum::<f64>()).abs() < 1e-9);
    }
}
