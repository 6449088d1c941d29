//! `GetOrchestrator` over HTTP/2: TLS (under the gateway's [`TlsMode`]) or h2c for `http://`.

use std::sync::Arc;
use std::time::Duration;

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
}

/// Calls `GetOrchestrator` on `url`. In trust-on-first-use mode a certificate that changed
/// since it was pinned (the orchestrator restarted) is re-pinned once, as the reference does.
pub(crate) async fn get_orchestrator(
    cfg: &RpcConfig,
    url: &Url,
    request: OrchestratorRequest,
) -> Result<OrchestratorInfo, RejectReason> {
    match call(cfg, url, request.clone()).await {
        Err(RejectReason::Unreachable(msg))
            if cfg.tls == TlsMode::TrustOnFirstUse && msg.contains(PIN_MISMATCH) =>
        {
            warn!(orchestrator = %url, "certificate changed since first use; re-pinning");
            cfg.pins.forget(&target(url));
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
    let origin: http::Uri = origin(url)
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
        Err(status) => Err(classify(&status)),
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
