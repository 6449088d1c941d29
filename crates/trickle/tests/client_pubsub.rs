//! Publisher → server → subscriber: bytes arrive complete, in order and live.

mod client_support;

use std::time::Duration;

use bytes::Bytes;
use client_support::{Server, wait_until, within};
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::wire::SeqRequest;

fn payload(i: usize) -> Bytes {
    Bytes::from(format!("segment-{i}-").repeat(100 + i * 37))
}

fn sub_from(start: SeqRequest) -> SubscriberConfig {
    SubscriberConfig {
        start,
        ..SubscriberConfig::default()
    }
}

#[tokio::test]
async fn every_segment_arrives_in_order() {
    let (_srv, url) = Server::with_channel("pubsub", "video/MP2T").await;
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    let mut subscriber = Subscriber::new(&url, sub_from(SeqRequest::At(0))).unwrap();
    let progress = subscriber.stats_handle();
    const N: usize = 8;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..N {
            let seg = within(subscriber.next_segment()).await.unwrap().unwrap();
            let seq = seg.seq();
            assert_eq!(seg.content_type(), Some("video/MP2T"));
            let body = within(seg.read_all(1 << 20)).await.unwrap();
            got.push((seq, body));
        }
        (got, subscriber.stats())
    });
    for i in 0..N {
        // Stay inside the server's 5-segment window: a live channel does not wait for
        // slow readers (that case is covered by the 470 tests).
        wait_until(|| progress.get().segments + 2 >= i as u64).await;
        let seq = within(publisher.write_segment(payload(i))).await.unwrap();
        assert_eq!(seq, i as u64);
    }
    let (got, sub_stats) = within(reader).await.unwrap();
    for (i, (seq, body)) in got.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(body, &payload(i), "segment {i}");
    }
    let total: u64 = (0..N).map(|i| payload(i).len() as u64).sum();
    let ps = publisher.stats();
    assert_eq!(ps.segments_completed, N as u64);
    assert_eq!(ps.segments_failed, 0);
    assert_eq!(ps.bytes, total);
    assert_eq!(sub_stats.segments, N as u64);
    assert_eq!(sub_stats.bytes, total);
    assert_eq!(sub_stats.jumps, 0);
    within(publisher.close()).await.unwrap();
}

#[tokio::test]
async fn subscriber_started_before_publisher_gets_first_segment() {
    let (_srv, url) = Server::with_channel("early", "video/MP2T").await;
    let mut subscriber = Subscriber::new(&url, SubscriberConfig::default()).unwrap();
    let reader = tokio::spawn(async move {
        let seg = within(subscriber.next_segment()).await.unwrap().unwrap();
        let seq = seg.seq();
        (seq, within(seg.read_all(1 << 20)).await.unwrap())
    });
    // Give the live-edge GET time to be waiting on the server.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    within(publisher.write_segment(Bytes::from_static(b"first")))
        .await
        .unwrap();
    let (seq, body) = within(reader).await.unwrap();
    assert_eq!(seq, 0);
    assert_eq!(&body[..], b"first");
}

#[tokio::test]
async fn bytes_stream_live_before_segment_ends() {
    let (_srv, url) = Server::with_channel("live", "video/MP2T").await;
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    within(publisher.preconnect()).await.unwrap();
    let mut subscriber = Subscriber::new(&url, sub_from(SeqRequest::At(0))).unwrap();
    let mut writer = within(publisher.next_segment()).await.unwrap();
    within(writer.write(Bytes::from_static(b"part one;")))
        .await
        .unwrap();
    let mut seg = within(subscriber.next_segment()).await.unwrap().unwrap();
    let first = within(seg.chunk()).await.unwrap().unwrap();
    // The first part is readable while the segment is still open.
    assert_eq!(&first[..], b"part one;");
    within(writer.write(Bytes::from_static(b"part two")))
        .await
        .unwrap();
    within(writer.finish()).await.unwrap();
    let mut rest = Vec::new();
    while let Some(c) = within(seg.chunk()).await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"part two");
    assert_eq!(seg.bytes_read(), 17);
}

#[tokio::test]
async fn publisher_resumes_at_channel_edge_with_reset() {
    let (_srv, url) = Server::with_channel("resume", "video/MP2T").await;
    let mut first = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    for i in 0..3 {
        within(first.write_segment(payload(i))).await.unwrap();
    }
    // Dropping ends the preconnected POST for 3 with an empty body; depending on timing the
    // server has or has not yet recorded that empty segment.
    drop(first);
    // A new publisher asks /next and carries on from there.
    let mut second = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    let seq = within(second.write_segment(payload(9))).await.unwrap();
    assert!(seq == 3 || seq == 4, "resumed at {seq}");
    let mut sub = Subscriber::new(&url, sub_from(SeqRequest::At(seq))).unwrap();
    let seg = within(sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(seg.seq(), seq);
    assert_eq!(within(seg.read_all(1 << 20)).await.unwrap(), payload(9));
}

#[tokio::test]
async fn current_start_reads_newest_segment() {
    let (_srv, url) = Server::with_channel("current", "video/MP2T").await;
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    for i in 0..3 {
        within(publisher.write_segment(payload(i))).await.unwrap();
    }
    let mut sub = Subscriber::new(&url, sub_from(SeqRequest::Current)).unwrap();
    let seg = within(sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(seg.seq(), 2);
    assert_eq!(within(seg.read_all(1 << 20)).await.unwrap(), payload(2));
}

#[tokio::test]
async fn oversized_segment_is_reported_and_skipped() {
    let (_srv, url) = Server::with_channel("big", "video/MP2T").await;
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    let config = SubscriberConfig {
        start: SeqRequest::At(0),
        max_segment_bytes: Some(1000),
        ..SubscriberConfig::default()
    };
    let mut sub = Subscriber::new(&url, config).unwrap();
    within(publisher.write_segment(Bytes::from(vec![7u8; 5000])))
        .await
        .unwrap();
    within(publisher.write_segment(Bytes::from_static(b"small")))
        .await
        .unwrap();
    let mut seg = within(sub.next_segment()).await.unwrap().unwrap();
    let err = loop {
        match within(seg.chunk()).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("oversized segment was not reported"),
            Err(e) => break e,
        }
    };
    assert!(matches!(
        err,
        lpgw_trickle::TrickleError::SegmentTooLarge {
            seq: 0,
            limit: 1000
        }
    ));
    let seg = within(sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(seg.seq(), 1);
    assert_eq!(&within(seg.read_all(100)).await.unwrap()[..], b"small");
    assert_eq!(sub.stats().oversized, 1);
}
