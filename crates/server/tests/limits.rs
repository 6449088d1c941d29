//! Per-client-address limits: concurrent jobs per address, the job-start rate, and which
//! address counts (`X-Forwarded-For` only from trusted proxies).

mod common;

use common::{Harness, STEP};
use lpgw_server::ServerConfig;
use serde_json::{Value, json};

/// No per-address limit unless a test sets one.
fn unlimited() -> ServerConfig {
    ServerConfig {
        max_jobs_per_ip: 0,
        start_rate_per_ip: 0.0,
        ..ServerConfig::default()
    }
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

/// A start request with optional key and `X-Forwarded-For` values.
async fn start(h: &Harness, path: &str, key: Option<&str>, xff: &[&str]) -> Answer {
    let mut req = h.http.post(h.url(path)).json(&json!({"model_id": "noop"}));
    if let Some(k) = key {
        req = req.header("X-API-Key", k);
    }
    for v in xff {
        req = req.header("X-Forwarded-For", *v);
    }
    let r = tokio::time::timeout(STEP, req.send())
        .await
        .unwrap()
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    Answer {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

async fn metrics(h: &Harness) -> String {
    let r = tokio::time::timeout(STEP, h.http.get(h.url("/metrics")).send())
        .await
        .unwrap()
        .unwrap();
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_job_limit_holds_under_concurrent_starts_and_frees_after_stop() {
    // Two keys, so the per-key limit is not what stops the starts.
    let h = Harness::start(ServerConfig {
        api_keys: vec!["alice".into(), "bob".into()],
        max_jobs_per_ip: 2,
        ..unlimited()
    })
    .await;
    let starts = (0..6).map(|i| {
        let key = if i % 2 == 0 { "alice" } else { "bob" };
        let path = if i % 3 == 0 {
            "/stream/start"
        } else {
            "/start-job"
        };
        start(&h, path, Some(key), &[])
    });
    let results = futures::future::join_all(starts).await;
    let ok: Vec<&Answer> = results.iter().filter(|a| a.status == 200).collect();
    let limited: Vec<&Answer> = results.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        ok.len(),
        2,
        "{:?}",
        results.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    assert_eq!(limited.len(), 4);
    for a in &limited {
        let e = a.body["error"].as_str().unwrap();
        assert!(e.contains("client address"), "{e}");
    }
    assert_eq!(h.devnet().active_sessions(), 2);
    let text = metrics(&h).await;
    assert!(
        text.contains("lpgw_limit_rejections_total{limit=\"jobs_per_ip\"} 4\n"),
        "{text}"
    );

    // Stopping one frees its slot for the address, whichever key asks.
    let (id, key) = {
        let a = ok[0];
        let id = a.body["job_id"]
            .as_str()
            .or_else(|| a.body["stream_id"].as_str())
            .unwrap()
            .to_string();
        let (_, alice) = h.get(&format!("/job/{id}"), Some("alice")).await;
        (
            id,
            if alice["job_id"].is_string() {
                "alice"
            } else {
                "bob"
            },
        )
    };
    let r = h
        .http
        .delete(h.url(&format!("/stop-job/{id}")))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(start(&h, "/start-job", Some("bob"), &[]).await.status, 200);
    assert_eq!(
        start(&h, "/start-job", Some("alice"), &[]).await.status,
        429
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_rate_limit_answers_429_with_retry_after() {
    let h = Harness::start(ServerConfig {
        // One token every 100 s: nothing refills during the test.
        start_rate_per_ip: 0.01,
        start_burst_per_ip: 2,
        ..unlimited()
    })
    .await;
    assert_eq!(start(&h, "/start-job", None, &[]).await.status, 200);
    assert_eq!(start(&h, "/stream/start", None, &[]).await.status, 200);
    for path in ["/start-job", "/stream/start"] {
        let a = start(&h, path, None, &[]).await;
        assert_eq!(a.status, 429, "{path}: {}", a.body);
        let secs: u64 = a
            .retry_after
            .as_deref()
            .expect("a Retry-After header")
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=100).contains(&secs), "{secs}");
        assert!(a.body["error"].as_str().unwrap().contains("Too many"));
        assert_eq!(a.body["retry_after_secs"], secs);
    }
    // Only the starts are limited; other routes still answer.
    let (status, _) = h.get("/jobs", None).await;
    assert_eq!(status, 200);
    assert_eq!(h.devnet().active_sessions(), 2);
    let text = metrics(&h).await;
    assert!(
        text.contains("lpgw_limit_rejections_total{limit=\"start_rate_per_ip\"} 2\n"),
        "{text}"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_ignored_from_an_untrusted_peer() {
    let h = Harness::start(ServerConfig {
        api_keys: vec!["k".into()],
        max_jobs_per_ip: 1,
        start_rate_per_ip: 0.01,
        start_burst_per_ip: 3,
        ..ServerConfig::default()
    })
    .await;
    let a = start(&h, "/start-job", Some("k"), &["198.51.100.1"]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A different claimed address changes nothing: the peer is the same.
    let b = start(&h, "/start-job", Some("k"), &["198.51.100.2"]).await;
    assert_eq!(b.status, 429, "{}", b.body);
    assert!(b.body["error"].as_str().unwrap().contains("client address"));
    assert!(b.retry_after.is_none(), "a job limit, not a rate limit");
    // Unauthenticated attempts spend the address's start budget too.
    assert_eq!(
        start(&h, "/start-job", None, &["198.51.100.3"])
            .await
            .status,
        401
    );
    let c = start(&h, "/stream/start", Some("k"), &["198.51.100.4"]).await;
    assert_eq!(c.status, 429);
    assert!(c.retry_after.is_some(), "{}", c.body);
    assert_eq!(h.devnet().active_sessions(), 1);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_honoured_from_a_trusted_proxy() {
    let h = Harness::start(ServerConfig {
        api_keys: vec!["k".into()],
        trusted_proxies: vec!["127.0.0.1".into()],
        max_jobs_per_ip: 1,
        start_rate_per_ip: 0.01,
        start_burst_per_ip: 2,
        ..ServerConfig::default()
    })
    .await;
    // Per-address jobs: each forwarded client has its own.
    assert_eq!(
        start(&h, "/start-job", Some("k"), &["198.51.100.1"])
            .await
            .status,
        200
    );
    assert_eq!(
        start(&h, "/stream/start", Some("k"), &["198.51.100.2"])
            .await
            .status,
        200
    );
    let again = start(&h, "/start-job", Some("k"), &["198.51.100.1"]).await;
    assert_eq!(again.status, 429, "{}", again.body);
    assert!(
        again.body["error"]
            .as_str()
            .unwrap()
            .contains("client address")
    );
    // .1 has now used its two tokens. Addresses prepended by the client are not believed:
    // the right-most untrusted hop is still .1.
    let spoofed = start(
        &h,
        "/start-job",
        None,
        &["203.0.113.77, 198.51.100.1", "127.0.0.1"],
    )
    .await;
    assert_eq!(spoofed.status, 429, "{}", spoofed.body);
    assert!(spoofed.retry_after.is_some());

    // Garbage never panics and never picks a fresh address: it falls back to the proxy
    // itself, whose budget is shared by every such request.
    let garbage = [
        "not-an-ip",
        "",
        ",,,,",
        "999.1.1.1",
        "[::1",
        "198.51.100.9 198.51.100.8",
    ];
    let mut statuses = Vec::new();
    for g in garbage {
        statuses.push(start(&h, "/start-job", None, &[g]).await.status);
    }
    let long = vec!["127.0.0.1"; 2000].join(",");
    statuses.push(start(&h, "/start-job", None, &[&long]).await.status);
    // Not text at all.
    let r = h
        .http
        .post(h.url("/start-job"))
        .header(
            "X-Forwarded-For",
            reqwest::header::HeaderValue::from_bytes(b"\xff\xfe 198.51.100.5").unwrap(),
        )
        .send()
        .await
        .unwrap();
    statuses.push(r.status().as_u16());
    assert_eq!(statuses[..2], [401, 401], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    // The service is still up and serving.
    let (status, health) = h.get("/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(health["active_jobs"], 2);
    h.finish().await;
}
