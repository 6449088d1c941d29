//! The job's control keepalive, control messages and events stream.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Knobs, orch, within};
use lpgw_gateway::{Gateway, Settings, StartRequest};
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};

#[tokio::test]
async fn control_keepalive_messages_and_events() {
    let o = orch(Knobs::default()).await;
    let gw = Gateway::new(Settings {
        orchestrators: vec![o.url.clone()],
        keepalive_interval: Duration::from_millis(150),
        ..Settings::default()
    })
    .unwrap();
    let mut job = within(10, gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .unwrap();

    // Control: read what the gateway writes, from the start of the channel.
    let mut control = Subscriber::new(
        &job.urls().control_url,
        SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
    )
    .unwrap();
    let mut read_control = async || -> Value {
        let seg = control
            .next_segment()
            .await
            .unwrap()
            .expect("control segment");
        serde_json::from_slice(&seg.read_all(1 << 20).await.unwrap()).unwrap()
    };
    assert_eq!(within(5, read_control()).await, json!({"keep": "alive"}));
    job.send_control(&json!({"prompt": "cat"})).await.unwrap();
    within(5, async {
        loop {
            if read_control().await == json!({"prompt": "cat"}) {
                break;
            }
        }
    })
    .await;

    // Events: what the runner publishes reaches the application.
    let mut events = job.take_events().expect("events");
    assert!(job.take_events().is_none());
    let mut runner = Publisher::new(
        job.urls().events_url.as_deref().unwrap(),
        "application/json",
        PublisherConfig::default(),
    )
    .unwrap();
    let status = json!({"type": "status", "state": "ONLINE"});
    let got = within(10, async {
        loop {
            runner
                .write_segment(Bytes::from(status.to_string()))
                .await
                .unwrap();
            if let Ok(Some(ev)) =
                tokio::time::timeout(Duration::from_millis(200), events.recv()).await
            {
                break ev;
            }
        }
    })
    .await;
    assert_eq!(got, status);

    within(10, job.close()).await;
}
