//! A trickle server on 127.0.0.1:0 and raw HTTP helpers for the conformance tests.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use lpgw_trickle::server::{ServerConfig, TrickleServer};
use tokio::sync::mpsc;

/// Bound on any single wait in these tests, so a bug fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub server: TrickleServer,
    pub base: String,
    pub http: reqwest::Client,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.shutdown();
        self.handle.abort();
    }
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        let server = TrickleServer::new(config);
        let app = axum::Router::new().nest("/ai/trickle", server.router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            axum::serve(lpgw_trickle::server::nodelay(listener), app)
                .await
                .unwrap();
        });
        server.start_sweeper();
        Self {
            server,
            base: format!("http://{addr}/ai/trickle"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            handle,
        }
    }

    pub async fn with_channel(name: &str) -> Self {
        let s = Self::start(ServerConfig::default()).await;
        assert!(s.server.create_channel(name, "text/plain"));
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: &'static [u8]) -> reqwest::Response {
        tokio::time::timeout(WAIT, self.http.post(self.url(path)).body(body).send())
            .await
            .expect("post timed out")
            .expect("post failed")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        tokio::time::timeout(WAIT, self.http.get(self.url(path)).send())
            .await
            .expect("get timed out")
            .expect("get failed")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        tokio::time::timeout(WAIT, self.http.delete(self.url(path)).send())
            .await
            .expect("delete timed out")
            .expect("delete failed")
    }

    /// Starts a POST whose body is fed through the returned sender; dropping the sender ends
    /// the body.
    pub fn streaming_post(
        &self,
        path: &str,
        extra: &[(&str, &str)],
    ) -> (
        mpsc::Sender<Result<Bytes, std::io::Error>>,
        tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    ) {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut req = self.http.post(self.url(path)).body(body);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        (tx, tokio::spawn(req.send()))
    }
}

pub fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

pub async fn body(resp: reqwest::Response) -> String {
    let bytes = tokio::time::timeout(WAIT, resp.bytes())
        .await
        .expect("body timed out")
        .expect("body failed");
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Reads the next chunk of a streaming response, failing after [`WAIT`].
pub async fn chunk(resp: &mut reqwest::Response) -> Option<Bytes> {
    tokio::time::timeout(WAIT, resp.chunk())
        .await
        .expect("chunk timed out")
        .expect("chunk failed")
}

/// Gives spawned requests a moment to reach the server.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}
