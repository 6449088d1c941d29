//! TLS policies for orchestrator connections: trust on first use, no verification, or the
//! Mozilla roots.
//!
//! Orchestrators serve a self-signed certificate regenerated at every start (spec §7), so the
//! default pins the first certificate seen per `host:port` and refuses a different one later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tracing::{debug, warn};

use crate::config::TlsMode;
use crate::error::Error;

/// The error text a pin mismatch produces; used to recognise it in handshake failures.
pub(crate) const PIN_MISMATCH: &str = "certificate differs from the one pinned on first use";

/// Certificates pinned on first use, keyed by `host:port`. Shared by every connection of one
/// [`Gateway`](crate::Gateway).
#[derive(Debug, Default)]
pub(crate) struct PinStore {
    pins: Mutex<HashMap<String, CertificateDer<'static>>>,
}

impl PinStore {
    /// Checks `cert` against the pin for `target`, pinning it if there is none yet.
    pub(crate) fn check_or_pin(&self, target: &str, cert: &CertificateDer<'_>) -> bool {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        match pins.get(target) {
            Some(pinned) => pinned.as_ref() == cert.as_ref(),
            None => {
                debug!(target, "pinning certificate on first use");
                pins.insert(target.to_owned(), cert.clone().into_owned());
                true
            }
        }
    }

    /// Drops the pin for `target` (after an orchestrator restart regenerated its cert).
    pub(crate) fn forget(&self, target: &str) {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        if pins.remove(target).is_some() {
            warn!(
                target,
                "orchestrator certificate changed; dropping the pinned one"
            );
        }
    }

    /// Whether a certificate is pinned for `target`.
    #[cfg(test)]
    pub(crate) fn is_pinned(&self, target: &str) -> bool {
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(target)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a client config for one `host:port` target under `mode`, advertising `alpn`.
pub(crate) fn client_config(
    mode: TlsMode,
    pins: &Arc<PinStore>,
    target: &str,
    alpn: &[&[u8]],
) -> Result<ClientConfig, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = match mode {
        TlsMode::SystemRoots => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsMode::TrustOnFirstUse | TlsMode::SkipVerification => {
            let verifier = PinningVerifier {
                algorithms: provider.signature_verification_algorithms,
                pin: (mode == TlsMode::TrustOnFirstUse).then(|| (pins.clone(), target.to_owned())),
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Accepts any certificate (skip mode) or the one pinned for its target (TOFU mode). Handshake
/// signatures are always verified, so the peer must hold the certificate's key.
#[derive(Debug)]
struct PinningVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    pin: Option<(Arc<PinStore>, String)>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pin {
            Some((store, target)) if !store.check_or_pin(target, end_entity) => {
                Err(rustls::Error::General(PIN_MISMATCH.into()))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_certificate_is_pinned_per_target() {
        let store = PinStore::default();
        let a = CertificateDer::from(vec![1, 2, 3]);
        let b = CertificateDer::from(vec![4, 5, 6]);
        assert!(store.check_or_pin("h:1", &a));
        assert!(store.check_or_pin("h:1", &a));
        assert!(!store.check_or_pin("h:1", &b));
        // Another port of the same host is another orchestrator.
        assert!(store.check_or_pin("h:2", &b));
        store.forget("h:1");
        assert!(!store.is_pinned("h:1"));
        assert!(store.check_or_pin("h:1", &b));
    }
}
