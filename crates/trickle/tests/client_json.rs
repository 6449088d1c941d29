//! JSON channels: both framings, keepalives, and garbage between good messages.

mod client_support;

use std::time::Duration;

use bytes::Bytes;
use client_support::{Server, wait_until, within};
use lpgw_trickle::client::{Publisher, PublisherConfig, SubscriberConfig};
use lpgw_trickle::json::{Framing, JsonReader, JsonReaderConfig, JsonWriter, JsonWriterConfig};
use lpgw_trickle::wire::{MIME_JSON, SeqRequest};
use serde_json::{Value, json};

fn reader_config(max_message_bytes: usize) -> JsonReaderConfig {
    JsonReaderConfig {
        subscriber: SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
        max_message_bytes,
    }
}

async fn read_n(reader: &mut JsonReader, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            within(reader.next())
                .await
                .unwrap()
                .expect("stream ended early"),
        );
    }
    out
}

#[tokio::test]
async fn per_segment_writer_with_keepalive() {
    let (_srv, url) = Server::with_channel("control", MIME_JSON).await;
    let mut reader = JsonReader::new(&url, reader_config(1 << 20)).unwrap();
    let writer = JsonWriter::new(
        &url,
        JsonWriterConfig {
            keepalive: Some(Duration::from_millis(100)),
            ..JsonWriterConfig::default()
        },
    )
    .unwrap();
    // A live channel does not wait for readers: read concurrently with the writer.
    let reading = tokio::spawn(async move {
        let got = read_n(&mut reader, 2).await;
        (got, reader)
    });
    within(writer.send(&json!({"prompt": "a"}))).await.unwrap();
    // Idle long enough for keepalives to go out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    within(writer.send(&json!({"prompt": "b"}))).await.unwrap();
    let (got, mut reader) = within(reading).await.unwrap();
    assert_eq!(got, vec![json!({"prompt": "a"}), json!({"prompt": "b"})]);
    let stats = reader.stats();
    assert!(stats.keepalives >= 1, "{stats:?}");
    assert_eq!(stats.invalid, 0);
    // One segment per message, keepalives included.
    assert!(writer.stats().segments_completed >= 3);
    within(writer.close()).await.unwrap();
    // Closing the writer deletes the channel, which ends the reader.
    assert!(within(reader.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn line_writer_rotates_segments() {
    let (_srv, url) = Server::with_channel("scope-control", MIME_JSON).await;
    let mut reader = JsonReader::new(&url, reader_config(1 << 20)).unwrap();
    let writer = JsonWriter::new(
        &url,
        JsonWriterConfig {
            framing: Framing::Lines {
                rotate: Duration::from_millis(150),
            },
            keepalive: None,
            ..JsonWriterConfig::default()
        },
    )
    .unwrap();
    for i in 0..3 {
        within(writer.send(&json!({"type": "parameters", "i": i})))
            .await
            .unwrap();
    }
    // Lines are delivered while their segment is still open.
    let first = read_n(&mut reader, 3).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    for i in 3..6 {
        within(writer.send(&json!({"type": "parameters", "i": i})))
            .await
            .unwrap();
    }
    let second = read_n(&mut reader, 3).await;
    let all: Vec<i64> = first
        .iter()
        .chain(&second)
        .map(|v| v["i"].as_i64().unwrap())
        .collect();
    assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
    within(writer.close()).await.unwrap();
    assert!(within(reader.next()).await.unwrap().is_none());
    let stats = reader.stats();
    assert_eq!(stats.messages, 6);
    assert!(stats.segments >= 2, "{stats:?}");
}

#[tokio::test]
async fn reader_survives_garbage_between_messages() {
    let (_srv, url) = Server::with_channel("events", MIME_JSON).await;
    let mut reader = JsonReader::new(&url, reader_config(256)).unwrap();
    let mut publisher = Publisher::new(&url, MIME_JSON, PublisherConfig::default()).unwrap();
    let big = format!("{{\"blob\":\"{}\"}}", "z".repeat(1000));
    let segments: Vec<Bytes> = vec![
        Bytes::from_static(br#"{"type":"status","n":1}"#),
        Bytes::from_static(b"this is not json"),
        Bytes::new(),
        Bytes::from_static(b"{\"n\":2}\n{\"keep\":\"alive\"}\n{\"n\":3}\n"),
        Bytes::from(big),
        Bytes::from_static(b"{\"n\":4"),
        Bytes::from_static(b"{\n  \"n\": 5\n}\n"),
    ];
    let progress = reader.subscriber_stats_handle();
    let reading = tokio::spawn(async move {
        let got = read_n(&mut reader, 4).await;
        (got, reader)
    });
    for (i, s) in segments.into_iter().enumerate() {
        // Keep within the server's window while the reader catches up.
        wait_until(|| progress.get().segments + 2 >= i as u64).await;
        within(publisher.write_segment(s)).await.unwrap();
    }
    let (got, mut reader) = within(reading).await.unwrap();
    assert_eq!(
        got,
        vec![
            json!({"type":"status","n":1}),
            json!({"n":2}),
            json!({"n":3}),
            json!({"n":5}),
        ]
    );
    let stats = reader.stats();
    assert_eq!(stats.keepalives, 1, "{stats:?}");
    assert_eq!(stats.oversized, 1, "{stats:?}");
    assert_eq!(stats.invalid, 2, "{stats:?}");
    assert!(stats.empty_segments >= 3, "{stats:?}");
    within(publisher.close()).await.unwrap();
    assert!(within(reader.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn typed_reads_skip_messages_of_other_shapes() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Event {
        r#type: String,
    }
    let (_srv, url) = Server::with_channel("typed", MIME_JSON).await;
    let mut reader = JsonReader::new(&url, reader_config(1024)).unwrap();
    let mut publisher = Publisher::new(&url, MIME_JSON, PublisherConfig::default()).unwrap();
    within(publisher.write_segment(Bytes::from_static(b"[1,2,3]")))
        .await
        .unwrap();
    within(publisher.write_segment(Bytes::from_static(br#"{"type":"stream_started"}"#)))
        .await
        .unwrap();
    let ev: Event = within(reader.next_as()).await.unwrap().unwrap();
    assert_eq!(ev.r#type, "stream_started");
    assert_eq!(reader.stats().invalid, 1);
}
