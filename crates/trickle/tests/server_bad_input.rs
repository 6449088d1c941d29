//! Hostile or broken requests to the trickle server: clear status codes, no panics, every
//! waiter released.

mod server_support;

use std::time::Duration;

use bytes::Bytes;
use server_support::{TestServer, WAIT, body, header, settle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn malformed_sequence_numbers_are_400() {
    let s = TestServer::with_channel("ch").await;
    for bad in ["abc", "-3", "-99", "1.5", "99999999999999999999999", "%20"] {
        let g = s.get(&format!("ch/{bad}")).await;
        assert_eq!(g.status(), 400, "GET {bad}");
        assert_eq!(body(g).await, "Invalid idx\n");
        let p = s.post(&format!("ch/{bad}"), b"x").await;
        assert_eq!(p.status(), 400, "POST {bad}");
        assert_eq!(
            s.delete(&format!("ch/{bad}")).await.status(),
            400,
            "DELETE {bad}"
        );
    }
    // -2 is only meaningful for reads.
    assert_eq!(s.post("ch/-2", b"x").await.status(), 400);
    // POST to "next" is just a bad index.
    assert_eq!(s.post("ch/next", b"x").await.status(), 400);
    // Nothing above moved the write head.
    assert_eq!(body(s.get("ch/next").await).await, "0");
}

#[tokio::test]
async fn huge_sequence_numbers_are_handled() {
    let s = TestServer::with_channel("ch").await;
    let max = i64::MAX.to_string();
    let p = s.post(&format!("ch/{max}"), b"edge").await;
    assert_eq!(p.status(), 200);
    assert_eq!(header(&p, "Lp-Trickle-Seq"), Some(max.as_str()));
    let g = s.get(&format!("ch/{max}")).await;
    assert_eq!(body(g).await, "edge");
    let far = s.get("ch/4000000000").await;
    assert_eq!(far.status(), 470);
}

#[tokio::test]
async fn unknown_channels_are_404_for_every_verb() {
    let s = TestServer::with_channel("ch").await;
    assert_eq!(s.get("nope/0").await.status(), 404);
    assert_eq!(s.get("nope/next").await.status(), 404);
    assert_eq!(s.post("nope/0", b"x").await.status(), 404);
    assert_eq!(s.delete("nope/0").await.status(), 404);
    assert_eq!(s.delete("nope").await.status(), 400);
}

#[tokio::test]
async fn publisher_that_disconnects_mid_segment_releases_subscribers() {
    let s = TestServer::with_channel("ch").await;
    let sub = tokio::spawn({
        let (http, url) = (s.http.clone(), s.url("ch/0"));
        async move {
            let resp = http.get(url).send().await.unwrap();
            // The body ends (cleanly or with an error) instead of hanging.
            resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default()
        }
    });
    settle().await;
    // A raw HTTP/1.1 chunked POST that sends one chunk and then vanishes.
    let addr = s
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sock.write_all(
        b"POST /ai/trickle/ch/0 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    settle().await;
    drop(sock);
    let got = tokio::time::timeout(WAIT, sub)
        .await
        .expect("subscriber released")
        .unwrap();
    assert_eq!(got, b"hello");
    // The server still works for the next segment.
    assert_eq!(s.post("ch/1", b"ok").await.status(), 200);
}

#[tokio::test]
async fn subscriber_that_disconnects_does_not_disturb_the_publisher() {
    let s = TestServer::with_channel("ch").await;
    let (tx, post) = s.streaming_post("ch/0", &[]);
    tx.send(Ok(Bytes::from_static(b"a"))).await.unwrap();
    settle().await;
    let addr = s
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sock.write_all(b"GET /ai/trickle/ch/0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    drop(sock);
    tx.send(Ok(Bytes::from_static(b"b"))).await.unwrap();
    drop(tx);
    let r = tokio::time::timeout(WAIT, post)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(body(s.get("ch/0").await).await, "ab");
}

#[tokio::test]
async fn oversized_segments_are_refused_and_closed() {
    let s = TestServer::start(lpgw_trickle::server::ServerConfig {
        max_segment_bytes: 1024,
        ..Default::default()
    })
    .await;
    s.server.create_channel("ch", "text/plain");
    let big: &'static [u8] = Box::leak(vec![7u8; 4096].into_boxed_slice());
    let r = s.post("ch/0", big).await;
    assert_eq!(r.status(), 413);
    let g = s.get("ch/0").await;
    assert_eq!(g.status(), 200);
    assert!(body(g).await.len() <= 1024);
}

#[tokio::test]
async fn hostile_channel_names_and_headers() {
    let s = TestServer::start(lpgw_trickle::server::ServerConfig {
        autocreate: true,
        max_channels: 3,
        ..Default::default()
    })
    .await;
    // Non-UTF-8-ish percent escapes and odd names are just names.
    assert_eq!(s.post("%E2%9C%93/0", b"x").await.status(), 200);
    // Garbage reset / content-type headers do not break anything.
    let r = s
        .http
        .post(s.url("odd/0"))
        .header(
            "Lp-Trickle-Reset",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .header(
            "Content-Type",
            http::HeaderValue::from_bytes(b"\xc3\x28").unwrap(),
        )
        .body("y")
        .send()
        .await
        .unwrap();
    assert!(r.status() == 200 || r.status() == 400, "{}", r.status());
    // The channel cap refuses further auto-creation.
    s.post("c3/0", b"z").await;
    let over = s.post("c4/0", b"z").await;
    assert_eq!(over.status(), 503);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(s.server.stats().channels <= 3);
}
