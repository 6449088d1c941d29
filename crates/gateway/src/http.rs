//! Small helpers around reqwest: per-target clients under the TLS policy, error text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
}

impl Clients {
    pub(crate) fn new(mode: TlsMode, pins: Arc<PinStore>) -> Self {
        Self {
            mode,
            pins,
            clients: Mutex::default(),
        }
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

    #[test]
    fn snippet_trims_and_bounds() {
        assert_eq!(
            snippet(b" insufficient capacity\n"),
            "insufficient capacity"
        );
        assert_eq!(snippet(&[b'a'; 400]).chars().count(), 301);
    }
}
