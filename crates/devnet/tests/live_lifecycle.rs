//! Session lifetime (spec §1.15): a runner expiring mid-session releases its sessions and
//! closes their channels; unregister closes o2r; static runners are health-checked, and an
//! unhealthy one is hidden and loses its sessions.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use common::*;
use lpgw_devnet::{DevnetConfig, LiveConfig, StaticRunnerConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn runner_expiring_mid_session_releases_it() {
    let h = devnet(DevnetConfig {
        live: LiveConfig {
            scope: None,
            heartbeat_interval: Duration::from_millis(50),
            heartbeat_ttl: Duration::from_millis(400),
            ..LiveConfig::default()
        },
        ..plain()
    })
    .await;
    let (_, b) = heartbeat(
        &h,
        &json!({"runner_id":"r1","runner_url":"http://127.0.0.1:9","app":"a/b"}),
    )
    .await;
    let o2r = serde_json::from_str::<Value>(&b).unwrap()["o2r"]["channel_name"]
        .as_str()
        .unwrap()
        .to_string();
    let a: Value = post_json(format!("{}/apps/r1/session", h.orchestrator_url())).await;
    let sid = a["session_id"].as_str().unwrap().to_string();
    assert_eq!(h.live_sessions("r1"), vec![sid.clone()]);
    // No more heartbeats: the runner expires, is swept, and its session goes with it.
    wait_until(|| !h.has_channel(&o2r)).await;
    assert!(h.live_sessions("r1").is_empty());
    let (s, b) = status_text(http().get(format!("{}/x", a["app_url"].as_str().unwrap()))).await;
    assert_eq!((s, b.as_str()), (404, "runner not found\n"));
    assert_eq!(
        discovery_json(&h).await,
        json!([{"address": h.orchestrator_url()}])
    );
    h.shutdown().await;
}

#[tokio::test]
async fn static_runner_health_checks() {
    let status = Arc::new(AtomicU16::new(200));
    let s = status.clone();
    let app = Router::new().route(
        "/health",
        get(move || {
            let s = s.clone();
            async move { StatusCode::from_u16(s.load(Ordering::Relaxed)).unwrap() }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let h = devnet(DevnetConfig {
        live: LiveConfig {
            scope: None,
            health_interval: Duration::from_millis(50),
            static_runners: vec![StaticRunnerConfig {
                label: "fixed".into(),
                routing: "label".into(),
                proxy: false,
                runner_url: format!("http://{addr}"),
                version: String::new(),
                metadata: String::new(),
                mode: String::new(),
                app: "live-video-to-video/static".into(),
                capacity: 2,
                price_info: None,
                health_url: "/health".into(),
                healthy_status_code: 0,
            }],
            ..LiveConfig::default()
        },
        ..plain()
    })
    .await;
    let d = discovery_json(&h).await;
    assert_eq!(
        d[0]["runners"][0]["url"],
        format!("{}/apps/fixed/session", h.orchestrator_url())
    );
    let r = send(http().post(format!("{}/apps/fixed/session", h.orchestrator_url()))).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(h.live_sessions("fixed").len(), 1);
    // Static runners cannot heartbeat.
    let (s, b) = status_text(
        http()
            .post(format!("{}/runners/heartbeat", h.runner_url()))
            .json(&json!({"runner_id":"fixed","runner_url":"http://x","app":"a"})),
    )
    .await;
    assert_eq!((s, b.as_str()), (400, "static runner cannot heartbeat\n"));

    // Unhealthy: hidden, sessions released, reservations refused.
    status.store(503, Ordering::Relaxed);
    wait_until(|| h.live_sessions("fixed").is_empty()).await;
    let d = discovery_json(&h).await;
    assert!(d[0].get("runners").is_none(), "{d}");
    let r = send(http().post(format!("{}/apps/fixed/session", h.orchestrator_url()))).await;
    assert_eq!(r.status().as_u16(), 404);
    // Healthy again: listed and reservable.
    status.store(200, Ordering::Relaxed);
    bounded(async {
        loop {
            if discovery_json(&h).await[0].get("runners").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn handle_faults_full_released_and_removed_runner() {
    let h = devnet(plain()).await;
    let route = h.scope_runner().unwrap();
    let reserve =
        || status_text(http().post(format!("{}/apps/{route}/session", h.orchestrator_url())));
    assert!(h.set_live_runner_capacity(&route, 0));
    assert_eq!(
        reserve().await,
        (503, "no capacity available for runner\n".to_string())
    );
    assert!(h.set_live_runner_capacity(&route, 1));
    let (s, b) = reserve().await;
    assert_eq!(s, 200, "{b}");
    let sid = serde_json::from_str::<Value>(&b).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(h.release_live_session(&route, &sid));
    assert!(!h.release_live_session(&route, &sid));
    assert_eq!(reserve().await.0, 200);
    assert!(h.remove_live_runner(&route));
    assert!(h.live_sessions(&route).is_empty());
    assert_eq!(reserve().await, (404, "runner not found\n".to_string()));
    h.shutdown().await;
}
