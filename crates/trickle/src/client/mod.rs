//! Async trickle clients over HTTP: [`Publisher`] and [`Subscriber`].
//!
//! Both keep the next request open ahead of time ("preconnect"), as the reference clients do,
//! so a segment's first byte never waits for a TCP/TLS handshake or for the server to set the
//! segment up. Sequencing and retry decisions live in the pure [`follow`](crate::follow) and
//! [`publish`](crate::publish) modules; this module only moves bytes.
//!
//! TLS: by default each client verifies certificates against the Mozilla roots; set
//! `insecure_tls`, or inject an [`HttpClient`] built under a [`TlsPolicy`] (e.g. a rustls
//! configuration that pins an orchestrator's self-signed certificate).
//!
//! ```no_run
//! # async fn demo() -> Result<(), lpgw_trickle::TrickleError> {
//! use bytes::Bytes;
//! use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
//!
//! let url = "http://127.0.0.1:8935/ai/trickle/stream-out";
//! let mut publisher = Publisher::new(url, "video/MP2T", PublisherConfig::default())?;
//! let mut segment = publisher.next_segment().await?;
//! segment.write(Bytes::from_static(b"first bytes")).await?;
//! segment.write(Bytes::from_static(b"more bytes")).await?;
//! segment.finish().await?;
//!
//! let mut subscriber = Subscriber::new(url, SubscriberConfig::default())?;
//! while let Some(mut segment) = subscriber.next_segment().await? {
//!     while let Some(chunk) = segment.chunk().await? {
//!         println!("segment {}: {} bytes", segment.seq(), chunk.len());
//!     }
//! }
//! publisher.close().await?;
//! # Ok(())
//! # }
//! ```

mod publisher;
mod subscriber;

pub use publisher::{Publisher, PublisherConfig, PublisherStatsHandle, SegmentWriter};
pub use subscriber::{
    SegmentReader, Subscriber, SubscriberConfig, SubscriberStats, SubscriberStatsHandle,
};

use std::sync::Arc;

use crate::error::TrickleError;

/// How a trickle client checks the server's TLS certificate.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum TlsPolicy {
    /// Verify against the Mozilla root store (the default).
    #[default]
    Verify,
    /// Accept any certificate, as go-livepeer's gateway does for orchestrator channels.
    Insecure,
    /// Use this rustls configuration as is: e.g. a verifier that pins the certificate seen
    /// when the orchestrator was first contacted. Its ALPN list decides between HTTP/1.1 and
    /// HTTP/2; leave it empty (or `http/1.1` only) for the reference clients' HTTP/1.1.
    Custom(Arc<rustls::ClientConfig>),
}

/// An HTTP client for trickle channels, built once under a [`TlsPolicy`] and shared by any
/// number of publishers and subscribers (they then share its connection pool too).
///
/// Set it as [`PublisherConfig::http`] or [`SubscriberConfig::http`]; cloning is cheap.
#[derive(Clone, Debug)]
pub struct HttpClient(reqwest::Client);

impl HttpClient {
    /// Builds a client under `policy`.
    ///
    /// No overall request timeout: a segment may legitimately stay open for as long as its
    /// producer keeps streaming. Stalls are bounded per write and per preconnect instead.
    pub fn new(policy: TlsPolicy) -> Result<Self, TrickleError> {
        let builder = reqwest::Client::builder()
            // trickle_publisher.go: IdleConnTimeout 1 min.
            .pool_idle_timeout(std::time::Duration::from_secs(60));
        let builder = match policy {
            TlsPolicy::Verify => builder,
            TlsPolicy::Insecure => builder.danger_accept_invalid_certs(true),
            TlsPolicy::Custom(config) => builder.use_preconfigured_tls((*config).clone()),
        };
        builder.build().map(Self).map_err(TrickleError::from)
    }
}

/// The client a publisher or subscriber uses: the injected one, or one made for it.
fn http_client(
    injected: Option<&HttpClient>,
    insecure_tls: bool,
) -> Result<reqwest::Client, TrickleError> {
    if let Some(c) = injected {
        return Ok(c.0.clone());
    }
    let policy = if insecure_tls {
        TlsPolicy::Insecure
    } else {
        TlsPolicy::Verify
    };
    Ok(HttpClient::new(policy)?.0)
}

/// Normalises a channel URL: it must be absolute http(s) and lose any trailing slash.
fn channel_url(url: &str) -> Result<String, TrickleError> {
    let trimmed = url.trim().trim_end_matches('/');
    let ok = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        && reqwest::Url::parse(trimmed).is_ok();
    if !ok {
        return Err(TrickleError::InvalidUrl(
            "expected an absolute http(s) channel url".into(),
        ));
    }
    Ok(trimmed.to_owned())
}

/// The channel name (last path element) for logs: the full URL is a bearer capability.
fn channel_name(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Whether a response carries `Lp-Trickle-Closed`.
fn is_closed(headers: &http::HeaderMap) -> bool {
    headers.contains_key(crate::wire::HEADER_CLOSED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_urls_are_validated_and_trimmed() {
        assert_eq!(
            channel_url("http://h:1/ai/trickle/x/").unwrap(),
            "http://h:1/ai/trickle/x"
        );
        assert!(channel_url("ftp://h/x").is_err());
        assert!(channel_url("/ai/trickle/x").is_err());
        assert_eq!(channel_name("http://h/ai/trickle/abc"), "abc");
    }
}
