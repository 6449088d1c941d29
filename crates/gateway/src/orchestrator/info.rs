//! `GetOrchestrator` over HTTP/2: TLS (under the gateway's [`TlsMode`]) or h2c for `http://`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lpgw_proto::net::orchestrator_client::OrchestratorClient;
use lpgw_proto::{OrchestratorInfo, OrchestratorRequest};
use tracing::{debug, warn};
use url::Url;

use crate::config::TlsMode;
use crate::discovery::origin;
use crate::error::RejectReason;
use crate::http::{describe, target};
use crate::tls::{self, PIN_MISMATCH, PinStore};

/// Connection settings for GetOrchestrator calls.
#[derive(Debug, Clone)]
pub(crate) struct RpcConfig {
    pub(crate) tls: TlsMode,
    pub(crate) pins: Arc<PinStore>,
    pub(crate) connect_timeout: Duration,
    pub(crate) call_timeout: Duration,
    /// HTTP/2 clients per orchestrator origin, so later calls reuse the connection.
    pub(crate) pool: RpcPool,
}

type RpcClient = Client<HttpsConnector<HttpConnector>, tonic::body::Body>;

/// GetOrchestrator clients per origin. A gateway probes the same orchestrators at every job
/// start; keeping their HTTP/2 connections saves a TCP and TLS handshake per probe. Each new
/// connection is still checked against the pins (the verifier consults the pin store on
/// every handshake).
#[derive(Debug, Clone, Default)]
pub(crate) struct RpcPool(Arc<Mutex<HashMap<String, RpcClient>>>);

impl RpcPool {
    fn client(&self, cfg: &RpcConfig, url: &Url, key: &str) -> Result<RpcClient, RejectReason> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(key) {
            return Ok(c.clone());
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        // hyper-rustls sets ALPN (h2) itself and refuses a config that already has some.
        let tls = tls::client_config(cfg.tls, &cfg.pins, &target(url), &[])
            .map_err(|e| RejectReason::Unreachable(e.to_string()))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        // `http2_only` gives h2 over TLS (ALPN) and prior-knowledge h2c over plain HTTP.
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        map.insert(key.to_owned(), client.clone());
        Ok(client)
    }

    fn contains(&self, key: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// Drops the client for an origin (its connection may be to a restarted server).
    fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Calls `GetOrchestrator` on `url`. In trust-on-first-use mode a certificate that changed
/// since it was pinned (the orchestrator restarted) is re-pinned once, as the reference does.
pub(crate) async fn get_orchestrator(
    cfg: &RpcConfig,
    url: &Url,
    request: OrchestratorRequest,
) -> Result<OrchestratorInfo, RejectReason> {
    let key = origin(url);
    // Clients whose call failed to connect are dropped, so a pooled one last worked.
    let reused = cfg.pool.contains(key.as_str());
    let started = std::time::Instant::now();
    match call(cfg, url, request.clone()).await {
        Err(RejectReason::Unreachable(msg))
            if cfg.tls == TlsMode::TrustOnFirstUse && msg.contains(PIN_MISMATCH) =>
        {
            warn!(orchestrator = %url, "certificate changed since first use; re-pinning");
            cfg.pins.forget(&target(url));
            call(cfg, url, request).await
        }
        // A pooled connection can die with a restarted orchestrator just before use: one
        // quick failure on it earns one attempt on a new connection.
        Err(RejectReason::Unreachable(_)) if reused && started.elapsed() < cfg.connect_timeout => {
            debug!(orchestrator = %url, "pooled connection failed; retrying on a new one");
            call(cfg, url, request).await
        }
        other => other,
    }
}

async fn call(
    cfg: &RpcConfig,
    url: &Url,
    request: OrchestratorRequest,
) -> Result<OrchestratorInfo, RejectReason> {
    let key = origin(url);
    let client = cfg.pool.client(cfg, url, key.as_str())?;
    let origin: http::Uri = key
        .as_str()
        .trim_end_matches('/')
        .parse()
        .map_err(|e| RejectReason::InvalidUrl(format!("{e}")))?;
    let mut grpc = OrchestratorClient::with_origin(client, origin);
    let reply = tokio::time::timeout(cfg.call_timeout, grpc.get_orchestrator(request)).await;
    let Ok(reply) = reply else {
        return Err(RejectReason::Timeout(millis(cfg.call_timeout)));
    };
    match reply {
        Ok(resp) => {
            debug!(orchestrator = %url, "got orchestrator info");
            Ok(resp.into_inner())
        }
        Err(status) => {
            let reason = classify(&status);
            if matches!(reason, RejectReason::Unreachable(_)) {
                cfg.pool.forget(key.as_str());
            }
            Err(reason)
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Maps a gRPC status to a rejection: transport trouble, undecodable replies, or the
/// orchestrator's own refusal (e.g. `OrchestratorCapped`).
fn classify(status: &tonic::Status) -> RejectReason {
    use std::error::Error as _;
    let mut detail = status.message().to_owned();
    if let Some(src) = status.source() {
        let chain = describe(src);
        if !detail.contains(&chain) {
            detail = if detail.is_empty() {
                chain
            } else {
                format!("{detail}: {chain}")
            };
        }
    }
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown
            if status.source().is_some() || detail.contains("transport") =>
        {
            RejectReason::Unreachable(detail)
        }
        tonic::Code::Internal if detail.contains("decode") || detail.contains("protocol error") => {
            RejectReason::InvalidResponse(detail)
        }
        code => RejectReason::Rpc {
            code: format!("{code:?}"),
            message: detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RpcConfig {
        RpcConfig {
            tls: TlsMode::TrustOnFirstUse,
            pins: Arc::default(),
            connect_timeout: Duration::from_secs(3),
            call_timeout: Duration::from_secs(10),
            pool: RpcPool::default(),
        }
    }

    /// Working orchestrators keep their client (and connection) for the next probe; one
    /// that cannot be reached does not stay in the pool.
    #[tokio::test]
    async fn pool_keeps_working_clients_and_drops_unreachable_ones() {
        let step = Duration::from_secs(20);
        let devnet = tokio::time::timeout(
            step,
            lpgw_devnet::Devnet::start(lpgw_devnet::DevnetConfig::default()),
        )
        .await
        .unwrap()
        .unwrap();
        let cfg = config();
        let url = Url::parse(devnet.orchestrator_url()).unwrap();
        let key = origin(&url);
        for _ in 0..2 {
            let info = tokio::time::timeout(
                step,
                get_orchestrator(&cfg, &url, OrchestratorRequest::default()),
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(info.transcoder, devnet.orchestrator_url());
            assert!(cfg.pool.contains(key.as_str()));
        }

        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            Url::parse(&format!("https://{}", l.local_addr().unwrap())).unwrap()
        };
        let r = tokio::time::timeout(
            step,
            get_orchestrator(&cfg, &dead, OrchestratorRequest::default()),
        )
        .await
        .unwrap();
        assert!(matches!(r, Err(RejectReason::Unreachable(_))), "{r:?}");
        assert!(!cfg.pool.contains(origin(&dead).as_str()));
        devnet.shutdown().await;
    }
}
