//! How `lpgw start` prints a started job, whichever flow the routing policy chose.

use std::time::Duration;

use lpgw_gateway::Job;
use serde_json::{Value, json};

/// The job as printed: its URLs are bearer capabilities, printed because using them is the
/// point of the command.
pub(crate) fn started_doc(job: &Job, elapsed: Duration) -> Value {
    let media = job.media();
    let mut doc = json!({
        "type": "started",
        "flow": job.route().flow_name(),
        "manifest_id": job.manifest_id(),
        "publish_url": media.as_ref().and_then(|m| m.input.clone()),
        "subscribe_url": media.as_ref().map(|m| m.output.clone()),
        "start_ms": elapsed.as_secs_f64() * 1000.0,
    });
    if let Some(j) = job.as_lv2v() {
        doc["orchestrator"] = j.orchestrator_url().into();
        doc["control_url"] = j.urls().control_url.clone().into();
        doc["events_url"] = j.urls().events_url.clone().into();
    } else if let Some(j) = job.as_scope() {
        doc["runner"] = j.runner_url().into();
        doc["control_url"] = j.urls().control_url.clone().into();
        doc["events_url"] = j.urls().events_url.clone().into();
    }
    doc
}

/// Why the job ended, in words for the final line; `None` when it was closed.
pub(crate) fn end_reason(job: &Job) -> Option<String> {
    job.failure().map(|f| f.code.to_owned())
}
