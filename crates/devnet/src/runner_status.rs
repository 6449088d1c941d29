//! What the built-in runner is asked to run and the status it reports, shared by the
//! passthrough ([`crate::runner`]) and the effect ([`crate::runner_effect`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

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

/// Seconds since the Unix epoch, as the status events report times.
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
    pub(crate) last_params_update_time: Option<f64>,
    pub(crate) last_params: Option<Value>,
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
    pub(crate) fn new(pipeline: String, params: Option<Value>) -> Self {
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
    pub(crate) fn rates(&mut self, now: f64) -> (f64, f64) {
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

    pub(crate) fn next_event(&mut self) -> Value {
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

/// The status shared by a runner's tasks.
pub(crate) type Shared = Arc<Mutex<Status>>;

/// Locks the status, recovering from a poisoned lock.
pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Status> {
    // Plain fields set in single statements.
    s.lock().unwrap_or_else(|e| e.into_inner())
}
