//! Starting and stopping a devnet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use lpgw_trickle::server::{ServerConfig, TrickleServer};
use rand::RngCore as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DevnetConfig, FaultControl};
use crate::error::DevnetError;
use crate::keys::{Keys, checksum_address, parse_hex};
use crate::orch::live::{self, Live};
use crate::orch::{self, Orch};
use crate::serve;
use crate::signer::{self, Signer};

/// How long [`DevnetHandle::shutdown`] waits for sessions and connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Entry point: [`Devnet::start`].
#[derive(Debug)]
pub struct Devnet;

impl Devnet {
    /// Binds the listeners and starts the orchestrator (and the signer when asked).
    /// Must be called inside a Tokio runtime.
    pub async fn start(cfg: DevnetConfig) -> Result<DevnetHandle, DevnetError> {
        if cfg.models.is_empty() {
            return Err(DevnetError::Config("no models".into()));
        }
        if let Some(p) = cfg.price
            && (p.per_unit < 0 || p.pixels_per_unit <= 0)
        {
            return Err(DevnetError::Config(
                "price must be >= 0 per a positive number of units".into(),
            ));
        }
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| DevnetError::Bind { addr, source })
        };
        let listener = bind(cfg.listen).await?;
        let local = listener.local_addr().map_err(|source| DevnetError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let host = cfg.public_host.clone().unwrap_or_else(|| {
            let ip = if local.ip().is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                local.ip()
            };
            ip.to_string()
        });
        let tls = if cfg.tls {
            Some(serve::TlsSlot::new(&host)?)
        } else {
            None
        };
        let scheme = if cfg.tls { "https" } else { "http" };
        let service_uri = format!("{scheme}://{}", serve::host_port(&host, local.port()));

        // The runner reaches the trickle server over plain loopback HTTP.
        let internal_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let internal = bind(internal_addr).await?;
        let internal_port = internal
            .local_addr()
            .map_err(|source| DevnetError::Bind {
                addr: internal_addr,
                source,
            })?
            .port();
        let runner_base = format!("http://127.0.0.1:{internal_port}/ai/trickle");
        let live_runner_base = format!("http://127.0.0.1:{internal_port}");

        // go-livepeer sweeps every minute for a 5-minute idle timeout; shorter timeouts
        // (tests) sweep proportionally more often.
        let trickle = TrickleServer::new(ServerConfig {
            idle_timeout: cfg.trickle_idle_timeout,
            sweep_interval: (cfg.trickle_idle_timeout / 5)
                .clamp(Duration::from_millis(10), Duration::from_secs(60)),
            ..ServerConfig::default()
        });
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let keys = Keys::new(secret);
        let faults = FaultControl::new(cfg.faults.clone(), cfg.price, cfg.seed);
        // A live-runner-only orchestrator has no AI-worker LV2V capacity.
        let mut cfg = cfg;
        if cfg.live.live_only {
            cfg.capacity = 0;
        }
        let orch = Arc::new(Orch::new(
            &cfg,
            keys.clone(),
            service_uri.clone(),
            runner_base,
            trickle.clone(),
            faults.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        let sweeper = trickle.start_sweeper();
        let live = Live::new(orch.clone(), cfg.live.clone(), live_runner_base.clone());
        live::start(&live).await?;

        serve::spawn(
            listener,
            orch::router(orch.clone()).merge(live::public_router(live.clone())),
            tls.clone(),
            shutdown.clone(),
            &tracker,
        );
        serve::spawn(
            internal,
            Router::new()
                .nest("/ai/trickle", trickle.router())
                .merge(live::internal_router(live.clone())),
            None,
            shutdown.clone(),
            &tracker,
        );

        let signer_url = if cfg.signer {
            let l = bind(cfg.signer_listen).await?;
            let a = l.local_addr().map_err(|source| DevnetError::Bind {
                addr: cfg.signer_listen,
                source,
            })?;
            let ip = if a.ip().is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                a.ip()
            };
            let mut discovery = vec![(service_uri.clone(), cfg.models.clone())];
            discovery.extend(
                cfg.discovery_extra
                    .iter()
                    .map(|u| (u.clone(), cfg.models.clone())),
            );
            let source_live = live.clone();
            let source = signer::RunnerSource(Arc::new(move || source_live.discovery_runners()));
            let s =
                Arc::new(Signer::new(keys.clone(), faults.clone(), discovery).with_runners(source));
            serve::spawn(l, signer::router(s), None, shutdown.clone(), &tracker);
            Some(format!(
                "http://{}",
                serve::host_port(&ip.to_string(), a.port())
            ))
        } else {
            None
        };
        tracing::debug!(orchestrator = %service_uri, signer = ?signer_url, "devnet started");
        Ok(DevnetHandle {
            orchestrator_url: service_uri,
            signer_url,
            tls,
            signer_address: checksum_address(&keys.address("signer")),
            faults,
            orch,
            live,
            live_runner_base,
            trickle,
            sweeper,
            shutdown,
            tracker,
        })
    }
}

/// A running devnet. Call [`shutdown`](Self::shutdown) to stop it cleanly; dropping it
/// cancels everything without waiting.
#[derive(Debug)]
#[must_use = "dropping the handle stops the devnet"]
pub struct DevnetHandle {
    orchestrator_url: String,
    signer_url: Option<String>,
    tls: Option<Arc<serve::TlsSlot>>,
    signer_address: String,
    faults: FaultControl,
    orch: Arc<Orch>,
    live: Arc<Live>,
    live_runner_base: String,
    trickle: TrickleServer,
    sweeper: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl DevnetHandle {
    /// The orchestrator's service URI (`https://host:port`, or `http://` without TLS): the
    /// gRPC target and the base of `/live-video-to-video`, `/payment` and `/ai/trickle/`.
    pub fn orchestrator_url(&self) -> &str {
        &self.orchestrator_url
    }

    /// The remote signer's base URL, when started.
    pub fn signer_url(&self) -> Option<&str> {
        self.signer_url.as_deref()
    }

    /// The DER of the certificate the orchestrator presents now (self-signed, regenerated
    /// at every start and by [`Self::rotate_certificate`]).
    pub fn certificate_der(&self) -> Option<Vec<u8>> {
        self.tls.as_ref().map(|t| t.cert_der())
    }

    /// Regenerates the orchestrator's certificate, as a restart does: open connections are
    /// dropped and new ones see the new certificate. Returns its DER; `None` without TLS.
    pub fn rotate_certificate(&self) -> Option<Vec<u8>> {
        self.tls.as_ref()?.rotate().ok()
    }

    /// The signer's payer address (EIP-55).
    pub fn signer_address(&self) -> &str {
        &self.signer_address
    }

    /// Live control of faults, price and capacity.
    pub fn faults(&self) -> &FaultControl {
        &self.faults
    }

    /// LV2V sessions running now.
    pub fn active_sessions(&self) -> usize {
        self.orch.session_count()
    }

    /// LV2V slots of `model` in use now.
    pub fn capacity_in_use(&self, model: &str) -> u32 {
        self.orch.capacity().in_use(model)
    }

    /// Wei credited and not yet metered for (`sender` hex address, `manifest_id`).
    pub fn balance(&self, sender: &str, manifest_id: &str) -> u128 {
        parse_hex(sender).map_or(0, |s| {
            self.orch.ledger().balance(&(s, manifest_id.to_string()))
        })
    }

    /// Payments the orchestrator accepted and their ticket value in wei, as
    /// `GET /devnet/ledger` reports them.
    pub fn paid(&self) -> (u64, u128) {
        self.orch.receipts().totals()
    }

    /// Whether a trickle channel exists (e.g. `"<manifest>-out"`).
    pub fn has_channel(&self, name: &str) -> bool {
        self.trickle.has_channel(name)
    }

    /// The runner-facing base URL (go-livepeer `-liveRunnerAddr`): plain HTTP on loopback,
    /// serving `/runners/...`, `/runner/...` and `/ai/trickle/`. Runners may also use the
    /// public [`orchestrator_url`](Self::orchestrator_url).
    pub fn runner_url(&self) -> &str {
        &self.live_runner_base
    }

    /// The bootstrap secret runners register with (`Authorization` of the first heartbeat).
    pub fn orch_secret(&self) -> Option<&str> {
        self.live.cfg.orch_secret.as_deref()
    }

    /// The route (`/apps/{route}/...`) of the first built-in persistent Scope runner, if any.
    pub fn scope_runner(&self) -> Option<String> {
        self.scope_runners().into_iter().next()
    }

    /// The routes of every built-in persistent Scope runner, in registration order (the first
    /// is [`Self::scope_runner`]).
    pub fn scope_runners(&self) -> Vec<String> {
        self.live
            .scope_routes
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Active sessions on every built-in Scope runner.
    pub fn scope_sessions(&self) -> Vec<String> {
        self.scope_runners()
            .iter()
            .flat_map(|r| self.live_sessions(r))
            .collect()
    }

    /// Active sessions of a live runner, oldest first (empty for an unknown runner).
    pub fn live_sessions(&self, route: &str) -> Vec<String> {
        self.live.sessions_of(route)
    }

    /// Removes a live runner at once, as heartbeat expiry or a failed health check would:
    /// its sessions are released and their channels closed. Returns whether it existed.
    pub fn remove_live_runner(&self, route: &str) -> bool {
        self.live.remove_runner(route)
    }

    /// Releases one live-runner session as a runner-side stop would. Returns whether it
    /// existed.
    pub fn release_live_session(&self, route: &str, session_id: &str) -> bool {
        self.live.release(route, session_id)
    }

    /// Sets a live runner's capacity (0 makes it full; a dynamic runner's next heartbeat
    /// sets its own again). Returns whether the runner exists.
    pub fn set_live_runner_capacity(&self, route: &str, capacity: u32) -> bool {
        self.live.reg().set_capacity(route, capacity)
    }

    /// Stops accepting, ends every session (deleting its channels), and waits up to a few
    /// seconds for connections and tasks to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.trickle.shutdown();
        self.sweeper.abort();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("devnet tasks still running after shutdown grace");
        }
    }
}

impl Drop for DevnetHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.trickle.shutdown();
        self.sweeper.abort();
    }
}
