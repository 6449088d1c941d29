//! A Scope stream's media: frames from the input channel (decoded) or generated (text
//! mode, ~24 fps), each pipeline stage applied in order (copy, BT.601 gray, the
//! prompt-driven effect), encoded and published to every video output channel.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lpgw_bridge::{FeedOptions, PublishOptions, StatsHandle, feed_output, publish_segments};
use lpgw_media::{
    DecodedFrame, InputFrame, InputImage, LagPolicy, MediaError, Output, OutputConfig,
    OutputFormat, Publisher as MediaPublisher, PublisherConfig as MediaPublisherConfig,
    Yuv420Frame, apply_prompt_effect, test_pattern,
};
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::wire::SeqRequest;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pipelines::Kind;
use super::protocol::{MediaSpec, Source};
use crate::runner_effect::{EffectParams, SharedParams};

/// Frames that may wait for an encoder.
const ENCODER_QUEUE: usize = 4;

/// Frame rate of generated (text-mode) video.
const TEXT_FPS: u32 = 24;

/// Applies the stages to one frame, in order.
pub(crate) fn apply(stages: &[Kind], frame: &mut Yuv420Frame, p: &EffectParams) {
    for s in stages {
        match s {
            Kind::Copy => {}
            // Y' of BT.601 is the luma Scope's gray computes; neutral chroma makes it gray.
            Kind::Gray => {
                frame.u.fill(128);
                frame.v.fill(128);
            }
            Kind::Diffusion => apply_prompt_effect(frame, &p.prompt, p.strength),
        }
    }
}

/// The effect parameters of a stream, from its `start_stream` params.
pub(crate) fn initial_params(params: &Value) -> SharedParams {
    let mut p = EffectParams::default();
    p.update(params);
    Arc::new(Mutex::new(p))
}

fn params_of(p: &SharedParams) -> EffectParams {
    p.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Starts the media of `spec` on `tracker`; it runs until `cancel` or its input ends.
pub(crate) fn spawn(
    tracker: &TaskTracker,
    spec: MediaSpec,
    params: SharedParams,
    cancel: CancellationToken,
) {
    let Some(source) = spec.source.clone() else {
        return;
    };
    let mut encoders = Vec::new();
    for url in &spec.outputs {
        let publisher = match Publisher::new(url, lpgw_bridge::MPEG_TS, PublisherConfig::default())
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "scope output unavailable");
                continue;
            }
        };
        let cfg = MediaPublisherConfig {
            encoder: crate::runner_effect::runner_encoder(),
            queue_capacity: ENCODER_QUEUE,
            min_segment: Duration::ZERO,
            event_capacity: 64,
        };
        let (encoder, events) = match MediaPublisher::spawn(cfg) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "scope cannot start an encoder");
                continue;
            }
        };
        encoders.push(encoder);
        let c = cancel.clone();
        tracker.spawn(async move {
            let mut publisher = publisher;
            let r = publish_segments(
                events,
                &mut publisher,
                PublishOptions::default(),
                StatsHandle::new(),
                c,
            )
            .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "scope output ended");
            }
        });
    }
    if encoders.is_empty() {
        return;
    }
    let stages = spec.stages.clone();
    match source {
        Source::Synthetic { width, height } => {
            let c = cancel.clone();
            let spawned = std::thread::Builder::new()
                .name("lpgw-devnet-scope-gen".into())
                .spawn(move || generate(width, height, &stages, &params, encoders, &c));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "scope cannot start the generator");
            }
        }
        Source::Input(url) => {
            tracker.spawn(decode(url, stages, params, encoders, cancel));
        }
    }
}

/// Waits (bounded) for room in every encoder, then pushes `frame` to each.
fn push(encoders: &[MediaPublisher], frame: InputFrame) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while encoders
        .iter()
        .any(|e| e.stats().queue_depth + 1 >= ENCODER_QUEUE as u64)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut ok = false;
    for e in encoders {
        ok |= e.push(frame.clone()).is_ok();
    }
    ok
}

fn close(encoders: Vec<MediaPublisher>) {
    for e in &encoders {
        e.close();
    }
}

/// Text mode: generated pictures at [`TEXT_FPS`] until cancelled (its own thread).
fn generate(
    width: u32,
    height: u32,
    stages: &[Kind],
    params: &SharedParams,
    encoders: Vec<MediaPublisher>,
    cancel: &CancellationToken,
) {
    let start = Instant::now();
    let tick = 90_000 / i64::from(TEXT_FPS);
    for i in 0u32.. {
        if cancel.is_cancelled() {
            break;
        }
        let mut frame = test_pattern(width, height, i);
        apply(stages, &mut frame, &params_of(params));
        let input = InputFrame::with_pts(InputImage::Yuv420(frame), i64::from(i) * tick);
        if !push(&encoders, input) {
            break;
        }
        let due = start + Duration::from_secs(u64::from(i) + 1) / TEXT_FPS;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    close(encoders);
}

/// Video mode: decode the input channel, apply the stages, encode.
async fn decode(
    url: String,
    stages: Vec<Kind>,
    params: SharedParams,
    encoders: Vec<MediaPublisher>,
    cancel: CancellationToken,
) {
    let sub_cfg = SubscriberConfig {
        start: SeqRequest::At(0),
        ..SubscriberConfig::default()
    };
    let mut sub = match Subscriber::new(&url, sub_cfg) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "scope cannot open its input");
            close(encoders);
            return;
        }
    };
    let out_cfg = OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: 2,
        max_buffered_bytes: 16 << 20,
        frame_capacity: 4,
        format: OutputFormat::Yuv420,
    };
    let (input, output, frames) = match Output::spawn(out_cfg) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "scope cannot start the decoder");
            close(encoders);
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("lpgw-devnet-scope-fx".into())
        .spawn(move || effect_loop(frames, &stages, &params, encoders));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "scope cannot start the effect thread");
        return;
    }
    if let Err(e) = feed_output(
        &mut sub,
        &input,
        FeedOptions::default(),
        StatsHandle::new(),
        cancel,
    )
    .await
    {
        tracing::debug!(error = %e, "scope input ended");
    }
    input.close();
    // The decoder ends once its input is closed and the frames are drained.
    drop(output);
}

fn effect_loop(
    mut frames: mpsc::Receiver<Result<DecodedFrame, MediaError>>,
    stages: &[Kind],
    params: &SharedParams,
    encoders: Vec<MediaPublisher>,
) {
    while let Some(item) = frames.blocking_recv() {
        let Ok(frame) = item else {
            break;
        };
        let Some(mut yuv) = frame.yuv else {
            continue;
        };
        apply(stages, &mut yuv, &params_of(params));
        let input = match frame.pts {
            Some(pts) => InputFrame::with_pts(InputImage::Yuv420(yuv), pts),
            None => InputFrame::new(InputImage::Yuv420(yuv)),
        };
        if !push(&encoders, input) {
            break;
        }
    }
    close(encoders);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_keeps_luma_and_neutralizes_chroma() {
        let mut f = Yuv420Frame::filled(4, 2, 81, 90, 240);
        apply(&[Kind::Gray], &mut f, &EffectParams::default());
        assert_eq!((f.width, f.height), (4, 2));
        assert!(f.y.iter().all(|&y| y == 81));
        assert!(f.u.iter().chain(&f.v).all(|&c| c == 128));
        let before = Yuv420Frame::filled(4, 2, 50, 60, 70);
        let mut f = before.clone();
        apply(&[Kind::Copy], &mut f, &EffectParams::default());
        assert_eq!(f, before);
    }

    #[test]
    fn initial_params_take_scope_prompts() {
        let p = initial_params(&serde_json::json!({"prompts": [{"text": "sky", "weight": 1}]}));
        assert_eq!(params_of(&p).prompt, "sky");
    }
}
