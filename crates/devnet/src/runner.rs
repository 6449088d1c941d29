//! The built-in LV2V runner: reads the input channel and writes each segment to the output
//! channel (passthrough), follows the control channel, and publishes status events.
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

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the status events report.
#[derive(Debug)]
struct Status {
    pipeline: String,
    start_time: f64,
    state: &'static str,
    last_state_update_time: f64,
    last_input_time: Option<f64>,
    last_output_time: Option<f64>,
    last_params_update_time: Option<f64>,
    last_params: Option<Value>,
    segments_in: u64,
    segments_out: u64,
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
        }
    }

    fn to_event(&self) -> Value {
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
            "input_status": { "last_input_time": self.last_input_time, "fps": 0.0 },
            "inference_status": {
                "last_output_time": self.last_output_time,
                "fps": 0.0,
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
            "timestamp": (unix_secs() * 1000.0) as u64,
        })
    }
}

type Shared = Arc<Mutex<Status>>;

fn lock(s: &Shared) -> MutexGuard<'_, Status> {
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
    let side = async {
        tokio::join!(
            control(&spec.control, status.clone()),
            events(&spec.events, spec.status_interval, status.clone())
        );
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        () = passthrough(&spec, status.clone(), on_segment) => {}
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

async fn control(url: &str, status: Shared) {
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
        let event = lock(&status).to_event();
        if let Err(e) = writer.send(&event).await {
            tracing::debug!(error = %e, "runner events ended");
            return;
        }
    }
}
