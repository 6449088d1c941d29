//! Discovery through the signer's `/discover-orchestrators`, with the capability filter.

mod common;

use common::{Knobs, lock, orch, signer, within};
use lpgw_gateway::{Error, Gateway, Settings, StartRequest, Token};

#[tokio::test]
async fn signer_discovery_feeds_the_start() {
    let o = orch(Knobs::default()).await;
    let s = signer().await;
    lock(&s.state.discover_list).push(o.url.clone());
    // Offchain payments, but discovery through the signer: a token can carry only the signer.
    let token = Token {
        signer: Some(s.url.clone()),
        ..Token::default()
    };
    let settings = Settings::default().with_token(&Token::parse(&token.encode()).unwrap());
    let gw = Gateway::new(settings).unwrap();
    let list = within(10, gw.discover(&[lpgw_gateway::lv2v_cap("noop")]))
        .await
        .unwrap();
    assert_eq!(list, vec![o.url.clone()]);
    assert_eq!(
        lock(&s.state.discover_queries)[0],
        "caps=live-video-to-video/noop"
    );

    let job = within(10, gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .unwrap();
    assert_eq!(job.orchestrator_url(), o.url);
    assert_eq!(
        lock(&s.state.discover_queries)[1],
        "caps=live-video-to-video/noop"
    );
    within(10, job.close()).await;
}

#[tokio::test]
async fn empty_discovery_is_a_clear_error() {
    let s = signer().await;
    let gw = Gateway::new(Settings {
        discovery_url: Some(format!("{}/discover-orchestrators", s.url)),
        ..Settings::default()
    })
    .unwrap();
    let err = within(10, gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoOrchestrators), "{err}");
}

#[tokio::test]
async fn failing_discovery_names_the_endpoint() {
    let dead = common::dead_url().await;
    let gw = Gateway::new(Settings {
        discovery_url: Some(format!("{dead}/list")),
        ..Settings::default()
    })
    .unwrap();
    let err = within(10, gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .unwrap_err();
    let Error::Discovery { url, .. } = &err else {
        panic!("{err}")
    };
    assert!(url.starts_with(&dead));
    assert!(err.is_retryable());
}
