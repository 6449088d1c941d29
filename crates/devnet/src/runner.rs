//! The built-in LV2V runner: follows the control channel, publishes status events, and either
//! applies a visible prompt-driven video effect ([`crate::runner_effect`]) or, for the
//! passthrough models ([`PASSTHROUGH_MODELS`]), copies each input segment to the output channel
//! unchanged (what benchmarks of the gateway's own cost need).
//!
//! It talks to the orchestrator's trickle server over loopback HTTP, as an ai-runner
//! container would (go-livepeer `-liveAITrickleHostForRunner`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::json::{
    JsonReader, JsonReaderConfig, JsonWriter, JsonWriterConfig, is_keepalive,
};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::runner_effect::{EffectParams, SharedParams};

/// Models whose runner copies segments through untouched instead of decoding them.
pub(crate) const PASSTHROUGH_MODELS: [&str; 3] = ["noop", "relay", "passthrough"];

/// Whether `model` runs as a passthrough.
pub(crate) fn is_passthrough(model: &str) -> bool {
    PASSTHROUGH_MODELS.contains(&model)
}

/// Where and what a runner runs.
#[derive(Debug, Clone)]
pub(crate) struct RunnerSpec {
    pub(crate) model: String,
    pub(crate) params: Option<Value>,
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) control: String,
    pub(crate) events: String,
    pub(crate) status_interval: Duration,
}

pub(crate) fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the status events report.
#[derive(Debug)]
pub(crate) struct Status {
    pipeline: String,
    start_time: f64,
    pub(crate) state: &'static str,
    pub(crate) last_state_update_time: f64,
    pub(crate) last_input_time: Option<f64>,
    pub(crate) last_output_time: Option<f64>,
    last_params_update_time: Option<f64>,
    last_params: Option<Value>,
    pub(crate) segments_in: u64,
    pub(crate) segments_out: u64,
    /// Frames decoded from the input (effect mode only).
    pub(crate) frames_in: u64,
    /// Frames encoded to the output (effect mode only).
    pub(crate) frames_out: u64,
    /// Frame counts and time at the previous event, for the fps figures.
    prev: Option<(f64, u64, u64)>,
}

impl Status {
    fn new(pipeline: String, params: Option<Value>) -> Self {
        let now = unix_secs();
        Self {
            pipeline,
            start_time: now,
            state: "INITIALIZING",
            last_state_update_time: now,
            last_input_time: None,
            last_output_time: None,
            last_params_update_time: params.as_ref().map(|_| now),
            last_params: params,
            segments_in: 0,
            segments_out: 0,
            frames_in: 0,
            frames_out: 0,
            prev: None,
        }
    }

    /// Input and output frame rates since the previous event.
    fn rates(&mut self, now: f64) -> (f64, f64) {
        let (fi, fo) = (self.frames_in, self.frames_out);
        let rates = match self.prev {
            Some((t, pi, po)) if now > t => (
                fi.saturating_sub(pi) as f64 / (now - t),
                fo.saturating_sub(po) as f64 / (now - t),
            ),
            _ => (0.0, 0.0),
        };
        self.prev = Some((now, fi, fo));
        rates
    }

    fn next_event(&mut self) -> Value {
        let (fps_in, fps_out) = self.rates(unix_secs());
        let hash = self
            .last_params
            .as_ref()
            .map(|p| crate::keys::hex(&crate::keys::keccak(p.to_string().as_bytes())[..16]));
        json!({
            "type": "status",
            "pipeline": self.pipeline,
            "start_time": self.start_time,
            "state": self.state,
            "last_state_update_time": self.last_state_update_time,
            "input_status": { "last_input_time": self.last_input_time, "fps": fps_in },
            "inference_status": {
                "last_output_time": self.last_output_time,
                "fps": fps_out,
                "last_params_update_time": self.last_params_update_time,
                "last_params": self.last_params,
                "last_params_hash": hash,
                "last_error_time": null,
                "last_error": null,
                "last_restart_time": null,
                "last_restart_logs": null,
                "restart_count": 0,
            },
            "segments_in": self.segments_in,
            "segments_out": self.segments_out,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "timestamp": (unix_secs() * 1000.0) as u64,
        })
    }
}

pub(crate) type Shared = Arc<Mutex<Status>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Status> {
    // Plain fields set in single statements.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs until the input channel ends or `cancel` fires. Each input segment is announced on
/// `on_segment` (for the meter) as soon as its headers arrive.
pub(crate) async fn run(spec: RunnerSpec, cancel: CancellationToken, on_segment: mpsc::Sender<()>) {
    let status: Shared = Arc::new(Mutex::new(Status::new(
        spec.model.clone(),
        spec.params.clone(),
    )));
    let mut initial = EffectParams::default();
    if let Some(p) = &spec.params {
        initial.update(p);
    }
    let params: SharedParams = Arc::new(Mutex::new(initial));
    let side = async {
        tokio::join!(
            control(&spec.control, status.clone(), params.clone()),
            events(&spec.events, spec.status_interval, status.clone())
        );
        std::future::pending::<()>().await;
    };
    let work = async {
        if is_passthrough(&spec.model) {
            passthrough(&spec, status.clone(), on_segment).await;
        } else {
            let token = cancel.child_token();
            crate::runner_effect::process(&spec, status.clone(), params.clone(), on_segment, token)
                .await;
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        () = work => {}
        () = side => {}
    }
}

async fn passthrough(spec: &RunnerSpec, status: Shared, on_segment: mpsc::Sender<()>) {
    let sub_cfg = SubscriberConfig {
        start: SeqRequest::At(0),
        ..SubscriberConfig::default()
    };
    let (mut sub, mut publ) = match (
        Subscriber::new(&spec.input, sub_cfg),
        Publisher::new(&spec.output, "video/MP2T", PublisherConfig::default()),
    ) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "runner cannot open channels");
            return;
        }
    };
    loop {
        let mut seg = match sub.next_segment().await {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "runner input ended");
                break;
            }
        };
        let _ = on_segment.try_send(());
        {
            let mut s = lock(&status);
            s.segments_in += 1;
            s.last_input_time = Some(unix_secs());
            if s.state != "ONLINE" {
                s.state = "ONLINE";
                s.last_state_update_time = unix_secs();
            }
        }
        let mut writer = match publ.next_segment().await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::debug!(error = %e, "runner output unavailable");
                None
            }
        };
        loop {
            match seg.chunk().await {
                Ok(Some(chunk)) => {
                    if let Some(w) = writer.as_mut()
                        && w.write(chunk).await.is_err()
                    {
                        writer = None;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "runner input segment broke off");
                    break;
                }
            }
        }
        if let Some(w) = writer
            && w.finish().await.is_ok()
        {
            let mut s = lock(&status);
            s.segments_out += 1;
            s.last_output_time = Some(unix_secs());
        }
    }
    let _ = publ.close().await;
}

async fn control(url: &str, status: Shared, params: SharedParams) {
    let cfg = JsonReaderConfig {
        subscriber: SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
        ..JsonReaderConfig::default()
    };
    let Ok(mut reader) = JsonReader::new(url, cfg) else {
        return;
    };
    while let Ok(Some(msg)) = reader.next().await {
        if is_keepalive(&msg) {
            continue;
        }
        params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(&msg);
        let mut s = lock(&status);
        s.last_params = Some(msg);
        s.last_params_update_time = Some(unix_secs());
    }
}

async fn events(url: &str, every: Duration, status: Shared) {
    let cfg = JsonWriterConfig {
        keepalive: None,
        ..JsonWriterConfig::default()
    };
    let Ok(writer) = JsonWriter::new(url, cfg) else {
        return;
    };
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let event = lock(&status).next_event();
        if let Err(e) = writer.send(&event).await {
            tracing::debug!(error = %e, "runner events ended");
            return;
        }
    }
}
