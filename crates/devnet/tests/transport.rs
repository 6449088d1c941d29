//! One port serves HTTP/1.1 and HTTP/2: ALPN on TLS, h2c by prior knowledge on plain HTTP;
//! and the latency fault delays answers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lpgw_devnet::DevnetConfig;
use lpgw_proto::OrchestratorRequest;

async fn version_of(c: reqwest::Client, url: String) -> (u16, http::Version) {
    let r = bounded(c.post(url).body("{").send()).await.unwrap();
    (r.status().as_u16(), r.version())
}

#[tokio::test]
async fn tls_port_speaks_http1_and_http2() {
    let h = devnet(DevnetConfig {
        tls: true,
        ..plain()
    })
    .await;
    let url = format!("{}/live-video-to-video", h.orchestrator_url());
    let h1 = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .build()
        .unwrap();
    assert_eq!(
        version_of(h1, url.clone()).await,
        (400, http::Version::HTTP_11)
    );
    assert_eq!(version_of(http(), url).await, (400, http::Version::HTTP_2));
    h.shutdown().await;
}

#[tokio::test]
async fn plain_port_speaks_http1_and_h2c() {
    let h = devnet(plain()).await;
    let url = format!("{}/live-video-to-video", h.orchestrator_url());
    assert_eq!(
        version_of(http(), url.clone()).await,
        (400, http::Version::HTTP_11)
    );
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    assert_eq!(version_of(h2c, url).await, (400, http::Version::HTTP_2));
    h.shutdown().await;
}

#[tokio::test]
async fn latency_fault_delays_get_orchestrator() {
    let h = devnet(plain()).await;
    let latency = Duration::from_millis(300);
    h.faults().set_latency(latency);
    let t = Instant::now();
    orch_info(&h, OrchestratorRequest::default()).await.unwrap();
    assert!(t.elapsed() >= latency);
    // A client deadline shorter than the latency fails the call.
    let mut c = grpc_h2c(&h).await;
    let mut req = tonic::Request::new(OrchestratorRequest::default());
    req.set_timeout(Duration::from_millis(50));
    let err = bounded(c.get_orchestrator(req)).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{err:?}"
    );
    h.shutdown().await;
}
