//! One listener serving an axum router over HTTP/1.1 and HTTP/2, with TLS (ALPN `h2`,
//! `http/1.1`) or plain with h2c by prior knowledge, as go-livepeer's orchestrator does.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::DevnetError;

/// A TLS handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A freshly generated self-signed certificate and its TLS acceptor.
pub(crate) struct Tls {
    pub(crate) cert_der: Vec<u8>,
    pub(crate) acceptor: TlsAcceptor,
}

/// The TLS identity a listener presents. It can be regenerated while the devnet runs, as an
/// orchestrator that restarts makes a new certificate (server/cert.go): connections made
/// with the old one are dropped, and new ones get the new certificate.
pub(crate) struct TlsSlot {
    host: String,
    current: std::sync::Mutex<(Tls, CancellationToken)>,
}

impl std::fmt::Debug for TlsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSlot")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl TlsSlot {
    pub(crate) fn new(host: &str) -> Result<Arc<Self>, DevnetError> {
        Ok(Arc::new(Self {
            host: host.to_owned(),
            current: std::sync::Mutex::new((self_signed(host)?, CancellationToken::new())),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Tls, CancellationToken)> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The certificate presented now (DER).
    pub(crate) fn cert_der(&self) -> Vec<u8> {
        self.lock().0.cert_der.clone()
    }

    /// The acceptor for a new connection, and the token that ends it on rotation.
    fn acceptor(&self) -> (TlsAcceptor, CancellationToken) {
        let g = self.lock();
        (g.0.acceptor.clone(), g.1.clone())
    }

    /// A new certificate from now on; connections made with the old one are dropped.
    pub(crate) fn rotate(&self) -> Result<Vec<u8>, DevnetError> {
        let fresh = self_signed(&self.host)?;
        let der = fresh.cert_der.clone();
        let old = std::mem::replace(&mut *self.lock(), (fresh, CancellationToken::new()));
        old.1.cancel();
        Ok(der)
    }
}

/// Makes a self-signed ECDSA P-256 CA certificate for `host` (server/cert.go: regenerated at
/// every start, `IsCA`).
pub(crate) fn self_signed(host: &str) -> Result<Tls, DevnetError> {
    let tls_err = |e: &dyn std::fmt::Display| DevnetError::Tls(e.to_string());
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| tls_err(&e))?;
    let mut names = vec![host.to_string()];
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| tls_err(&e))?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Livepeer");
    let cert = params.self_signed(&key).map_err(|e| tls_err(&e))?;
    let cert_der = cert.der().to_vec();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key_der)
        .map_err(|e| tls_err(&e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        cert_der,
        acceptor: TlsAcceptor::from(Arc::new(cfg)),
    })
}

/// Formats `host:port` for a URL (brackets around IPv6).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// Accepts connections until `shutdown`, serving each on its own task in `tracker`.
pub(crate) fn spawn(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<TlsSlot>>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let conns = tracker.clone();
    tracker.spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let tls = tls.clone();
            let shutdown = shutdown.clone();
            conns.spawn(async move {
                match tls {
                    Some(slot) => {
                        let (acceptor, rotated) = slot.acceptor();
                        let Ok(Ok(s)) =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        else {
                            tracing::debug!(%peer, "tls handshake failed");
                            return;
                        };
                        tokio::select! {
                            () = serve_conn(TokioIo::new(s), router, shutdown) => {}
                            // The certificate was regenerated: this connection is from the
                            // old process, as far as clients can tell.
                            () = rotated.cancelled() => {}
                        }
                    }
                    None => serve_conn(TokioIo::new(stream), router, shutdown).await,
                }
            });
        }
    });
}

async fn serve_conn<I>(io: I, router: Router, shutdown: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::trace!(error = %e, "connection ended with error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}
