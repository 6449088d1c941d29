//! Payments through a priced devnet with its remote signer: `/metrics` counts the payments
//! of each flow and their value, and status answers carry the job's payment counters.

mod common;

use std::time::Duration;

use common::{Harness, STEP, devnet_config, jpeg};
use futures::{SinkExt as _, StreamExt as _};
use lpgw_devnet::{DevnetConfig, PriceConfig};
use lpgw_server::ServerConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn priced() -> DevnetConfig {
    DevnetConfig {
        price: Some(PriceConfig {
            per_unit: 1,
            pixels_per_unit: 1,
        }),
        signer: true,
        payment_interval: Duration::from_millis(500),
        ..devnet_config()
    }
}

/// One sample of a labelled metric; 0 when absent.
fn sample(text: &str, name: &str, flow: &str) -> u128 {
    let prefix = format!("{name}{{flow=\"{flow}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("an integer sample"))
}

/// `(payments, value in wei)` of `flow` as `/metrics` reports them.
async fn paid(h: &Harness, flow: &str) -> (u128, u128) {
    let (status, body) = h.get("/metrics", None).await;
    assert_eq!(status, 200);
    let Value::String(text) = body else {
        panic!("metrics are not text: {body}")
    };
    (
        sample(&text, "lpgw_payments_total", flow),
        sample(&text, "lpgw_payment_value_wei_total", flow),
    )
}

/// Polls `/metrics` until `flow` has at least `n` payments.
async fn wait_paid(h: &Harness, flow: &str, n: u128) -> (u128, u128) {
    tokio::time::timeout(STEP, async {
        loop {
            let p = paid(h, flow).await;
            if p.0 >= n {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{flow}: fewer than {n} payments in time"))
}

/// Sends a grey frame at 24 fps until the socket closes or the task is aborted.
fn feed(
    mut tx: impl futures::Sink<Message> + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let frame = jpeg(64, 128);
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / 24));
        for _ in 0..24 * 20 {
            tick.tick().await;
            if tx.send(Message::Binary(frame.clone())).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lv2v_payments_and_their_value_reach_metrics_and_status() {
    let h = Harness::start_with(ServerConfig::default(), priced()).await;
    assert_eq!(paid(&h, "lv2v").await, (0, 0), "nothing paid before a job");

    let (status, s) = h
        .post_json("/start-job", None, json!({"model_id": "noop"}))
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["flow"], "lv2v");
    let id = s["job_id"].as_str().unwrap().to_string();
    let opening = wait_paid(&h, "lv2v", 1).await;
    assert!(
        opening.1 > 0,
        "the opening payment has a value: {opening:?}"
    );

    // Output segments drive the periodic payments.
    let (ws, _) = tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={id}")))
        .await
        .unwrap();
    let (tx, mut rx) = ws.split();
    let sender = feed(tx);
    let reader = tokio::spawn(async move { while rx.next().await.is_some() {} });
    let later = wait_paid(&h, "lv2v", opening.0 + 1).await;
    assert!(later.1 > opening.1, "value rises with payments: {later:?}");

    let (_, st) = h.get(&format!("/job/{id}"), None).await;
    let p = &st["payments"];
    assert!(p["paid"].as_u64().unwrap_or(0) >= 1, "{st}");
    let v: u128 = p["value_wei"].as_str().unwrap().parse().unwrap();
    assert!(v > 0, "{st}");

    sender.abort();
    reader.abort();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_payments_and_their_value_reach_metrics_and_status() {
    let h = Harness::start_with(ServerConfig::default(), priced()).await;
    assert_eq!(paid(&h, "live-runner").await, (0, 0));

    let (status, s) = h
        .post_json("/stream/start", None, json!({"model_id": "scope"}))
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["flow"], "live-runner");
    let id = s["stream_id"].as_str().unwrap().to_string();
    // The reservation's payment, then the funding loop's.
    let opening = wait_paid(&h, "live-runner", 1).await;
    assert!(opening.1 > 0, "the reservation payment has a value");
    let later = wait_paid(&h, "live-runner", opening.0 + 1).await;
    assert!(later.1 > opening.1, "value rises with payments: {later:?}");

    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    let p = &st["payments"];
    assert!(p["paid"].as_u64().unwrap_or(0) >= 2, "{st}");
    let v: u128 = p["value_wei"].as_str().unwrap().parse().unwrap();
    assert!(v > 0, "{st}");

    // Closing the job keeps its payments in the totals.
    let (status, _) = h
        .post_json(&format!("/stream/{id}/stop"), None, json!({}))
        .await;
    assert_eq!(status, 200);
    let closed = paid(&h, "live-runner").await;
    assert!(closed.0 >= later.0 && closed.1 >= later.1, "{closed:?}");
    h.finish().await;
}
