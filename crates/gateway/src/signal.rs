//! What a job's events mean for whoever holds the job. The gateway reads its runner's
//! protocol here so that applications (the service, the CLI) act on a job's life without
//! naming a runner message.

use serde_json::Value;

/// An event's meaning for the job's holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSignal {
    /// The stream is broken: the runner reported an error that answers no request of
    /// ours (the real Scope runner sends those for messages it cannot handle).
    Fault {
        /// A stable code for clients and metrics (`runner_error`).
        code: &'static str,
        /// The runner's words.
        message: String,
    },
    /// The runner is restarting: its old channels may go quiet or end, and no output is
    /// due until [`JobSignal::MediaMoved`]. Not a fault: the gateway starts the stream
    /// again, and ends the job itself when it cannot.
    Restarting,
    /// The stream runs again after a restart, on new channels: [`crate::Job::media`] gives
    /// them.
    MediaMoved,
}

/// Reads a job's events into [`JobSignal`]s. Cheap to copy; get one with
/// [`crate::Job::signals`] before handing the job's event receiver to a task.
#[derive(Debug, Clone, Copy)]
pub struct SignalReader {
    /// Whether the job's runner speaks the Scope protocol; other runners' events carry no
    /// signals.
    pub(crate) scope: bool,
}

impl SignalReader {
    /// What event `ev` means, if anything.
    pub fn read(self, ev: &Value) -> Option<JobSignal> {
        if !self.scope {
            return None;
        }
        match ev.get("type").and_then(Value::as_str)? {
            "error"
                if ev.get("request_id").is_none_or(Value::is_null)
                    && ev.get("during_start") != Some(&Value::Bool(true)) =>
            {
                let text = ev.get("error").and_then(Value::as_str).unwrap_or("error");
                Some(JobSignal::Fault {
                    code: "runner_error",
                    message: format!("runner error: {text}"),
                })
            }
            "runner_restarting" | "runner_restarted" => Some(JobSignal::Restarting),
            "stream_restarted" => Some(JobSignal::MediaMoved),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SCOPE: SignalReader = SignalReader { scope: true };

    #[test]
    fn events_map_to_signals() {
        let fault = |m: &str| {
            Some(JobSignal::Fault {
                code: "runner_error",
                message: m.into(),
            })
        };
        let cases = [
            (
                json!({"type": "error", "request_id": null, "error": "boom"}),
                fault("runner error: boom"),
            ),
            (json!({"type": "error"}), fault("runner error: error")),
            // An error that answers a request, or one seen while a start waited, is that
            // request's business.
            (
                json!({"type": "error", "request_id": "r1", "error": "x"}),
                None,
            ),
            (
                json!({"type": "error", "request_id": null, "during_start": true}),
                None,
            ),
            (
                json!({"type": "runner_restarting"}),
                Some(JobSignal::Restarting),
            ),
            (
                json!({"type": "runner_restarted", "restarts": 1}),
                Some(JobSignal::Restarting),
            ),
            (
                json!({"type": "stream_restarted"}),
                Some(JobSignal::MediaMoved),
            ),
            (json!({"type": "stream_started"}), None),
            (json!({"type": 7}), None),
            (json!("not an object"), None),
        ];
        for (ev, want) in cases {
            assert_eq!(SCOPE.read(&ev), want, "{ev}");
        }
    }

    #[test]
    fn other_runners_events_carry_no_signals() {
        let lv2v = SignalReader { scope: false };
        assert_eq!(lv2v.read(&json!({"type": "error", "error": "x"})), None);
        assert_eq!(lv2v.read(&json!({"type": "stream_restarted"})), None);
    }
}
