//! Async trickle clients over HTTP: [`Publisher`] and [`Subscriber`].
//!
//! Both keep the next request open ahead of time ("preconnect"), as the reference clients do,
//! so a segment's first byte never waits for a TCP/TLS handshake or for the server to set the
//! segment up. Sequencing and retry decisions live in the pure [`follow`](crate::follow) and
//! [`publish`](crate::publish) modules; this module only moves bytes.
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

use crate::error::TrickleError;

/// Builds the HTTP client shared by the trickle clients.
///
/// No overall request timeout: a segment may legitimately stay open for as long as its
/// producer keeps streaming. Stalls are bounded per write and per preconnect instead.
fn http_client(insecure_tls: bool) -> Result<reqwest::Client, TrickleError> {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure_tls)
        // trickle_publisher.go: IdleConnTimeout 1 min.
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(TrickleError::from)
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
