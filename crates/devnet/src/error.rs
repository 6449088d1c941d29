//! Devnet errors.

/// Why a devnet could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevnetError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The self-signed certificate or TLS configuration could not be made.
    #[error("tls setup failed: {0}")]
    Tls(String),
    /// The configuration is unusable.
    #[error("invalid devnet configuration: {0}")]
    Config(String),
}
