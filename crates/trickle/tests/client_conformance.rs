//! The clients against a scripted server that answers with literal go-livepeer statuses and
//! headers, so the clients cannot merely agree with this crate's own server.

mod client_support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use client_support::{wait_until, within};
use http_body_util::BodyExt;
use lpgw_trickle::TrickleError;
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::follow::FollowConfig;
use lpgw_trickle::wire::SeqRequest;

/// One canned reply: status, headers, body; `read_body` drains the request first.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
    read_body: bool,
}

fn reply(status: u16, headers: &[(&'static str, &str)], body: &'static str) -> Reply {
    Reply {
        status,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body,
        read_body: true,
    }
}

/// A request as the scripted server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    seq: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Script {
    fn new(replies: Vec<Reply>) -> Self {
        Self {
            replies: Arc::new(Mutex::new(replies.into())),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn serve(&self) -> String {
        let app = axum::Router::new()
            .route("/ch/{seq}", axum::routing::any(handle))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        format!("http://{addr}/ch")
    }
}

async fn handle(
    State(script): State<Script>,
    method: Method,
    Path(seq): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let reply = script.replies.lock().unwrap().pop_front();
    let Some(reply) = reply else {
        return (StatusCode::NOT_FOUND, "Stream not found").into_response();
    };
    let body = if reply.read_body {
        body.collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default()
    } else {
        Bytes::new()
    };
    script.seen.lock().unwrap().push(Seen {
        method,
        seq,
        headers,
        body,
    });
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

fn explicit_start(seq: u64) -> PublisherConfig {
    PublisherConfig {
        start_seq: Some(seq),
        ..PublisherConfig::default()
    }
}

#[tokio::test]
async fn post_that_sent_nothing_is_repeated() {
    let mut first = reply(503, &[], "busy");
    first.read_body = false;
    // The third reply holds the preconnected POST for segment 1 open.
    let script = Script::new(vec![
        first,
        reply(200, &[("Lp-Trickle-Seq", "0")], ""),
        reply(200, &[], ""),
    ]);
    let url = script.serve().await;
    let mut publisher = Publisher::new(&url, "video/MP2T", explicit_start(0)).unwrap();
    within(publisher.preconnect()).await.unwrap();
    // Write only once the first attempt has ended, so it provably sent nothing.
    wait_until(|| publisher.stats().attempts >= 1).await;
    let mut w = within(publisher.next_segment()).await.unwrap();
    within(w.write(Bytes::from_static(b"hello"))).await.unwrap();
    within(w.finish()).await.unwrap();
    let seen = script.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.method == Method::POST && s.seq == "0")
    );
    assert_eq!(&seen[1].body[..], b"hello");
    let stats = publisher.stats();
    assert_eq!((stats.retries, stats.segments_completed), (1, 1));
}

#[tokio::test]
async fn post_that_sent_bytes_is_not_repeated_and_failures_become_terminal() {
    // Spare replies keep later preconnected POSTs waiting instead of answering 404.
    let script = Script::new(vec![reply(500, &[], "Server error"); 6]);
    let url = script.serve().await;
    let mut publisher = Publisher::new(&url, "video/MP2T", explicit_start(5)).unwrap();
    for i in 0..2 {
        let err = within(publisher.write_segment(Bytes::from_static(b"abc")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TrickleError::Http { status: 500 }),
            "{i}: {err:?}"
        );
    }
    let err = within(publisher.write_segment(Bytes::from_static(b"abc")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TrickleError::TerminalFailures { failures: 3 }),
        "{err:?}"
    );
    let posts: Vec<String> = script
        .seen()
        .iter()
        .filter(|s| !s.body.is_empty())
        .map(|s| s.seq.clone())
        .collect();
    assert_eq!(posts, ["5", "6", "7"]);
    assert!(publisher.stats().terminal);
}

#[tokio::test]
async fn publisher_reads_next_from_body_and_sends_reset_and_mime() {
    let script = Script::new(vec![
        reply(200, &[], "12"),
        reply(200, &[("Lp-Trickle-Seq", "12")], ""),
        reply(200, &[], ""),
    ]);
    let url = script.serve().await;
    let mut publisher =
        Publisher::new(&url, "application/json", PublisherConfig::default()).unwrap();
    let seq = within(publisher.write_segment(Bytes::from_static(b"{}")))
        .await
        .unwrap();
    assert_eq!(seq, 12);
    let seen = script.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].seq.as_str()),
        ("GET", "next")
    );
    let post = &seen[1];
    assert_eq!(post.seq, "12");
    assert!(post.headers.contains_key("Lp-Trickle-Reset"));
    assert_eq!(post.headers["content-type"], "application/json");
}

#[tokio::test]
async fn post_answered_closed_is_end_of_stream() {
    let script = Script::new(vec![
        reply(
            200,
            &[("Lp-Trickle-Seq", "0"), ("Lp-Trickle-Closed", "terminated")],
            "",
        ),
        reply(200, &[], ""),
    ]);
    let url = script.serve().await;
    let mut publisher = Publisher::new(&url, "video/MP2T", explicit_start(0)).unwrap();
    let err = within(publisher.write_segment(Bytes::from_static(b"x")))
        .await
        .unwrap_err();
    assert!(matches!(err, TrickleError::EndOfStream), "{err:?}");
}

#[tokio::test]
async fn subscriber_retries_5xx_then_stops_on_closed() {
    let script = Script::new(vec![
        reply(503, &[], "busy"),
        reply(200, &[("Lp-Trickle-Seq", "0")], "zero"),
        reply(
            200,
            &[("Lp-Trickle-Seq", "1"), ("Lp-Trickle-Closed", "terminated")],
            "",
        ),
    ]);
    let url = script.serve().await;
    let config = SubscriberConfig {
        start: SeqRequest::At(0),
        follow: FollowConfig {
            retry_delay: Duration::from_millis(10),
            max_retry_delay: Duration::from_millis(10),
            ..FollowConfig::default()
        },
        ..SubscriberConfig::default()
    };
    let mut sub = Subscriber::new(&url, config).unwrap();
    let seg = within(sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(seg.seq(), 0);
    assert_eq!(&within(seg.read_all(100)).await.unwrap()[..], b"zero");
    assert!(within(sub.next_segment()).await.unwrap().is_none());
    let seqs: Vec<String> = script.seen().into_iter().map(|s| s.seq).collect();
    assert_eq!(seqs, ["0", "0", "1"]);
    assert_eq!(sub.stats().retries, 1);
}

#[tokio::test]
async fn subscriber_follows_literal_470_and_stops_on_404() {
    let script = Script::new(vec![
        reply(
            470,
            &[("Lp-Trickle-Seq", "0"), ("Lp-Trickle-Latest", "7")],
            "Entry not found",
        ),
        reply(200, &[("Lp-Trickle-Seq", "7")], "seven"),
        reply(404, &[], "Stream not found"),
    ]);
    let url = script.serve().await;
    let config = SubscriberConfig {
        start: SeqRequest::At(0),
        ..SubscriberConfig::default()
    };
    let mut sub = Subscriber::new(&url, config).unwrap();
    let seg = within(sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(seg.seq(), 7);
    assert_eq!(&within(seg.read_all(100)).await.unwrap()[..], b"seven");
    assert!(within(sub.next_segment()).await.unwrap().is_none());
    let seqs: Vec<String> = script.seen().into_iter().map(|s| s.seq).collect();
    assert_eq!(seqs, ["0", "7", "8"]);
    let stats = sub.stats();
    assert_eq!((stats.jumps, stats.segments), (1, 1));
}

#[tokio::test]
async fn subscriber_live_edge_uses_seq_header() {
    let script = Script::new(vec![
        reply(200, &[("Lp-Trickle-Seq", "41")], "a"),
        reply(
            200,
            &[("Lp-Trickle-Seq", "42"), ("Lp-Trickle-Latest", "44")],
            "b",
        ),
    ]);
    let url = script.serve().await;
    let mut sub = Subscriber::new(&url, SubscriberConfig::default()).unwrap();
    let a = within(sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(a.seq(), 41);
    let b = within(sub.next_segment()).await.unwrap().unwrap();
    assert_eq!((b.seq(), b.latest()), (42, Some(44)));
    let seqs: Vec<String> = script.seen().into_iter().map(|s| s.seq).collect();
    assert_eq!(&seqs[..2], ["-1", "42"]);
}
