//! Small helpers around reqwest: per-target clients under the TLS policy, error text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lpgw_trickle::client::{HttpClient, TlsPolicy};
use url::Url;

use crate::config::TlsMode;
use crate::error::Error;
use crate::tls::{self, PinStore};

/// `host:port` of a URL, the key of TLS pins and client caches.
pub(crate) fn target(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    // `host_str` already brackets IPv6 literals.
    format!("{host}:{port}")
}

/// HTTP clients for orchestrators, one per `host:port` so each gets its own TLS pin.
#[derive(Debug)]
pub(crate) struct Clients {
    mode: TlsMode,
    pins: Arc<PinStore>,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    /// Trickle clients per `host:port`, under the same TLS policy and pins.
    trickle: Mutex<HashMap<String, HttpClient>>,
}

impl Clients {
    pub(crate) fn new(mode: TlsMode, pins: Arc<PinStore>) -> Self {
        Self {
            mode,
            pins,
            clients: Mutex::default(),
            trickle: Mutex::default(),
        }
    }

    /// Whether a certificate is pinned for `target` (`host:port`).
    #[cfg(test)]
    pub(crate) fn is_pinned(&self, target: &str) -> bool {
        self.pins.is_pinned(target)
    }

    /// The trickle client for a channel URL's origin, under the gateway's TLS policy: with
    /// trust on first use, a channel on an orchestrator whose certificate is pinned must
    /// present that same certificate. HTTP/1.1 only, as the reference trickle clients.
    pub(crate) fn trickle_for(&self, url: &Url) -> Result<HttpClient, Error> {
        let key = target(url);
        let mut clients = self.trickle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let config = tls::client_config(self.mode, &self.pins, &key, &[b"http/1.1"])?;
        let client = HttpClient::new(TlsPolicy::Custom(Arc::new(config)))
            .map_err(|e| Error::Tls(e.to_string()))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The client for `url`'s origin, built on first use.
    pub(crate) fn for_url(&self, url: &Url) -> Result<reqwest::Client, Error> {
        let key = target(url);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let config = tls::client_config(self.mode, &self.pins, &key, &[b"h2", b"http/1.1"])?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// A reqwest error with its whole source chain, e.g. `error sending request: connection refused`.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let text = e.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = e.source();
    }
    s
}

/// The start of a response body as text, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_include_default_ports() {
        assert_eq!(
            target(&Url::parse("https://o.example").unwrap()),
            "o.example:443"
        );
        assert_eq!(
            target(&Url::parse("http://127.0.0.1:8935/x").unwrap()),
            "127.0.0.1:8935"
        );
        assert_eq!(target(&Url::parse("https://[::1]:9/").unwrap()), "[::1]:9");
    }

    /// The job's trickle channels obey the pins GetOrchestrator made: a channel on a host
    /// pinned to another certificate is refused, a fresh pin store accepts it.
    #[tokio::test]
    async fn trickle_clients_obey_the_gateway_pins() {
        use lpgw_devnet::{Devnet, DevnetConfig};
        use lpgw_trickle::client::{Subscriber, SubscriberConfig};
        use lpgw_trickle::follow::FollowConfig;
        use rustls::pki_types::CertificateDer;

        let step = std::time::Duration::from_secs(20);
        let start = || tokio::time::timeout(step, Devnet::start(DevnetConfig::default()));
        let a = start().await.unwrap().unwrap();
        let b = start().await.unwrap().unwrap();
        let url = Url::parse(a.orchestrator_url()).unwrap();
        let channel = format!("{}/ai/trickle/none", a.orchestrator_url());
        let read = |http: HttpClient| {
            let mut sub = Subscriber::new(
                &channel,
                SubscriberConfig {
                    http: Some(http),
                    follow: FollowConfig {
                        max_retries: 1,
                        ..FollowConfig::default()
                    },
                    ..SubscriberConfig::default()
                },
            )
            .unwrap();
            async move {
                tokio::time::timeout(step, sub.next_segment())
                    .await
                    .unwrap()
            }
        };

        let pins = Arc::new(PinStore::default());
        let b_cert = CertificateDer::from(b.certificate_der().unwrap().to_vec());
        assert!(pins.check_or_pin(&target(&url), &b_cert));
        let clients = Clients::new(TlsMode::TrustOnFirstUse, pins);
        assert!(read(clients.trickle_for(&url).unwrap()).await.is_err());

        let fresh = Clients::new(TlsMode::TrustOnFirstUse, Arc::default());
        // A missing channel is the end of the stream, not an error: TLS went through.
        assert!(
            read(fresh.trickle_for(&url).unwrap())
                .await
                .unwrap()
                .is_none()
        );
        a.shutdown().await;
        b.shutdown().await;
    }

    #[test]
    fn snippet_trims_and_bounds() {
        assert_eq!(
            snippet(b" insufficient capacity\n"),
            "insufficient capacity"
        );
        assert_eq!(snippet(&[b'a'; 400]).chars().count(), 301);
    }
}
