//! The built-in runner's video effect: decode the input channel, apply a prompt-driven effect
//! ([`lpgw_media::apply_prompt_effect`]) to every frame, re-encode and publish the output
//! channel. It stands in for an AI model: cheap (libx264 `ultrafast`, one thread per
//! stream), deterministic, and visibly driven by the `prompt` and `strength` parameters.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lpgw_bridge::{FeedOptions, PublishOptions, StatsHandle, feed_output, publish_segments};
use lpgw_media::{
    EncoderConfig, InputFrame, InputImage, LagPolicy, Output, OutputConfig, OutputFormat,
    Publisher as MediaPublisher, PublisherConfig as MediaPublisherConfig, RateControl,
    apply_prompt_effect,
};
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::wire::SeqRequest;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::runner_status::{RunnerSpec, Shared, lock, unix_secs};

/// Frames that may wait for the runner's encoder.
const ENCODER_QUEUE: usize = 4;

/// Effect strength when the parameters give none.
const DEFAULT_STRENGTH: f32 = 0.8;

/// The effect's inputs, updated from the job's parameters and control messages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EffectParams {
    pub(crate) prompt: String,
    pub(crate) strength: f32,
}

impl Default for EffectParams {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            strength: DEFAULT_STRENGTH,
        }
    }
}

impl EffectParams {
    /// Applies one parameters document: either the LV2V params object itself
    /// (`{"prompt": …, "strength": …}`) or Scope's `{"type":"parameters","params":{…}}`.
    /// Unknown fields and other message types are ignored. Returns whether anything changed.
    pub(crate) fn update(&mut self, msg: &Value) -> bool {
        let params = match msg.get("type").and_then(Value::as_str) {
            Some("parameters") => msg.get("params").unwrap_or(&Value::Null),
            Some(_) => return false,
            None => msg,
        };
        let before = self.clone();
        if let Some(p) = params.get("prompt").and_then(prompt_text) {
            self.prompt = p;
        } else if let Some(p) = params.get("prompts").and_then(prompt_text) {
            self.prompt = p;
        }
        if let Some(s) = params.get("strength").and_then(number) {
            self.strength = if s.is_finite() {
                s.clamp(0.0, 1.0) as f32
            } else {
                0.0
            };
        }
        *self != before
    }
}

/// A number, or a string holding one.
fn number(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Prompt text from the shapes runners accept: a string, a list of strings, a list of
/// `[text, weight]` pairs, or a list of `{"text": …}` objects (Scope). Parts are joined with
/// `" | "`.
fn prompt_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let parts: Vec<&str> = items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.as_str()),
                    Value::Array(pair) => pair.first().and_then(Value::as_str),
                    Value::Object(o) => o.get("text").and_then(Value::as_str),
                    _ => None,
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join(" | "))
        }
        _ => None,
    }
}

/// Shared, lock-protected effect parameters.
pub(crate) type SharedParams = Arc<Mutex<EffectParams>>;

fn params_lock(p: &SharedParams) -> MutexGuard<'_, EffectParams> {
    // Two plain fields, each written in one statement.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// The encoder the runner publishes with: cheap enough for several streams on two cores.
pub(crate) fn runner_encoder() -> EncoderConfig {
    EncoderConfig {
        preset: "ultrafast".into(),
        rate: RateControl::Crf(23.0),
        fps: 30,
        keyframe_interval: Duration::from_secs(2),
        threads: 1,
    }
}

/// Runs the effect until the input channel ends (then flushes and closes the output) or
/// `cancel` fires. Each input segment is announced on `on_segment` as it starts.
pub(crate) async fn process(
    spec: &RunnerSpec,
    status: Shared,
    params: SharedParams,
    on_segment: mpsc::Sender<()>,
    cancel: CancellationToken,
) {
    let sub_cfg = SubscriberConfig {
        start: SeqRequest::At(0),
        ..SubscriberConfig::default()
    };
    let (mut sub, mut publ) = match (
        Subscriber::new(&spec.input, sub_cfg),
        Publisher::new(
            &spec.output,
            lpgw_bridge::MPEG_TS,
            PublisherConfig::default(),
        ),
    ) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "runner cannot open channels");
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
    let pub_cfg = MediaPublisherConfig {
        encoder: runner_encoder(),
        queue_capacity: ENCODER_QUEUE,
        min_segment: Duration::ZERO,
        event_capacity: 64,
    };
    let (input, output, frames) = match Output::spawn(out_cfg) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "runner cannot start the decoder");
            return;
        }
    };
    let (encoder, events) = match MediaPublisher::spawn(pub_cfg) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "runner cannot start the encoder");
            return;
        }
    };
    let effect = {
        let (status, params) = (status.clone(), params.clone());
        std::thread::Builder::new()
            .name("lpgw-devnet-effect".into())
            .spawn(move || effect_loop(frames, encoder, &status, &params))
    };
    if let Err(e) = effect {
        tracing::warn!(error = %e, "runner cannot start the effect thread");
        return;
    }

    // Input segments: count them for the status events and the payment meter.
    let (seg_tx, mut seg_rx) = mpsc::channel::<u64>(8);
    let count = {
        let status = status.clone();
        async move {
            while seg_rx.recv().await.is_some() {
                let _ = on_segment.try_send(());
                let mut s = lock(&status);
                s.segments_in += 1;
                s.last_input_time = Some(unix_secs());
                if s.state != "ONLINE" {
                    s.state = "ONLINE";
                    s.last_state_update_time = unix_secs();
                }
            }
        }
    };
    let feed_opts = FeedOptions {
        segment_notify: Some(seg_tx),
        ..FeedOptions::default()
    };
    let in_stats = StatsHandle::new();
    let out_stats = StatsHandle::new();
    let feed = async {
        if let Err(e) = feed_output(
            &mut sub,
            &input,
            feed_opts,
            in_stats.clone(),
            cancel.clone(),
        )
        .await
        {
            tracing::debug!(error = %e, "runner input ended");
        }
        input.close();
    };
    let publish = async {
        let r = publish_segments(
            events,
            &mut publ,
            PublishOptions::default(),
            out_stats.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "runner output ended");
        }
    };
    // Segment counts for the status events, refreshed while the pipeline runs.
    let report = async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let o = out_stats.get();
            let mut s = lock(&status);
            s.segments_out = s.segments_out.max(o.segments_ok);
        }
    };
    tokio::select! {
        _ = async { tokio::join!(feed, publish, count) } => {}
        () = report => {}
    }
    let o = out_stats.get();
    lock(&status).segments_out = o.segments_ok;
    // The decoder threads end once their input is closed and the frame channel drained.
    drop(output);
}

/// Decoded frames → effect → encoder, on its own thread (the effect is per-pixel work).
fn effect_loop(
    mut frames: mpsc::Receiver<Result<lpgw_media::DecodedFrame, lpgw_media::MediaError>>,
    encoder: MediaPublisher,
    status: &Shared,
    params: &SharedParams,
) {
    while let Some(item) = frames.blocking_recv() {
        let frame = match item {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "runner decoder stopped");
                break;
            }
        };
        let Some(mut yuv) = frame.yuv else {
            continue;
        };
        let EffectParams { prompt, strength } = params_lock(params).clone();
        apply_prompt_effect(&mut yuv, &prompt, strength);
        let input = match frame.pts {
            Some(pts) => InputFrame::with_pts(InputImage::Yuv420(yuv), pts),
            None => InputFrame::new(InputImage::Yuv420(yuv)),
        };
        // A burst of decoded frames (a whole segment arriving at once) waits for the encoder
        // instead of overflowing its drop-oldest queue; a runner that stays behind loses
        // whole segments upstream, by the decoder's lag policy, instead of scattered frames.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while encoder.stats().queue_depth + 1 >= ENCODER_QUEUE as u64
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let pushed = encoder.push(input);
        let encoded = encoder.stats().frames_encoded;
        {
            let mut s = lock(status);
            s.frames_in += 1;
            if encoded > s.frames_out {
                s.frames_out = encoded;
                s.last_output_time = Some(unix_secs());
            }
        }
        if pushed.is_err() {
            break;
        }
    }
    encoder.close();
    // Publish the final count once the encoder has flushed.
    let encoded = encoder.stats().frames_encoded;
    lock(status).frames_out = encoded;
    drop(encoder);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lv2v_params_set_prompt_and_strength() {
        let mut p = EffectParams::default();
        assert!(p.update(&json!({"prompt": "a cat", "strength": 0.5})));
        assert_eq!(p.prompt, "a cat");
        assert_eq!(p.strength, 0.5);
        assert!(!p.update(&json!({"prompt": "a cat"})), "no change");
        assert!(p.update(&json!({"strength": "2"})));
        assert_eq!(p.strength, 1.0, "clamped");
        assert!(p.update(&json!({"strength": -3})));
        assert_eq!(p.strength, 0.0);
    }

    #[test]
    fn scope_parameters_message_is_understood() {
        let mut p = EffectParams::default();
        let msg = json!({"type": "parameters", "params": {"prompts": [{"text": "sky", "weight": 100}, {"text": "sea"}], "strength": 0.25}});
        assert!(p.update(&msg));
        assert_eq!(p.prompt, "sky | sea");
        assert_eq!(p.strength, 0.25);
        // Other Scope message types leave the effect alone.
        assert!(!p.update(&json!({"type": "ping", "params": {"prompt": "x"}})));
        assert_eq!(p.prompt, "sky | sea");
    }

    #[test]
    fn prompt_shapes() {
        assert_eq!(prompt_text(&json!("x")).as_deref(), Some("x"));
        assert_eq!(
            prompt_text(&json!([["a", 1.0], ["b", 0.5]])).as_deref(),
            Some("a | b")
        );
        assert_eq!(prompt_text(&json!(["a", 3])).as_deref(), Some("a"));
        assert_eq!(prompt_text(&json!([])), None);
        assert_eq!(prompt_text(&json!(7)), None);
        let mut p = EffectParams::default();
        assert!(!p.update(&json!("not an object")));
        assert!(!p.update(&json!({"strength": "soft"})));
    }
}
