//! Conformance of the trickle server with go-livepeer's own trickle tests
//! (`trickle/trickle_test.go`, `local_subscriber_test.go`), with literal status codes and
//! headers.

mod server_support;

use std::time::Duration;

use bytes::Bytes;
use lpgw_trickle::server::ServerConfig;
use server_support::{TestServer, WAIT, body, chunk, header, settle};

#[tokio::test]
async fn close_contract() {
    // TestTrickle_Close
    let s = TestServer::with_channel("ch").await;
    let missing = s.post("nope/0", b"x").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "Connection"), Some("close"));
    assert_eq!(body(missing).await, "Stream not found\n");

    for (seq, data) in [(0, b"zero" as &'static [u8]), (1, b"one")] {
        let r = s.post(&format!("ch/{seq}"), data).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "Lp-Trickle-Seq"), Some(seq.to_string().as_str()));
    }
    for (seq, data) in [(0, "zero"), (1, "one")] {
        let r = s.get(&format!("ch/{seq}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "Lp-Trickle-Seq"), Some(seq.to_string().as_str()));
        assert_eq!(header(&r, "Lp-Trickle-Latest"), Some("2"));
        assert_eq!(header(&r, "Content-Type"), Some("text/plain"));
        assert_eq!(body(r).await, data);
    }

    // A subscriber and a preconnected publisher wait at the edge...
    let waiting_sub = tokio::spawn({
        let (http, url) = (s.http.clone(), s.url("ch/-1"));
        async move { http.get(url).send().await }
    });
    let (pub_tx, waiting_pub) = s.streaming_post("ch/3", &[]);
    settle().await;
    assert!(!waiting_sub.is_finished() && !waiting_pub.is_finished());

    // ...and both are released, with Closed, when the channel is deleted.
    let del = s.delete("ch").await;
    assert_eq!(del.status(), 200);
    let sub = tokio::time::timeout(WAIT, waiting_sub)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(sub.status(), 200);
    assert_eq!(header(&sub, "Lp-Trickle-Closed"), Some("terminated"));
    assert_eq!(body(sub).await, "");
    let publ = tokio::time::timeout(WAIT, waiting_pub)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(publ.status(), 200);
    assert_eq!(header(&publ, "Lp-Trickle-Closed"), Some("terminated"));
    assert_eq!(header(&publ, "Lp-Trickle-Seq"), Some("3"));
    drop(pub_tx);

    assert_eq!(s.get("ch/0").await.status(), 404);
    assert_eq!(s.post("ch/4", b"x").await.status(), 404);
    assert_eq!(s.get("ch/next").await.status(), 404);
}

#[tokio::test]
async fn create_contract_without_and_with_autocreate() {
    // TestTrickle_HTTPCreateContract
    let s = TestServer::start(ServerConfig::default()).await;
    assert_eq!(s.post("made", b"").await.status(), 404);
    assert_eq!(s.post("made/0", b"data").await.status(), 404);
    assert!(!s.server.has_channel("made"));

    let s = TestServer::start(ServerConfig {
        autocreate: true,
        ..ServerConfig::default()
    })
    .await;
    let r = s
        .http
        .post(s.url("made"))
        .header("Expect-Content", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.post("made/0", b"{}").await.status(), 200);
    let r = s.get("made/0").await;
    assert_eq!(header(&r, "Content-Type"), Some("application/json"));
    // Auto-creation on first publish takes the publisher's Content-Type.
    let r = s
        .http
        .post(s.url("auto/0"))
        .header("Content-Type", "video/MP2T")
        .body("ts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&s.get("auto/0").await, "Content-Type"),
        Some("video/MP2T")
    );
}

#[tokio::test]
async fn next_reports_the_write_head() {
    // TestTrickle_BeforeCreate / README: /next
    let s = TestServer::with_channel("ch").await;
    let r = s.get("ch/next").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Lp-Trickle-Latest"), Some("0"));
    assert_eq!(body(r).await, "0");
    s.post("ch/0", b"a").await;
    s.post("ch/1", b"b").await;
    let r = s.get("ch/next").await;
    assert_eq!(header(&r, "Lp-Trickle-Latest"), Some("2"));
    assert_eq!(header(&r, "Lp-Trickle-Closed"), None);
    assert_eq!(body(r).await, "2");
    assert_eq!(s.get("other/next").await.status(), 404);
}

#[tokio::test]
async fn delete_and_delete_twice() {
    // TestTrickle_Delete and handleDelete's error path
    let s = TestServer::with_channel("ch").await;
    assert_eq!(s.delete("ch").await.status(), 200);
    let again = s.delete("ch").await;
    assert_eq!(again.status(), 400);
    assert_eq!(body(again).await, "Invalid stream\n");
}

#[tokio::test]
async fn random_access_within_the_window() {
    // TestTrickle_SetSeq
    let s = TestServer::with_channel("ch").await;
    for i in 0..5u8 {
        let data: &'static [u8] = Box::leak(vec![b'a' + i; 3].into_boxed_slice());
        s.post(&format!("ch/{i}"), data).await;
    }
    for seq in [3, 1, 4, 0, 2] {
        let r = s.get(&format!("ch/{seq}")).await;
        assert_eq!(r.status(), 200);
        let expect = String::from_utf8(vec![b'a' + seq as u8; 3]).unwrap();
        assert_eq!(body(r).await, expect);
    }
}

#[tokio::test]
async fn repost_to_the_same_seq_appends() {
    // TestTrickle_Reset: "HelloGoodbyWorld"
    let s = TestServer::with_channel("ch").await;
    let (tx1, p1) = s.streaming_post("ch/0", &[]);
    tx1.send(Ok(Bytes::from_static(b"Hello"))).await.unwrap();
    settle().await;
    let mut live = s.get("ch/0").await;
    assert_eq!(chunk(&mut live).await.unwrap(), "Hello");
    let (tx2, p2) = s.streaming_post("ch/0", &[]);
    tx2.send(Ok(Bytes::from_static(b"GoodbyWorld")))
        .await
        .unwrap();
    assert_eq!(chunk(&mut live).await.unwrap(), "GoodbyWorld");
    drop((tx1, tx2));
    for p in [p1, p2] {
        let r = tokio::time::timeout(WAIT, p)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "Lp-Trickle-Seq"), Some("0"));
    }
    assert_eq!(body(s.get("ch/0").await).await, "HelloGoodbyWorld");
}

#[tokio::test]
async fn publisher_reset_unblocks_readers_and_echoes_seq() {
    // TestTrickle_PublisherReset
    let s = TestServer::with_channel("ch").await;
    let (tx0, _p0) = s.streaming_post("ch/0", &[]);
    tx0.send(Ok(Bytes::from_static(b"Hello"))).await.unwrap();
    settle().await;
    let mut blocked = s.get("ch/0").await;
    assert_eq!(chunk(&mut blocked).await.unwrap(), "Hello");
    let rest = tokio::spawn(async move { blocked.chunk().await.map(|c| c.is_none()) });
    settle().await;
    assert!(!rest.is_finished(), "reader should wait for more of seq 0");

    let r = s
        .http
        .post(s.url("ch/-1"))
        .header("Content-Type", "text/plain")
        .header("Lp-Trickle-Reset", "true")
        .body("after-reset")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Lp-Trickle-Seq"), Some("1"));

    let ended = tokio::time::timeout(WAIT, rest).await.unwrap().unwrap();
    assert!(ended.unwrap(), "reset must end the blocked read");
    assert_eq!(body(s.get("ch/0").await).await, "Hello");
    assert_eq!(body(s.get("ch/1").await).await, "after-reset");
}

#[tokio::test]
async fn empty_segment() {
    // TestTrickle_EmptySegment
    let s = TestServer::with_channel("ch").await;
    let p = s.post("ch/0", b"").await;
    assert_eq!(p.status(), 200);
    assert_eq!(header(&p, "Lp-Trickle-Seq"), Some("0"));
    let r = s.get("ch/0").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Lp-Trickle-Seq"), Some("0"));
    assert_eq!(header(&r, "Lp-Trickle-Closed"), None);
    assert_eq!(header(&r, "Lp-Trickle-Latest"), Some("1"));
    assert_eq!(body(r).await, "");
}

#[tokio::test]
async fn idle_channels_are_swept() {
    // TestTrickle_IdleSweep
    let s = TestServer::start(ServerConfig {
        idle_timeout: Duration::from_millis(1),
        sweep_interval: Duration::from_millis(10),
        ..ServerConfig::default()
    })
    .await;
    s.server.create_channel("ch", "text/plain");
    s.server.create_channel("_kept", "text/plain");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.get("ch/-1").await.status(), 404);
    assert!(
        s.server.has_channel("_kept"),
        "names starting with _ are never swept"
    );
}

#[tokio::test]
async fn start_positions_of_subscribers() {
    // TestTrickle_SetSubStart: -2 is the current segment, -1 waits for the next.
    let s = TestServer::with_channel("ch").await;
    s.post("ch/0", b"first").await;
    s.post("ch/1", b"second").await;
    let cur = s.get("ch/-2").await;
    assert_eq!(header(&cur, "Lp-Trickle-Seq"), Some("1"));
    assert_eq!(body(cur).await, "second");

    let next = tokio::spawn({
        let (http, url) = (s.http.clone(), s.url("ch/-1"));
        async move { http.get(url).send().await.unwrap() }
    });
    settle().await;
    s.post("ch/2", b"third").await;
    let next = tokio::time::timeout(WAIT, next).await.unwrap().unwrap();
    assert_eq!(header(&next, "Lp-Trickle-Seq"), Some("2"));
    assert_eq!(body(next).await, "third");
}

#[tokio::test]
async fn bytes_reach_subscribers_while_the_segment_is_published() {
    let s = TestServer::with_channel("ch").await;
    let sub = tokio::spawn({
        let (http, url) = (s.http.clone(), s.url("ch/0"));
        async move { http.get(url).send().await.unwrap() }
    });
    settle().await;
    let (tx, post) = s.streaming_post("ch/0", &[]);
    tx.send(Ok(Bytes::from_static(b"part1"))).await.unwrap();
    let mut sub = tokio::time::timeout(WAIT, sub).await.unwrap().unwrap();
    assert_eq!(header(&sub, "Lp-Trickle-Seq"), Some("0"));
    assert_eq!(chunk(&mut sub).await.unwrap(), "part1");
    assert!(!post.is_finished(), "the publish is still open");
    tx.send(Ok(Bytes::from_static(b"part2"))).await.unwrap();
    assert_eq!(chunk(&mut sub).await.unwrap(), "part2");
    drop(tx);
    assert_eq!(chunk(&mut sub).await, None);
    let post = tokio::time::timeout(WAIT, post)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(post.status(), 200);
}

#[tokio::test]
async fn concurrent_subscribers_all_get_every_byte() {
    let s = TestServer::with_channel("ch").await;
    let subs: Vec<_> = (0..10)
        .map(|_| {
            let (http, url) = (s.http.clone(), s.url("ch/0"));
            tokio::spawn(async move { http.get(url).send().await.unwrap().bytes().await })
        })
        .collect();
    settle().await;
    let (tx, post) = s.streaming_post("ch/0", &[]);
    let mut expect = Vec::new();
    for i in 0..100u32 {
        let c = Bytes::from(format!("chunk-{i};"));
        expect.extend_from_slice(&c);
        tx.send(Ok(c)).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(WAIT, post)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    for sub in subs {
        let got = tokio::time::timeout(WAIT, sub)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, expect);
    }
}

#[tokio::test]
async fn slow_subscriber_falls_out_of_the_window() {
    // TestLocalSubscriber_OverrunSeq
    let s = TestServer::with_channel("ch").await;
    for i in 0..8 {
        s.post(&format!("ch/{i}"), b"seg").await;
    }
    let r = s.get("ch/1").await;
    assert_eq!(r.status(), 470);
    assert_eq!(header(&r, "Lp-Trickle-Latest"), Some("8"));
    assert_eq!(header(&r, "Lp-Trickle-Seq"), Some("1"));
    assert_eq!(body(r).await, "Entry not found");
    // Too far ahead is 470 as well; -2 recovers the newest.
    let ahead = s.get("ch/20").await;
    assert_eq!(ahead.status(), 470);
    assert_eq!(header(&ahead, "Lp-Trickle-Latest"), Some("8"));
    let cur = s.get("ch/-2").await;
    assert_eq!(header(&cur, "Lp-Trickle-Seq"), Some("7"));
    // A closed channel answers 200 + Closed instead of 470 for a missing seq.
    let ch = "gone";
    s.server.create_channel(ch, "text/plain");
    let waiting = tokio::spawn({
        let (http, url) = (s.http.clone(), s.url("gone/0"));
        async move { http.get(url).send().await.unwrap() }
    });
    settle().await;
    s.server.delete_channel(ch);
    let r = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Lp-Trickle-Closed"), Some("terminated"));
}

#[tokio::test]
async fn delete_of_a_segment() {
    let s = TestServer::with_channel("ch").await;
    let waiting = tokio::spawn({
        let (http, url) = (s.http.clone(), s.url("ch/0"));
        async move { http.get(url).send().await.unwrap() }
    });
    settle().await;
    let r = s.delete("ch/0").await;
    assert_eq!(r.status(), 200);
    let w = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(w.status(), 200);
    assert_eq!(header(&w, "Lp-Trickle-Closed"), None);
    assert_eq!(body(w).await, "");
    let r = s.delete("ch/3").await;
    assert_eq!(r.status(), 400);
    assert_eq!(body(r).await, "Nonexistent segment\n");
    assert_eq!(s.delete("nope/0").await.status(), 404);
}

#[tokio::test]
async fn shutdown_releases_every_waiter() {
    let s = TestServer::with_channel("ch").await;
    let sub = tokio::spawn({
        let (http, url) = (s.http.clone(), s.url("ch/-1"));
        async move { http.get(url).send().await.unwrap() }
    });
    let (tx, post) = s.streaming_post("ch/3", &[]);
    s.server.create_channel("ch2", "text/plain");
    let (tx_mid, post_mid) = s.streaming_post("ch2/0", &[]);
    tx_mid
        .send(Ok(Bytes::from_static(b"partial")))
        .await
        .unwrap();
    settle().await;
    s.server.shutdown();
    let sub = tokio::time::timeout(WAIT, sub).await.unwrap().unwrap();
    assert_eq!(header(&sub, "Lp-Trickle-Closed"), Some("terminated"));
    for p in [post, post_mid] {
        let r = tokio::time::timeout(WAIT, p)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(header(&r, "Lp-Trickle-Closed"), Some("terminated"));
    }
    drop((tx, tx_mid));
    assert!(!s.server.create_channel("late", "text/plain"));
}

#[tokio::test]
async fn long_preconnected_post_is_not_cut() {
    // go-livepeer keeps a POST waiting for its first byte alive with interim 100s; we simply
    // never time a request body out. The publish still lands after a long silence.
    let s = TestServer::with_channel("ch").await;
    let (tx, post) = s.streaming_post("ch/0", &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!post.is_finished());
    tx.send(Ok(Bytes::from_static(b"late"))).await.unwrap();
    drop(tx);
    let r = tokio::time::timeout(WAIT, post)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Lp-Trickle-Seq"), Some("0"));
    assert_eq!(body(s.get("ch/0").await).await, "late");
}

#[tokio::test]
async fn expect_100_continue_gets_an_interim_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::with_channel("ch").await;
    let addr = s
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sock.write_all(
        b"POST /ai/trickle/ch/0 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    sock.write_all(b"ok").await.unwrap();
    let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(reply.starts_with("http/1.1 200"), "{reply}");
    assert!(reply.contains("lp-trickle-seq: 0"), "{reply}");
}
