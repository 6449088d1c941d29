//! How jobs are started and driven: the one place that knows the gateway's job types.
//! Every start goes through the gateway's routing policy ([`Gateway::start`]): live-runner
//! models (default `scope`) through discovery → reserve → pay, others through the legacy
//! LV2V flow, with fallbacks as the gateway settings say.

use lpgw_gateway::{
    EndReason, Error as GwError, FundingEnd, Gateway, Lv2vJob, PaymentStats, Route, ScopeJob,
    Settings, StartRequest, StartedJob, Wallet,
};
use lpgw_trickle::client::HttpClient;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// Which start path served a job (the API's `flow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Flow {
    LiveRunner,
    Lv2v,
    Serverless,
}

impl Flow {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::LiveRunner => "live-runner",
            Self::Lv2v => "lv2v",
            Self::Serverless => "serverless",
        }
    }

    pub(crate) const ALL: [Self; 3] = [Self::LiveRunner, Self::Lv2v, Self::Serverless];

    /// Whether the runner speaks the Scope protocol (control updates wrapped as
    /// `{"type":"parameters","params":...}`).
    pub(crate) fn speaks_scope(self) -> bool {
        matches!(self, Self::LiveRunner | Self::Serverless)
    }
}

/// Wraps a Family B parameter update into the runner's control format: Scope runners
/// (live-runner and serverless flows) take `{"type":"parameters","params":{...}}`, legacy
/// LV2V runners take the parameters as they are. A body that is already a runner message
/// (a string `type`, as the Next.js storyboard and the scope-player send) passes through:
/// wrapping it twice would make the runner ignore it.
pub(crate) fn wrap_params(flow: Flow, params: Value) -> Value {
    let shaped = params.get("type").is_some_and(Value::is_string);
    if flow.speaks_scope() && !shaped {
        json!({ "type": "parameters", "params": params })
    } else {
        params
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub(crate) struct StartSpec {
    pub(crate) model_id: String,
    pub(crate) params: Option<Value>,
    pub(crate) request_id: Option<String>,
    pub(crate) stream_id: Option<String>,
    /// An orchestrator the caller asked for (already checked against the allow-list).
    pub(crate) orchestrator_url: Option<String>,
    /// What the job's payments draw on.
    pub(crate) wallet: Wallet,
}

/// Starts jobs through the gateway.
#[derive(Clone)]
pub(crate) struct JobBackend {
    gateway: Gateway,
    settings: Settings,
    /// Jobs that finished starting after their caller had gone, and were closed.
    orphans_closed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl JobBackend {
    pub(crate) fn new(gateway: Gateway) -> Self {
        let settings = gateway.settings().clone();
        Self {
            gateway,
            settings,
            orphans_closed: std::sync::Arc::default(),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Starts a job on the service's runtime (the gateway's start future is `Send`). A
    /// caller-chosen orchestrator gets a gateway with only that orchestrator that shares
    /// everything else with the service's: signer, routing, connections and the one TLS
    /// pin store.
    ///
    /// The start runs as a task of its own: a caller that goes away mid-start (client
    /// disconnect drops the handler) must not abandon a half-started job, so a job that
    /// nobody is waiting for any more is closed (payments, session, channels).
    pub(crate) async fn start(&self, spec: &StartSpec) -> Result<RunningJob, GwError> {
        let mut req = StartRequest::new(spec.model_id.clone());
        req.params.clone_from(&spec.params);
        req.request_id.clone_from(&spec.request_id);
        req.stream_id.clone_from(&spec.stream_id);
        req.wallet = spec.wallet.clone();
        let gateway = match &spec.orchestrator_url {
            Some(url) => self.gateway.for_orchestrators(vec![url.clone()]),
            None => self.gateway.clone(),
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        let orphans = self.orphans_closed.clone();
        tokio::spawn(
            async move {
                let started = gateway.start(&req).await;
                if let Err(Ok(orphan)) = reply.send(started) {
                    tracing::debug!("job started after its caller left: closing it");
                    orphan.close().await;
                    orphans.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            .in_current_span(),
        );
        let job = rx
            .await
            .map_err(|_| GwError::Config("job start task ended without an answer".into()))??;
        Ok(match job {
            StartedJob::Scope(j) => RunningJob::Scope(Box::new(j)),
            StartedJob::Lv2v(j) => RunningJob::Lv2v(Box::new(j)),
            other => {
                other.close().await;
                return Err(GwError::Config(
                    "the gateway started an unknown job kind".into(),
                ));
            }
        })
    }
}

/// A started job, whichever flow started it.
#[derive(Debug)]
pub(crate) enum RunningJob {
    Lv2v(Box<Lv2vJob>),
    Scope(Box<ScopeJob>),
}

/// Where the job's media goes, for the media bridge. Bearer capabilities: never logged or
/// returned to API callers.
#[derive(Clone)]
pub(crate) struct MediaEndpoints {
    /// `None` for a stream that takes no input (Scope text mode).
    pub(crate) publish_url: Option<String>,
    pub(crate) subscribe_url: String,
    /// The gateway's client for the job's channels: its TLS policy and pins, so media is
    /// checked like control and events.
    pub(crate) http: Option<HttpClient>,
}

impl RunningJob {
    pub(crate) fn flow(&self) -> Flow {
        match self {
            Self::Lv2v(_) => Flow::Lv2v,
            Self::Scope(j) if j.runner_session().is_some() => Flow::LiveRunner,
            Self::Scope(_) => Flow::Serverless,
        }
    }

    /// The route, for logs.
    pub(crate) fn route(&self) -> Route {
        match self {
            Self::Lv2v(_) => Route::Legacy,
            Self::Scope(j) if j.runner_session().is_some() => Route::LiveRunner,
            Self::Scope(_) => Route::Serverless,
        }
    }

    pub(crate) fn orchestrator_url(&self) -> String {
        match self {
            Self::Lv2v(j) => j.orchestrator_url().to_string(),
            Self::Scope(j) => j.runner_url().to_string(),
        }
    }

    pub(crate) fn has_payment_session(&self, settings: &Settings) -> bool {
        match self {
            Self::Lv2v(_) => !settings.is_offchain(),
            Self::Scope(j) => !settings.is_offchain() && j.runner_session().is_some(),
        }
    }

    pub(crate) fn media(&self) -> Option<MediaEndpoints> {
        match self {
            Self::Lv2v(j) => Some(MediaEndpoints {
                publish_url: Some(j.urls().publish_url.clone()),
                subscribe_url: j.urls().subscribe_url.clone(),
                http: j.channel_client(),
            }),
            Self::Scope(j) => j.media().map(|m| MediaEndpoints {
                publish_url: m.input.clone(),
                subscribe_url: m.output.clone(),
                http: j.channel_client(),
            }),
        }
    }

    pub(crate) fn has_control(&self) -> bool {
        match self {
            Self::Lv2v(j) => !j.urls().control_url.is_empty(),
            Self::Scope(j) => !j.urls().control_url.is_empty(),
        }
    }

    pub(crate) async fn send_control(&self, msg: &Value) -> Result<(), GwError> {
        match self {
            Self::Lv2v(j) => j.send_control(msg).await,
            Self::Scope(j) => j.send_control(msg).await,
        }
    }

    pub(crate) fn take_events(&mut self) -> Option<mpsc::Receiver<Value>> {
        match self {
            Self::Lv2v(j) => j.take_events(),
            Self::Scope(j) => j.take_events(),
        }
    }

    pub(crate) fn payment_stats(&self) -> PaymentStats {
        match self {
            Self::Lv2v(j) => j.payment_stats(),
            Self::Scope(j) => j
                .runner_session()
                .map(lpgw_gateway::RunnerSession::payment_stats)
                .unwrap_or_default(),
        }
    }

    /// A raw `api` request to a Scope runner's own HTTP API; its `api_response`.
    pub(crate) async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, GwError> {
        match self {
            Self::Scope(j) => j.api(method, path, body).await,
            Self::Lv2v(_) => Err(GwError::Config(
                "this job's runner has no API passthrough (legacy LV2V)".into(),
            )),
        }
    }

    /// Whether the stream takes input: `false` for a Scope stream in text mode.
    pub(crate) fn takes_input(&self) -> bool {
        match self {
            Self::Lv2v(_) => true,
            Self::Scope(j) => j.input_mode() != Some(lpgw_gateway::InputMode::Text),
        }
    }

    /// The Scope runner's keepalive figures.
    pub(crate) fn scope_health(&self) -> Option<lpgw_gateway::ScopeHealth> {
        match self {
            Self::Scope(j) => Some(j.health()),
            Self::Lv2v(_) => None,
        }
    }

    /// The Scope runner's health and the stream's input mode, for status answers.
    pub(crate) fn scope_json(&self) -> Option<Value> {
        let Self::Scope(j) = self else { return None };
        let h = j.health();
        Some(json!({
            "input_mode": j.input_mode().map(lpgw_gateway::InputMode::as_str),
            "last_pong_ms": h.last_pong.map(|d| d.as_secs_f64() * 1000.0),
            "missed_pongs": h.missed_pongs,
            "restarts": h.restarts,
        }))
    }

    /// Asks a Scope runner to stop its stream (bounded); nothing for legacy jobs, whose
    /// teardown is the publish channel's deletion.
    pub(crate) async fn stop_stream(&mut self) {
        if let Self::Scope(j) = self {
            j.stop_stream().await;
        }
    }

    /// A token the gateway cancels when the job ends, whichever flow started it.
    pub(crate) fn cancellation_token(&self) -> CancellationToken {
        match self {
            Self::Lv2v(j) => j.cancellation_token(),
            Self::Scope(j) => j.cancellation_token(),
        }
    }

    /// Why the job ended, when it ended on its own.
    pub(crate) fn failure(&self) -> Option<Failure> {
        let (code, detail, other) = match self {
            Self::Lv2v(j) => match j.end_reason() {
                None | Some(EndReason::Closed) => return None,
                Some(EndReason::BudgetExhausted) => ("budget_exhausted", j.end_detail(), ""),
                Some(EndReason::PaymentsWedged) => ("payments_wedged", None, WEDGED),
                Some(EndReason::PriceExceeded) => ("price_exceeded", None, PRICE),
                Some(_) => ("job_ended", None, "the orchestrator ended the session"),
            },
            Self::Scope(j) => match j.funding_end()? {
                FundingEnd::BudgetExhausted => ("budget_exhausted", j.funding_detail(), ""),
                FundingEnd::Wedged => ("payments_wedged", None, WEDGED),
                FundingEnd::PriceExceeded => ("price_exceeded", None, PRICE),
                _ => ("job_ended", None, "the orchestrator ended the session"),
            },
        };
        let message = detail.unwrap_or_else(|| match code {
            "budget_exhausted" => "a spending budget ran out".into(),
            _ => other.into(),
        });
        Some(Failure { code, message })
    }

    /// Stops payments and the session, deletes the channels, bounded in time.
    pub(crate) async fn close(self) {
        match self {
            Self::Lv2v(j) => j.close().await,
            Self::Scope(j) => j.close().await,
        }
    }
}

const WEDGED: &str = "the remote signer answers 482 (no tickets) cycle after cycle: \
     payments are wedged and the orchestrator would release the session";
const PRICE: &str = "the price went above what the signer or the ceiling allows";

/// Why a job ended on its own: a stable code for clients and the details for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// `budget_exhausted`, `payments_wedged`, `price_exceeded`, or `job_ended`.
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A caller that goes away mid-start (its future dropped after the first poll) must not
    /// leave a running job behind: the start finishes in its own task and closes the job.
    #[tokio::test]
    async fn a_job_whose_caller_left_during_start_is_closed() {
        let devnet = lpgw_devnet::Devnet::start(lpgw_devnet::DevnetConfig {
            tls: false,
            models: vec!["relay".into()],
            ..lpgw_devnet::DevnetConfig::default()
        })
        .await
        .expect("devnet");
        let gw = Gateway::new(Settings {
            orchestrators: vec![devnet.orchestrator_url().to_owned()],
            ..Settings::default()
        })
        .expect("gateway");
        let backend = JobBackend::new(gw);
        let spec = StartSpec {
            model_id: "relay".into(),
            params: None,
            request_id: None,
            stream_id: None,
            orchestrator_url: None,
            wallet: Wallet::default(),
        };
        let dropped = tokio::time::timeout(Duration::ZERO, backend.start(&spec)).await;
        assert!(dropped.is_err(), "the start finished on its first poll");
        let orphans = backend.orphans_closed.clone();
        tokio::time::timeout(Duration::from_secs(15), async {
            while orphans.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the orphaned job was never closed");
        assert_eq!(
            devnet.active_sessions(),
            0,
            "the orphaned session is still running"
        );
        assert_eq!(devnet.capacity_in_use("relay"), 0);
        // Its slot is free for the next caller.
        let job = tokio::time::timeout(Duration::from_secs(15), backend.start(&spec))
            .await
            .expect("second start timed out")
            .expect("second start");
        assert_eq!(devnet.active_sessions(), 1);
        tokio::time::timeout(Duration::from_secs(15), job.close())
            .await
            .expect("close timed out");
        devnet.shutdown().await;
    }

    #[test]
    fn scope_flows_wrap_parameters_and_lv2v_does_not() {
        let p = json!({"prompt": "a cat"});
        assert_eq!(
            wrap_params(Flow::LiveRunner, p.clone()),
            json!({"type": "parameters", "params": {"prompt": "a cat"}})
        );
        assert_eq!(wrap_params(Flow::Lv2v, p.clone()), p);
        let shaped = json!({"type": "parameters", "params": {"prompt": "a cat"}});
        assert_eq!(wrap_params(Flow::LiveRunner, shaped.clone()), shaped);
        assert_eq!(wrap_params(Flow::Serverless, shaped.clone()), shaped);
    }
}
