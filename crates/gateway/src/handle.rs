//! One handle for a started job, whichever route started it.
//!
//! The legacy LV2V flow and the Scope flows (live runner, serverless) share what a caller
//! does with a job — read its events, send control, update parameters, read its media
//! channels and payments, learn why it ended, close it — but not how. [`Job`] keeps the flow
//! a private detail: callers (the service, the CLI) never match on it, and the Scope
//! protocol (how parameters are wrapped, `stop_stream`, `api` requests) stays behind it.

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::job::{EndReason, Lv2vJob};
use crate::payment::PaymentStats;
use crate::route::Route;
use crate::runner::FundingEnd;
use crate::scope::{InputMode, MediaChannels, ScopeHealth, ScopeJob};
use lpgw_trickle::client::HttpClient;

/// A started job. Dropping it without [`Job::close`] cancels its tasks; closing it also
/// stops its session at the orchestrator and deletes its channels, bounded in time.
#[derive(Debug)]
pub struct Job {
    kind: Kind,
    paid: bool,
}

#[derive(Debug)]
enum Kind {
    Lv2v(Box<Lv2vJob>),
    Scope(Box<ScopeJob>),
}

/// Why a job ended on its own: a stable code for clients and the details for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    /// `budget_exhausted`, `payments_wedged`, `price_exceeded`, or `job_ended`.
    pub code: &'static str,
    /// What happened, in words.
    pub message: String,
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

const WEDGED: &str = "the remote signer answers 482 (no tickets) cycle after cycle: \
     payments are wedged and the orchestrator would release the session";
const PRICE: &str = "the price went above what the signer or the ceiling allows";
const ENDED: &str = "the orchestrator ended the session";

impl Job {
    pub(crate) fn lv2v(job: Lv2vJob, paid: bool) -> Self {
        Self {
            kind: Kind::Lv2v(Box::new(job)),
            paid,
        }
    }

    pub(crate) fn scope(job: ScopeJob, paid: bool) -> Self {
        let paid = paid && job.runner_session().is_some();
        Self {
            kind: Kind::Scope(Box::new(job)),
            paid,
        }
    }

    /// Which route started it.
    pub fn route(&self) -> Route {
        match &self.kind {
            Kind::Lv2v(_) => Route::Legacy,
            Kind::Scope(j) if j.runner_session().is_some() => Route::LiveRunner,
            Kind::Scope(_) => Route::Serverless,
        }
    }

    /// The orchestrator (legacy) or runner (Scope) the job runs on.
    pub fn orchestrator_url(&self) -> &str {
        match &self.kind {
            Kind::Lv2v(j) => j.orchestrator_url(),
            Kind::Scope(j) => j.runner_url(),
        }
    }

    /// The job's manifest (stream) id at the orchestrator.
    pub fn manifest_id(&self) -> &str {
        match &self.kind {
            Kind::Lv2v(j) => j.manifest_id(),
            Kind::Scope(j) => j.manifest_id(),
        }
    }

    /// Whether the job pays as it runs (a priced session on a chain-backed gateway).
    pub fn is_paid(&self) -> bool {
        self.paid
    }

    /// A token the gateway cancels when the job ends, whichever flow started it: the job
    /// closed, its payments stopped, or its runner went away.
    pub fn ended(&self) -> CancellationToken {
        match &self.kind {
            Kind::Lv2v(j) => j.cancellation_token(),
            Kind::Scope(j) => j.cancellation_token(),
        }
    }

    /// Whether the job has ended.
    pub fn is_closed(&self) -> bool {
        self.ended().is_cancelled()
    }

    /// The runner's events, once: the first caller gets the receiver.
    pub fn events(&mut self) -> Option<mpsc::Receiver<Value>> {
        match &mut self.kind {
            Kind::Lv2v(j) => j.take_events(),
            Kind::Scope(j) => j.take_events(),
        }
    }

    /// What the job's events mean for its holder (see [`JobSignal`]): a reader that stays
    /// valid after [`Job::events`] handed the receiver away.
    ///
    /// [`JobSignal`]: crate::JobSignal
    pub fn signals(&self) -> crate::SignalReader {
        crate::SignalReader {
            scope: matches!(self.kind, Kind::Scope(_)),
        }
    }

    /// Whether the job has a control channel.
    pub fn has_control(&self) -> bool {
        match &self.kind {
            Kind::Lv2v(j) => !j.urls().control_url.is_empty(),
            Kind::Scope(j) => !j.urls().control_url.is_empty(),
        }
    }

    /// Sends one message, as it is, on the control channel.
    pub async fn control(&self, msg: &Value) -> Result<(), Error> {
        match &self.kind {
            Kind::Lv2v(j) => j.send_control(msg).await,
            Kind::Scope(j) => j.send_control(msg).await,
        }
    }

    /// The control message that carries a parameter update to this job's runner: Scope
    /// runners take `{"type":"parameters","params":{...}}`, legacy runners the parameters as
    /// they are. A body that is already a runner message (a string `type`) is left alone:
    /// wrapping it twice would make the runner ignore it.
    pub fn params_message(&self, params: Value) -> Value {
        params_message(matches!(self.kind, Kind::Scope(_)), params)
    }

    /// Sends a parameter update in the runner's own format ([`Self::params_message`]).
    pub async fn update_params(&self, params: Value) -> Result<(), Error> {
        let msg = self.params_message(params);
        self.control(&msg).await
    }

    /// Payments made so far; a job with nothing metered reports the defaults.
    pub fn payments(&self) -> PaymentStats {
        match &self.kind {
            Kind::Lv2v(j) => j.payment_stats(),
            Kind::Scope(j) => j
                .runner_session()
                .map(crate::runner::RunnerSession::payment_stats)
                .unwrap_or_default(),
        }
    }

    /// The job's media channels by role. Bearer capabilities: never log or hand them to
    /// someone who should not publish or read. `None` for a Scope job whose stream has not
    /// started.
    pub fn media(&self) -> Option<MediaChannels> {
        match &self.kind {
            Kind::Lv2v(j) => Some(MediaChannels {
                input: Some(j.urls().publish_url.clone()),
                output: j.urls().subscribe_url.clone(),
                output_audio: None,
                all: Vec::new(),
            }),
            Kind::Scope(j) => j.media(),
        }
    }

    /// Whether the runner restarted and the job is starting its stream again; the media
    /// channels are gone until the job's `stream_restarted` event, after which
    /// [`Self::media`] gives the new ones. Always `false` for legacy jobs.
    pub fn is_restarting(&self) -> bool {
        matches!(&self.kind, Kind::Scope(j) if j.is_restarting())
    }

    /// The pinned HTTP client that reaches the job's channels (its TLS policy and pins), so
    /// media is checked like control and events.
    pub fn media_client(&self) -> Option<HttpClient> {
        match &self.kind {
            Kind::Lv2v(j) => j.channel_client(),
            Kind::Scope(j) => j.channel_client(),
        }
    }

    /// Whether the stream takes input: `false` for a Scope stream in text mode.
    pub fn takes_input(&self) -> bool {
        match &self.kind {
            Kind::Lv2v(_) => true,
            Kind::Scope(j) => j.input_mode() != Some(InputMode::Text),
        }
    }

    /// The Scope runner's keepalive figures; `None` for legacy jobs.
    pub fn health(&self) -> Option<ScopeHealth> {
        match &self.kind {
            Kind::Scope(j) => Some(j.health()),
            Kind::Lv2v(_) => None,
        }
    }

    /// What the runner reports beyond the common status, as JSON (Scope: input mode and
    /// keepalive figures); `None` when there is nothing to add.
    pub fn runner_status(&self) -> Option<Value> {
        let Kind::Scope(j) = &self.kind else {
            return None;
        };
        let h = j.health();
        Some(json!({
            "input_mode": j.input_mode().map(InputMode::as_str),
            "last_pong_ms": h.last_pong.map(|d| d.as_secs_f64() * 1000.0),
            "missed_pongs": h.missed_pongs,
            "restarts": h.restarts,
        }))
    }

    /// A request to the runner's own HTTP API (Scope's `api` message); its answer.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Error> {
        match &self.kind {
            Kind::Scope(j) => j.api(method, path, body).await,
            Kind::Lv2v(_) => Err(Error::Config(
                "this job's runner has no API passthrough (legacy LV2V)".into(),
            )),
        }
    }

    /// Asks the runner to stop its stream (bounded); nothing for legacy jobs, whose
    /// teardown is the publish channel's deletion.
    pub async fn stop_stream(&mut self) {
        if let Kind::Scope(j) = &mut self.kind {
            j.stop_stream().await;
        }
    }

    /// Why the job ended on its own; `None` while it runs or when it was closed.
    pub fn failure(&self) -> Option<JobFailure> {
        let (code, detail, other) = match &self.kind {
            Kind::Lv2v(j) => match j.end_reason() {
                None | Some(EndReason::Closed) => return None,
                Some(EndReason::BudgetExhausted) => ("budget_exhausted", j.end_detail(), ""),
                Some(EndReason::PaymentsWedged) => ("payments_wedged", None, WEDGED),
                Some(EndReason::PriceExceeded) => ("price_exceeded", None, PRICE),
                Some(_) => ("job_ended", None, ENDED),
            },
            Kind::Scope(j) if j.restart_failure().is_some() => (
                "runner_restart_failed",
                j.restart_failure(),
                "the runner restarted and the stream could not start again",
            ),
            Kind::Scope(j) => match j.funding_end()? {
                FundingEnd::BudgetExhausted => ("budget_exhausted", j.funding_detail(), ""),
                FundingEnd::Wedged => ("payments_wedged", None, WEDGED),
                FundingEnd::PriceExceeded => ("price_exceeded", None, PRICE),
                _ => ("job_ended", None, ENDED),
            },
        };
        let message = detail.unwrap_or_else(|| match code {
            "budget_exhausted" => "a spending budget ran out".into(),
            _ => other.into(),
        });
        Some(JobFailure { code, message })
    }

    /// The legacy job inside, for callers that need its URLs.
    pub fn as_lv2v(&self) -> Option<&Lv2vJob> {
        match &self.kind {
            Kind::Lv2v(j) => Some(j),
            Kind::Scope(_) => None,
        }
    }

    /// The Scope job inside, for callers that drive the Scope protocol themselves.
    pub fn as_scope(&self) -> Option<&ScopeJob> {
        match &self.kind {
            Kind::Scope(j) => Some(j),
            Kind::Lv2v(_) => None,
        }
    }

    /// The Scope job inside, or the job back when it is a legacy one.
    pub fn into_scope(self) -> Result<ScopeJob, Self> {
        match self.kind {
            Kind::Scope(j) => Ok(*j),
            kind @ Kind::Lv2v(_) => Err(Self {
                kind,
                paid: self.paid,
            }),
        }
    }

    /// Stops payments and the session, deletes the channels, bounded in time.
    pub async fn close(self) {
        match self.kind {
            Kind::Lv2v(j) => j.close().await,
            Kind::Scope(j) => j.close().await,
        }
    }
}

/// [`Job::params_message`] as a pure function of whether the runner speaks Scope.
fn params_message(scope: bool, params: Value) -> Value {
    let shaped = params.get("type").is_some_and(Value::is_string);
    if scope && !shaped {
        json!({ "type": "parameters", "params": params })
    } else {
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_runners_get_parameters_wrapped_once_and_legacy_runners_as_sent() {
        let p = json!({"prompt": "a cat"});
        assert_eq!(
            params_message(true, p.clone()),
            json!({"type": "parameters", "params": {"prompt": "a cat"}})
        );
        assert_eq!(params_message(false, p.clone()), p);
        let shaped = json!({"type": "parameters", "params": {"prompt": "a cat"}});
        assert_eq!(params_message(true, shaped.clone()), shaped);
        // A `type` that is not a string is a parameter like any other.
        let odd = json!({"type": 3, "prompt": "x"});
        assert_eq!(
            params_message(true, odd.clone()),
            json!({"type": "parameters", "params": odd})
        );
    }
}
