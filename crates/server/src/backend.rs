//! How jobs are started and driven: the one place that knows the gateway's job types.
//! Every start goes through the gateway's routing policy ([`Gateway::start`]): live-runner
//! models (default `scope`) through discovery → reserve → pay, others through the legacy
//! LV2V flow, with fallbacks as the gateway settings say.

use lpgw_bridge::HttpClient;
use lpgw_gateway::{Error as GwError, Gateway, Job, Route, Settings, StartRequest, Wallet};
use serde_json::Value;
use tracing::Instrument as _;

/// Which start path served a job (the API's `flow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
pub(crate) enum Flow {
    /// A live runner's session (`/discovery`, `/apps/{runner}/session`).
    #[serde(rename = "live-runner")]
    LiveRunner,
    /// The legacy AI-worker flow (`GetOrchestrator`, `/live-video-to-video`).
    #[serde(rename = "lv2v")]
    Lv2v,
    /// A serverless app.
    #[serde(rename = "serverless")]
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

    /// The flow of the route that started a job.
    pub(crate) fn of(route: Route) -> Self {
        match route {
            Route::Legacy => Self::Lv2v,
            Route::Serverless => Self::Serverless,
            _ => Self::LiveRunner,
        }
    }

    pub(crate) const ALL: [Self; 3] = [Self::LiveRunner, Self::Lv2v, Self::Serverless];

    /// Whether the job's stream was started by the gateway (the Scope flows), so its media
    /// is ready when the start returns.
    pub(crate) fn speaks_scope(self) -> bool {
        matches!(self, Self::LiveRunner | Self::Serverless)
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
    pub(crate) async fn start(&self, spec: &StartSpec) -> Result<Job, GwError> {
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
        rx.await
            .map_err(|_| GwError::Config("job start task ended without an answer".into()))?
    }
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

impl MediaEndpoints {
    /// Where `job`'s media goes; `None` before its stream has started.
    pub(crate) fn of(job: &Job) -> Option<Self> {
        job.media().map(|m| Self {
            publish_url: m.input,
            subscribe_url: m.output,
            http: job.media_client(),
        })
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
}
