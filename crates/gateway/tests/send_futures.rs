//! Compile-time checks that the gateway's start futures are `Send`, so services can run
//! them inside multi-threaded handlers (axum, `tokio::spawn`) rather than on a thread of
//! their own. A regression fails to compile.

use lpgw_gateway::{Gateway, RunnerFilter, Settings, StartRequest};

fn assert_send<T: Send>(_: &T) {}

fn assert_spawnable<T: Send + 'static>(_: &T) {}

/// Builds each future without polling it; the check is the `Send` bound.
#[test]
fn start_futures_are_send() {
    let gw = Gateway::new(Settings::default()).expect("default settings");
    let req = StartRequest::new("noop");
    let filter = RunnerFilter::default();

    let start = gw.start(&req);
    assert_send(&start);
    let lv2v = gw.start_lv2v(&req);
    assert_send(&lv2v);
    let scope = gw.start_scope(&req);
    assert_send(&scope);
    let discover = gw.discover_runners(&filter);
    assert_send(&discover);

    // The futures also move into a spawned task, which needs `Send + 'static` once owned.
    let owned = {
        let gw = gw.clone();
        let req = req.clone();
        async move { gw.start(&req).await.map(|_| ()) }
    };
    assert_spawnable(&owned);
}
