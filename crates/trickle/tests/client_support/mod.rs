//! A trickle server on 127.0.0.1:0 for the client integration tests.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use lpgw_trickle::server::{ServerConfig, TrickleServer};

/// Bound on any single wait, so a bug fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub server: TrickleServer,
    pub base: String,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.shutdown();
        self.handle.abort();
    }
}

impl Server {
    pub async fn start() -> Self {
        let server = TrickleServer::new(ServerConfig::default());
        let app = axum::Router::new().nest("/ai/trickle", server.router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            server,
            base: format!("http://{addr}/ai/trickle"),
            handle,
        }
    }

    /// Starts a server with one channel and returns it with the channel's URL.
    pub async fn with_channel(name: &str, mime: &str) -> (Self, String) {
        let s = Self::start().await;
        assert!(s.server.create_channel(name, mime));
        let url = s.url(name);
        (s, url)
    }

    pub fn url(&self, channel: &str) -> String {
        format!("{}/{channel}", self.base)
    }
}

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("operation did not finish in time")
}

/// A URL on which nothing listens (connections are refused).
pub async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/ai/trickle/dead")
}

/// Polls `cond` until it holds, failing the test after [`WAIT`].
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}
