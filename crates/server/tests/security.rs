//! Ownership, keys, the orchestrator allow-list and job limits.

mod common;

use common::{Harness, STEP, jpeg};
use futures::StreamExt as _;
use lpgw_server::ServerConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn keyed(limit: usize) -> ServerConfig {
    ServerConfig {
        api_keys: vec!["alice".into(), "bob".into()],
        max_jobs_per_key: limit,
        orchestrator_allow_list: vec!["allowed.invalid".into()],
        ..ServerConfig::default()
    }
}

/// The close code the server sends right after accepting.
async fn ws_close_code(h: &Harness, query: &str) -> CloseCode {
    let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(h.ws_url(query)))
        .await
        .unwrap()
        .expect("the upgrade is accepted before checks");
    loop {
        match tokio::time::timeout(STEP, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => return f.code,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_cannot_see_stop_control_or_stream_a_job() {
    let h = Harness::start(keyed(10)).await;
    let (status, _) = h.post_json("/start-job", None, json!({})).await;
    assert_eq!(status, 401, "no key");
    let (status, _) = h.post_json("/start-job", Some("mallory"), json!({})).await;
    assert_eq!(status, 401, "wrong key");

    let (status, job) = h.post_json("/start-job", Some("alice"), json!({})).await;
    assert_eq!(status, 200, "{job}");
    let id = job["job_id"].as_str().unwrap().to_string();

    // Bob: 404 everywhere, and his listings are empty.
    for path in [
        format!("/job/{id}"),
        format!("/stream/{id}/status"),
        format!("/stream/{id}/frame"),
    ] {
        let (status, body) = h.get(&path, Some("bob")).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (_, jobs) = h.get("/jobs", Some("bob")).await;
    assert_eq!(jobs, json!([]));
    let (_, streams) = h.get("/streams", Some("bob")).await;
    assert_eq!(streams["streams"], json!([]));
    let (status, _) = h
        .post_json(
            &format!("/job/{id}/control"),
            Some("bob"),
            json!({"message": {"p": 1}}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = h
        .post_json(
            &format!("/stream/{id}/control"),
            Some("bob"),
            json!({"p": 1}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = h
        .post_json(&format!("/stream/{id}/stop"), Some("bob"), json!({}))
        .await;
    assert_eq!(status, 404);
    let r = h
        .http
        .delete(h.url(&format!("/stop-job/{id}")))
        .header("Authorization", "Bearer bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .post(h.url(&format!("/stream/{id}/publish")))
        .header("X-API-Key", "bob")
        .header("content-type", "image/jpeg")
        .body(jpeg(64, 90))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .get(h.url(&format!("/job/{id}/events?api_key=bob")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The query key is for WebSocket and SSE only.
    let (status, _) = h.get(&format!("/job/{id}?api_key=alice"), None).await;
    assert_eq!(status, 401);

    assert_eq!(
        ws_close_code(&h, &format!("job_id={id}&api_key=bob")).await,
        CloseCode::Library(4004)
    );
    assert_eq!(
        ws_close_code(&h, &format!("job_id={id}")).await,
        CloseCode::Library(4001)
    );
    assert_eq!(
        ws_close_code(&h, "job_id=nope&api_key=alice").await,
        CloseCode::Library(4004)
    );

    // Alice still owns a working job.
    let (status, detail) = h.get(&format!("/job/{id}"), Some("alice")).await;
    assert_eq!(status, 200);
    assert_eq!(detail["job_id"], id.as_str());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_url_must_be_on_the_allow_list() {
    let h = Harness::start(keyed(10)).await;
    let (status, body) = h
        .post_json(
            "/start-job",
            Some("alice"),
            json!({"orchestrator_url": "https://evil.example:8935"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not allowed"));
    let (status, _) = h
        .post_json(
            "/stream/start",
            Some("alice"),
            json!({"orchestrator_url": "http://127.0.0.1:1"}),
        )
        .await;
    assert_eq!(status, 400);
    // An allowed host that does not answer: tried, and reported with its rejection.
    let (status, body) = h
        .post_json(
            "/start-job",
            Some("alice"),
            json!({"orchestrator_url": "http://allowed.invalid:1"}),
        )
        .await;
    assert!(status == 502 || status == 503, "{status} {body}");
    assert_eq!(body["rejections"][0]["url"], "http://allowed.invalid:1");
    assert!(body["rejections"][0]["reason"].is_string());
    assert_eq!(h.devnet().active_sessions(), 0);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_respect_the_per_key_limit() {
    let h = Harness::start(keyed(2)).await;
    let starts =
        (0..6).map(|_| h.post_json("/start-job", Some("alice"), json!({"model_id": "noop"})));
    let results = futures::future::join_all(starts).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let limited = results.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(ok, 2, "{results:?}");
    assert_eq!(limited, 4, "{results:?}");
    assert!(
        results
            .iter()
            .any(|(_, b)| b["error"].as_str().is_some_and(|e| e.contains("limit")))
    );
    // Bob has his own budget.
    let (status, _) = h.post_json("/start-job", Some("bob"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(h.devnet().active_sessions(), 3);
    h.finish().await;
}
