//! Channel edges: falling behind (470), deletion, unknown channels, dead servers, reissue.

mod client_support;

use std::time::Duration;

use bytes::Bytes;
use client_support::{Server, dead_url, within};
use lpgw_trickle::TrickleError;
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::follow::FollowConfig;
use lpgw_trickle::wire::SeqRequest;

fn quick_follow() -> FollowConfig {
    FollowConfig {
        max_retries: 3,
        retry_delay: Duration::from_millis(20),
        max_retry_delay: Duration::from_millis(40),
        ahead_delay: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn subscriber_behind_window_jumps_to_live_edge() {
    let (_srv, url) = Server::with_channel("behind", "video/MP2T").await;
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    for i in 0..8u8 {
        within(publisher.write_segment(Bytes::from(vec![i; 10])))
            .await
            .unwrap();
    }
    // Segment 0 has left the 5-slot window; the server answers 470 with Latest = 8.
    let config = SubscriberConfig {
        start: SeqRequest::At(0),
        ..SubscriberConfig::default()
    };
    let mut sub = Subscriber::new(&url, config).unwrap();
    let reader = tokio::spawn(async move {
        let seg = within(sub.next_segment()).await.unwrap().unwrap();
        let seq = seg.seq();
        let body = within(seg.read_all(100)).await.unwrap();
        (seq, body, sub.stats())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    within(publisher.write_segment(Bytes::from_static(b"edge")))
        .await
        .unwrap();
    let (seq, body, stats) = within(reader).await.unwrap();
    assert_eq!(seq, 8);
    assert_eq!(&body[..], b"edge");
    assert_eq!(stats.jumps, 1);
}

#[tokio::test]
async fn deleted_channel_ends_subscriber_and_stops_publisher() {
    let (srv, url) = Server::with_channel("doomed", "video/MP2T").await;
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    within(publisher.write_segment(Bytes::from_static(b"zero")))
        .await
        .unwrap();
    let config = SubscriberConfig {
        start: SeqRequest::At(0),
        ..SubscriberConfig::default()
    };
    let mut sub = Subscriber::new(&url, config).unwrap();
    let seg = within(sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(&within(seg.read_all(100)).await.unwrap()[..], b"zero");
    // The subscriber now waits on segment 1; deleting the channel must release it cleanly.
    let waiting =
        tokio::spawn(async move { within(sub.next_segment()).await.map(|s| s.is_some()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(srv.server.delete_channel("doomed"));
    assert!(
        !within(waiting).await.unwrap().unwrap(),
        "expected end of stream"
    );

    let err = within(publisher.write_segment(Bytes::from_static(b"late")))
        .await
        .unwrap_err();
    assert!(err.is_end_of_channel(), "unexpected error {err:?}");
    assert!(publisher.stats().terminal);
    // Terminal: later segments fail at once with the same kind of error.
    let again = within(publisher.next_segment()).await.unwrap_err();
    assert!(again.is_end_of_channel(), "unexpected error {again:?}");
}

#[tokio::test]
async fn publisher_close_deletes_channel_and_ends_subscriber() {
    let (srv, url) = Server::with_channel("closing", "application/json").await;
    let mut publisher =
        Publisher::new(&url, "application/json", PublisherConfig::default()).unwrap();
    within(publisher.preconnect()).await.unwrap();
    let mut sub = Subscriber::new(&url, SubscriberConfig::default()).unwrap();
    let waiting =
        tokio::spawn(async move { within(sub.next_segment()).await.map(|s| s.is_some()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    within(publisher.close()).await.unwrap();
    assert!(!srv.server.has_channel("closing"));
    assert!(!within(waiting).await.unwrap().unwrap());
    assert!(matches!(
        within(publisher.next_segment()).await.unwrap_err(),
        TrickleError::Closed
    ));
}

#[tokio::test]
async fn unknown_channel_is_terminal_for_both_clients() {
    let srv = Server::start().await;
    let url = srv.url("nobody");

    let mut sub = Subscriber::new(&url, SubscriberConfig::default()).unwrap();
    assert!(within(sub.next_segment()).await.unwrap().is_none());
    assert_eq!(sub.stats().retries, 0);

    // Asking for the edge finds no channel.
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    let err = within(publisher.write_segment(Bytes::from_static(b"x")))
        .await
        .unwrap_err();
    assert!(matches!(err, TrickleError::StreamNotFound), "{err:?}");

    // Posting to an explicit seq gets the 404 from the POST itself.
    let config = PublisherConfig {
        start_seq: Some(0),
        ..PublisherConfig::default()
    };
    let mut publisher = Publisher::new(&url, "video/MP2T", config).unwrap();
    let err = within(publisher.write_segment(Bytes::from_static(b"x")))
        .await
        .unwrap_err();
    assert!(matches!(err, TrickleError::StreamNotFound), "{err:?}");
    let err = within(publisher.write_segment(Bytes::from_static(b"y")))
        .await
        .unwrap_err();
    assert!(matches!(err, TrickleError::StreamNotFound), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn dead_server_exhausts_bounded_retries() {
    let url = dead_url().await;
    let config = SubscriberConfig {
        follow: quick_follow(),
        ..SubscriberConfig::default()
    };
    let mut sub = Subscriber::new(&url, config).unwrap();
    let err = within(sub.next_segment()).await.unwrap_err();
    match err {
        TrickleError::RetriesExhausted { retries, last } => {
            assert_eq!(retries, 3);
            assert!(matches!(*last, TrickleError::Transport(_)), "{last:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(sub.stats().retries, 3);

    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    let err = within(publisher.next_segment()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn silent_preconnect_is_reissued() {
    let (_srv, url) = Server::with_channel("quiet", "video/MP2T").await;
    let config = SubscriberConfig {
        start: SeqRequest::At(0),
        preconnect_timeout: Duration::from_millis(150),
        ..SubscriberConfig::default()
    };
    let mut sub = Subscriber::new(&url, config).unwrap();
    let stats = sub.stats_handle();
    let reader = tokio::spawn(async move {
        let seg = within(sub.next_segment()).await.unwrap().unwrap();
        within(seg.read_all(100)).await.unwrap()
    });
    // Wait until at least one request was reissued, then publish.
    within(async {
        while stats.get().reissues == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    within(publisher.write_segment(Bytes::from_static(b"finally")))
        .await
        .unwrap();
    assert_eq!(&within(reader).await.unwrap()[..], b"finally");
    assert!(stats.get().reissues >= 1);
}

#[tokio::test]
async fn cancelled_read_can_be_resumed() {
    let (_srv, url) = Server::with_channel("cancel", "video/MP2T").await;
    let config = SubscriberConfig {
        start: SeqRequest::At(0),
        ..SubscriberConfig::default()
    };
    let mut sub = Subscriber::new(&url, config).unwrap();
    // Nothing published yet: give up on the read after a while (e.g. a select! elsewhere).
    let early = tokio::time::timeout(Duration::from_millis(100), sub.next_segment()).await;
    assert!(early.is_err());
    let mut publisher = Publisher::new(&url, "video/MP2T", PublisherConfig::default()).unwrap();
    within(publisher.write_segment(Bytes::from_static(b"later")))
        .await
        .unwrap();
    let seg = within(sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(seg.seq(), 0);
    assert_eq!(&within(seg.read_all(100)).await.unwrap()[..], b"later");
}
