//! [`Gateway`]: the SDK's entry point, holding settings, TLS pins and the signer.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use lpgw_proto::{Capabilities, OrchestratorInfo, OrchestratorRequest};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::debug;

use crate::config::Settings;
use crate::discovery::{self, parse_http_url};
use crate::error::{Error, RejectReason, Rejection};
use crate::http::Clients;
use crate::orchestrator::info::{RpcConfig, get_orchestrator};
use crate::orchestrator::selection::{Probe, assess, rank};
use crate::signer::Signer;
use crate::tls::PinStore;

/// State shared by a gateway and the jobs it started.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) settings: Settings,
    /// HTTP and trickle clients under the TLS policy, sharing one pin store with `rpc`.
    pub(crate) clients: Arc<Clients>,
    pub(crate) signer: Option<Arc<Signer>>,
    rpc: RpcConfig,
    /// Runners on cool-down after a failed paid session (see `LiveSettings::cooldown`).
    pub(crate) cooldowns: Arc<std::sync::Mutex<crate::runner::Cooldowns>>,
}

impl Inner {
    /// GetOrchestrator for `url`, signed with the signer's material (or empty offchain).
    pub(crate) async fn fetch_info(
        &self,
        url: &str,
        caps: Option<&Capabilities>,
        ignore_capacity_check: bool,
    ) -> Result<OrchestratorInfo, RejectReason> {
        let parsed = parse_http_url(url).map_err(|e| RejectReason::InvalidUrl(e.to_string()))?;
        let (address, sig) = match &self.signer {
            Some(s) => {
                let m = s
                    .material()
                    .await
                    .map_err(|e| RejectReason::Signer(e.to_string()))?;
                (m.address.clone(), m.sig.clone())
            }
            // Offchain orchestrators accept any address and signature (spec §5.9).
            None => (Vec::new(), Vec::new()),
        };
        let request = OrchestratorRequest {
            address,
            sig,
            capabilities: caps.cloned(),
            ignore_capacity_check,
        };
        get_orchestrator(&self.rpc, &parsed, request).await
    }

    async fn probe(&self, url: String, caps: Option<&Capabilities>) -> Probe {
        let started = Instant::now();
        let result = self.fetch_info(&url, caps, false).await;
        debug!(orchestrator = %url, ok = result.is_ok(), "probed");
        Probe {
            url,
            elapsed: started.elapsed(),
            result,
        }
    }
}

/// Seconds since the Unix epoch, for auth-token expiry checks.
pub(crate) fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// A Livepeer gateway: finds orchestrators, checks them, pays them and starts jobs.
///
/// Cheap to clone; clones share TLS pins and the cached signer material.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

impl Gateway {
    /// Creates a gateway. Fold a token in first with [`Settings::with_token`].
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let pins = Arc::new(PinStore::default());
        let signer = match settings.signer_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => Some(Arc::new(Signer::new(
                url,
                settings.signer_headers.clone(),
                settings.signer_timeout,
            )?)),
            _ => None,
        };
        let rpc = RpcConfig {
            tls: settings.tls,
            pins: pins.clone(),
            connect_timeout: settings.connect_timeout,
            call_timeout: settings.probe_timeout,
            pool: Default::default(),
        };
        let clients = Arc::new(Clients::new(settings.tls, pins));
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                clients,
                signer,
                rpc,
                cooldowns: Arc::default(),
            }),
        })
    }

    /// A gateway that uses only `orchestrators` (no discovery) and otherwise shares
    /// everything with this one: settings, signer, TLS pins, connections and cool-downs.
    /// For a start aimed at one caller-chosen orchestrator: its certificate is pinned in the
    /// same store as every other request's, so a certificate that changes is caught
    /// whichever gateway sees it first.
    pub fn for_orchestrators(&self, orchestrators: Vec<String>) -> Self {
        let mut settings = self.inner.settings.clone();
        settings.orchestrators = orchestrators;
        settings.discovery_url = None;
        Self {
            inner: Arc::new(Inner {
                settings,
                clients: self.inner.clients.clone(),
                signer: self.inner.signer.clone(),
                rpc: self.inner.rpc.clone(),
                cooldowns: self.inner.cooldowns.clone(),
            }),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The orchestrator list, from the configured list or a discovery endpoint, filtered by
    /// discovery capability names such as `live-video-to-video/noop`.
    pub async fn discover(&self, caps: &[String]) -> Result<Vec<String>, Error> {
        discovery::discover_orchestrators(&self.inner.settings, caps).await
    }

    /// Fetches one orchestrator's info (GetOrchestrator), requesting `caps` if given.
    pub async fn orchestrator_info(
        &self,
        url: &str,
        caps: Option<&Capabilities>,
    ) -> Result<OrchestratorInfo, Error> {
        self.inner
            .fetch_info(url, caps, false)
            .await
            .map_err(|reason| {
                Error::Orchestrator(Rejection {
                    url: url.to_owned(),
                    reason,
                })
            })
    }

    /// Probes every orchestrator (bounded concurrency), waits for all, and returns the usable
    /// ones fastest first plus a rejection for each of the others.
    pub async fn probe_all(
        &self,
        urls: &[String],
        caps: Option<&Capabilities>,
    ) -> (Vec<(String, OrchestratorInfo)>, Vec<Rejection>) {
        let n = self.inner.settings.probe_concurrency.max(1);
        let probes: Vec<Probe> = futures::stream::iter(urls.iter().cloned())
            .map(|u| self.inner.probe(u, caps))
            .buffer_unordered(n)
            .collect()
            .await;
        rank(probes, &self.inner.settings.ceiling, unix_now())
    }

    /// Starts probing `urls` and yields usable orchestrators as their answers arrive, which
    /// orders them by response time without waiting for slow or dead ones. Probes run in a
    /// background task (spawned on the current Tokio runtime), so they keep going while the
    /// caller tries a candidate.
    pub fn candidates(&self, urls: Vec<String>, caps: Option<Capabilities>) -> Candidates {
        let n = self.inner.settings.probe_concurrency.max(1);
        let (tx, rx) = mpsc::channel(urls.len().max(1));
        let inner = self.inner.clone();
        let driver = tokio::spawn(async move {
            // One task per probe, so handshakes run on every worker thread rather than one;
            // the fair semaphore starts them in list order. Dropping the set aborts them.
            let permits = Arc::new(tokio::sync::Semaphore::new(n));
            let caps = caps.map(Arc::new);
            let mut probes = tokio::task::JoinSet::new();
            for url in urls {
                let (inner, caps, permits) = (inner.clone(), caps.clone(), permits.clone());
                probes.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    inner.probe(url, caps.as_deref()).await
                });
            }
            while let Some(done) = probes.join_next().await {
                let Ok(p) = done else { continue };
                if tx.send(p).await.is_err() {
                    return;
                }
            }
        });
        Candidates {
            probes: rx,
            driver: driver.abort_handle(),
            ceiling: self.inner.settings.ceiling,
            rejections: Vec::new(),
        }
    }
}

/// Usable orchestrators in the order their answers arrive; see [`Gateway::candidates`].
/// Dropping it cancels the probes still running.
pub struct Candidates {
    probes: mpsc::Receiver<Probe>,
    driver: AbortHandle,
    ceiling: crate::ceiling::Ceiling,
    rejections: Vec<Rejection>,
}

impl std::fmt::Debug for Candidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates")
            .field("rejections", &self.rejections)
            .finish_non_exhaustive()
    }
}

impl Drop for Candidates {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Candidates {
    /// The next usable orchestrator, or `None` when every probe has been judged.
    pub async fn next(&mut self) -> Option<(String, OrchestratorInfo)> {
        while let Some(p) = self.probes.recv().await {
            match p
                .result
                .and_then(|i| assess(&i, &self.ceiling, unix_now()).map(|()| i))
            {
                Ok(info) => return Some((p.url, info)),
                Err(reason) => {
                    debug!(orchestrator = %p.url, %reason, "candidate rejected");
                    self.rejections.push(Rejection { url: p.url, reason });
                }
            }
        }
        None
    }

    /// Records a rejection that happened after selection (e.g. the job start failed).
    pub fn reject(&mut self, url: String, reason: RejectReason) {
        self.rejections.push(Rejection { url, reason });
    }

    /// Every rejection so far, in order.
    pub fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }

    /// Consumes the cursor, returning its rejections.
    pub fn into_rejections(mut self) -> Vec<Rejection> {
        std::mem::take(&mut self.rejections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway made for a caller-chosen orchestrator sees the pins every other request
    /// made, and its own pins are seen by everyone: one store for the whole service.
    #[tokio::test]
    async fn gateways_for_chosen_orchestrators_share_one_pin_store() {
        let d = lpgw_devnet::Devnet::start(lpgw_devnet::DevnetConfig::default())
            .await
            .unwrap();
        let url = d.orchestrator_url().to_owned();
        let target = crate::http::target(&parse_http_url(&url).unwrap());
        let gw = Gateway::new(Settings::default()).unwrap();
        let chosen = gw.for_orchestrators(vec![url.clone()]);
        assert_eq!(chosen.settings().orchestrators, vec![url.clone()]);
        assert!(chosen.settings().discovery_url.is_none());
        assert!(!gw.inner.clients.is_pinned(&target));
        tokio::time::timeout(
            Duration::from_secs(20),
            chosen.orchestrator_info(&url, None),
        )
        .await
        .unwrap()
        .unwrap();
        // Pinned through the chosen gateway, visible to the service's.
        assert!(gw.inner.clients.is_pinned(&target));
        assert!(Arc::ptr_eq(&gw.inner.clients, &chosen.inner.clients));
        assert!(Arc::ptr_eq(&gw.inner.cooldowns, &chosen.inner.cooldowns));
        d.shutdown().await;
    }
}
