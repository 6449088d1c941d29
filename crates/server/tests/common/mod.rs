//! Shared test harness: a devnet, the service in front of it, and small clients.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle};
use lpgw_server::{AppState, ServerConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);

pub struct Harness {
    pub devnet: Option<DevnetHandle>,
    pub addr: SocketAddr,
    pub base: String,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub http: reqwest::Client,
}

pub fn devnet_config() -> DevnetConfig {
    DevnetConfig {
        tls: false,
        status_interval: Duration::from_millis(300),
        ..DevnetConfig::default()
    }
}

impl Harness {
    pub async fn start(config: ServerConfig) -> Self {
        Self::start_with(config, devnet_config()).await
    }

    pub async fn start_with(config: ServerConfig, dn: DevnetConfig) -> Self {
        Self::start_tuned(config, dn, |_| {}).await
    }

    /// As [`Self::start_with`], with the gateway settings adjusted by `tune` last.
    pub async fn start_tuned(
        config: ServerConfig,
        dn: DevnetConfig,
        tune: impl FnOnce(&mut lpgw_gateway::Settings),
    ) -> Self {
        let devnet = Devnet::start(dn).await.expect("devnet starts");
        let mut settings = lpgw_gateway::Settings {
            orchestrators: vec![devnet.orchestrator_url().to_string()],
            signer_url: devnet.signer_url().map(str::to_owned),
            // As `lpgw serve` does: the service configuration carries the ceiling.
            ceiling: config.ceiling,
            ..lpgw_gateway::Settings::default()
        };
        if settings.signer_url.is_some() {
            // Paid devnets: pay often so tests see payments add up.
            settings.payment_interval = Duration::from_millis(300);
            settings.live.payment_interval = Duration::from_millis(300);
        }
        tune(&mut settings);
        let gateway = lpgw_gateway::Gateway::new(settings).expect("gateway");
        let state = AppState::new(config, gateway);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(lpgw_server::run(listener, state, shutdown.clone()));
        Self {
            devnet: Some(devnet),
            addr,
            base: format!("http://{addr}"),
            shutdown,
            server,
            http: reqwest::Client::new(),
        }
    }

    pub fn devnet(&self) -> &DevnetHandle {
        self.devnet.as_ref().expect("devnet running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws/stream?{query}", self.addr)
    }

    pub async fn post_json(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        self.send(req).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        self.send(req).await
    }

    /// Sends `req` within one step; its status and its body as JSON (or as a string when
    /// it is not JSON).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = tokio::time::timeout(STEP, req.send())
            .await
            .unwrap()
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Posts one JPEG frame to `/stream/{id}/publish{query}`.
    pub async fn publish_jpeg(&self, id: &str, query: &str, body: Bytes) -> (u16, Value) {
        let req = self
            .http
            .post(self.url(&format!("/stream/{id}/publish{query}")))
            .header("content-type", "image/jpeg")
            .body(body);
        self.send(req).await
    }

    /// The `/metrics` text (fails the test on any other answer).
    pub async fn metrics(&self) -> String {
        match self.get("/metrics", None).await {
            (200, Value::String(text)) => text,
            other => panic!("/metrics answered {other:?}"),
        }
    }

    /// Stops the service (as SIGTERM would) and waits for it to exit.
    pub async fn stop_service(&mut self) {
        self.shutdown.cancel();
        let server = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("service exits in time")
            .expect("service task")
            .expect("service result");
    }

    pub async fn finish(mut self) {
        self.stop_service().await;
        if let Some(d) = self.devnet.take() {
            d.shutdown().await;
        }
    }
}

/// A `size`×`size` JPEG filled with one colour.
pub fn jpeg(size: u32, y: u8) -> Bytes {
    let frame = lpgw_media::Yuv420Frame::filled(size, size, y, 128, 128);
    lpgw_media::JpegEncoder::new(80)
        .encode(&frame)
        .expect("jpeg encodes")
}

/// Polls `f` until it is true or the step times out.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `frame` every 40 ms until `done` holds for the stream's status.
pub async fn publish_until(
    h: &Harness,
    id: &str,
    frame: &bytes::Bytes,
    done: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(STEP * 2, async {
        loop {
            let _ = h
                .http
                .post(h.url(&format!("/stream/{id}/publish")))
                .header("Content-Type", "image/jpeg")
                .body(frame.clone())
                .send()
                .await;
            let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
            if done(&st) {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    })
    .await
    .expect("status reached in time")
}
