//! A started job as `lpgw start` drives it, whichever flow the routing policy chose.

use std::time::Duration;

use lpgw_gateway::{Error, Lv2vJob, PaymentStats, ScopeJob, StartedJob};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A legacy LV2V job or a Scope job (live runner or serverless).
pub(crate) enum CliJob {
    Lv2v(Lv2vJob),
    Scope(ScopeJob),
}

impl CliJob {
    pub(crate) fn new(job: StartedJob) -> anyhow::Result<Self> {
        match job {
            StartedJob::Lv2v(j) => Ok(Self::Lv2v(j)),
            StartedJob::Scope(j) => Ok(Self::Scope(j)),
            _ => anyhow::bail!("the gateway started a job type this command does not know"),
        }
    }

    /// The job as printed: its URLs are bearer capabilities, printed because using them is
    /// the point of the command.
    pub(crate) fn doc(&self, elapsed: Duration) -> Value {
        let start_ms = elapsed.as_secs_f64() * 1000.0;
        match self {
            Self::Lv2v(j) => {
                let u = j.urls();
                json!({
                    "type": "started",
                    "flow": "lv2v",
                    "manifest_id": u.manifest_id,
                    "orchestrator": j.orchestrator_url(),
                    "publish_url": u.publish_url,
                    "subscribe_url": u.subscribe_url,
                    "control_url": u.control_url,
                    "events_url": u.events_url,
                    "start_ms": start_ms,
                })
            }
            Self::Scope(j) => {
                let u = j.urls();
                let media = j.media();
                json!({
                    "type": "started",
                    "flow": if j.runner_session().is_some() { "live-runner" } else { "serverless" },
                    "manifest_id": u.manifest_id,
                    "runner": j.runner_url(),
                    "publish_url": media.map(|m| m.input.clone()),
                    "subscribe_url": media.map(|m| m.output.clone()),
                    "control_url": u.control_url,
                    "events_url": u.events_url,
                    "start_ms": start_ms,
                })
            }
        }
    }

    pub(crate) fn take_events(&mut self) -> Option<mpsc::Receiver<Value>> {
        match self {
            Self::Lv2v(j) => j.take_events(),
            Self::Scope(j) => j.take_events(),
        }
    }

    pub(crate) async fn ended(&self) {
        match self {
            Self::Lv2v(j) => j.ended().await,
            Self::Scope(j) => j.ended().await,
        }
    }

    pub(crate) async fn send_control(&self, msg: &Value) -> Result<(), Error> {
        match self {
            Self::Lv2v(j) => j.send_control(msg).await,
            Self::Scope(j) => j.send_control(msg).await,
        }
    }

    /// Payments made so far; a job with nothing metered reports the defaults.
    pub(crate) fn payment_stats(&self) -> PaymentStats {
        match self {
            Self::Lv2v(j) => j.payment_stats(),
            Self::Scope(j) => j
                .runner_session()
                .map(|s| s.payment_stats())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn end_reason(&self) -> Option<String> {
        match self {
            Self::Lv2v(j) => j.end_reason().map(|r| format!("{r:?}")),
            Self::Scope(j) => j.funding_end().map(|r| format!("{r:?}")),
        }
    }

    pub(crate) fn manifest_id(&self) -> String {
        match self {
            Self::Lv2v(j) => j.manifest_id().to_owned(),
            Self::Scope(j) => j.manifest_id().to_owned(),
        }
    }

    pub(crate) async fn close(self) {
        match self {
            Self::Lv2v(j) => j.close().await,
            Self::Scope(j) => j.close().await,
        }
    }
}
