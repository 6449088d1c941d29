//! Media pipeline for the gateway: pictures → H.264 → MPEG-TS segments, and segments →
//! decoded pictures (yuv420p and/or JPEG).
//!
//! This crate knows nothing about HTTP or trickle. It produces and consumes segment bytes;
//! the glue that moves them over the network lives elsewhere.
//!
//! # Publish ([`Publisher`])
//!
//! Frames (JPEG, RGB24 or yuv420p, optionally with source timestamps) go into a bounded
//! queue that drops the *oldest* frame when the encoder falls behind. A named thread turns
//! them into YUV planes (JPEG straight to full-range 4:2:0 with libjpeg-turbo, FFmpeg's mjpeg
//! decoder for other JPEGs, swscale only for RGB), encodes H.264 with libx264 (`tune
//! zerolatency`, no B-frames, SPS/PPS on every IDR; defaults `superfast`, CRF 23, IDR every
//! 2 s of media time) and muxes MPEG-TS in pure Rust. Segments are cut at keyframes once a
//! minimum wall-clock length has passed ([`segmenter`]) and stream out as
//! [`SegmentEvent`]`::{Start, Data, End}` on a bounded channel while they are produced.
//! Timestamps come from the source when given, the wall clock otherwise, and never go
//! backwards. There is no audio track: the inputs are pictures only.
//!
//! # Output ([`Output`])
//!
//! Segment bytes go in chunk by chunk through [`SegmentInput`], so decoding starts before a
//! segment is complete. A named thread demuxes the first video stream (H.264, HEVC, MPEG-2,
//! MPEG-4 part 2, AV1 by PMT stream type), decodes it with FFmpeg and delivers
//! [`DecodedFrame`]s with 90 kHz timestamps on a bounded channel; JPEG output is encoded
//! from the decoded planes with libjpeg-turbo (no RGB step). When the consumer falls
//! behind, [`LagPolicy`] skips to the newest segment or fails. Damage costs the frames up to
//! the next keyframe, not the stream.
//!
//! # Sources
//!
//! [`test_pattern`] makes pictures that carry their frame index (read back with
//! [`read_test_pattern_index`], through lossy coding and the devnet effect), for tests, the
//! CLI's `testsrc` and benchmarks; [`FileSource`] decodes a video file with FFmpeg into yuv420p
//! frames with 90 kHz timestamps (blocking, for a thread of its own).
//!
//! # Wiring to trickle (the `lpgw-bridge` crate)
//!
//! Publishing: on `SegmentEvent::Start` open the next trickle segment POST, forward each
//! `Data` chunk into it, and finish the POST on `End`. Subscribing: for each trickle segment
//! call [`SegmentInput::start_segment`] with its sequence number, [`SegmentInput::push`] every
//! body chunk as it arrives, then [`SegmentInput::end_segment`]. Segment ends are assumed to
//! fall on 188-byte packet boundaries, as FFmpeg's segmenter and this crate produce them.
//!
//! Latency: this crate's muxer writes bounded PES lengths, so each frame is decoded as soon as
//! its last byte arrives; streams from FFmpeg's muxer use unbounded video PES, which costs one
//! frame of delay (a unit is complete only when the next one starts).
//!
//! # Threads
//!
//! FFmpeg work runs only on the pipeline's named std threads (`lpgw-media-pub-in`,
//! `lpgw-media-pub`, `lpgw-media-out`, `lpgw-media-out-enc`), joined by bounded channels.
//! Handles are cheap to use from async code: pushing never blocks, and the outgoing channels
//! are tokio `mpsc` receivers.
#![warn(missing_docs)]

mod bench;
mod bench_stages;
mod codec;
mod effect;
mod error;
mod frame;
mod jpeg;
mod output;
mod publish;
mod queue;
pub mod segmenter;
mod source;
mod stats;
mod ts;

pub use bench::{
    BenchOptions, BenchReport, OutputBenchReport, bench_frame, decode_to_jpeg, run_media_bench,
};
pub use bench_stages::{StageCosts, measure_codec_stages};
pub use codec::{EncoderConfig, RateControl};
pub use effect::apply_prompt_effect;
pub use error::MediaError;
pub use frame::{CLOCK_HZ, DecodedFrame, InputFrame, InputImage, Yuv420Frame};
pub use jpeg::{JpegEncoder, decode_jpeg};
pub use output::{LagPolicy, Output, OutputConfig, OutputFormat, OutputStatsReader, SegmentInput};
pub use publish::{Publisher, PublisherConfig, SegmentEvent};
pub use source::{FileSource, read_test_pattern_index, test_pattern};
pub use stats::{OutputStats, PublishStats};
