//! Per-key budgets against a priced devnet: a key whose budget runs out mid-stream has its
//! job ended within a payment interval with a `budget_exhausted` error, its next start is
//! refused with 402 and the figures, other keys are untouched, and the money adds up on the
//! orchestrator's side.

mod common;

use std::time::Duration;

use common::{Harness, STEP, devnet_config};
use lpgw_devnet::{DevnetConfig, PriceConfig};
use lpgw_gateway::BudgetConfig;
use lpgw_server::ServerConfig;
use serde_json::{Value, json};

fn priced() -> DevnetConfig {
    DevnetConfig {
        price: Some(PriceConfig {
            per_unit: 1,
            pixels_per_unit: 1,
        }),
        signer: true,
        payment_interval: Duration::from_millis(500),
        ..devnet_config()
    }
}

fn keys() -> Vec<String> {
    vec!["key-zero".into(), "key-one".into()]
}

fn wei(v: &Value) -> u128 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a wei string: {v}"))
        .parse()
        .unwrap()
}

async fn start_scope(h: &Harness, key: &str) -> (u16, Value) {
    h.post_json("/stream/start", Some(key), json!({"model_id": "scope"}))
        .await
}

async fn status(h: &Harness, key: &str, id: &str) -> Value {
    let (code, v) = h.get(&format!("/stream/{id}/status"), Some(key)).await;
    assert_eq!(code, 200, "{v}");
    v
}

/// The value of a Scope session's reservation payment and of one funding payment, from an
/// unlimited service: `(opening, periodic)`.
async fn payment_sizes() -> (u128, u128) {
    let config = ServerConfig {
        api_keys: keys(),
        ..ServerConfig::default()
    };
    let h = Harness::start_with(config, priced()).await;
    let (code, s) = start_scope(&h, "key-zero").await;
    assert_eq!(code, 200, "{s}");
    let id = s["stream_id"].as_str().unwrap().to_owned();
    let mut seen: Vec<(u64, u128)> = Vec::new();
    tokio::time::timeout(STEP, async {
        loop {
            let st = status(&h, "key-zero", &id).await;
            let p = &st["spend"];
            let entry = (p["payments"].as_u64().unwrap(), wei(&p["spent_wei"]));
            if seen.last() != Some(&entry) {
                seen.push(entry);
            }
            if seen.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("three payments");
    // The start (pipeline load included) may outlast a funding interval or two, so the
    // first status can already count several payments: every funding payment is the same,
    // and the reservation's is what the first figure holds beyond them.
    let steps: Vec<(u64, u128)> = seen
        .windows(2)
        .map(|w| (w[1].0 - w[0].0, w[1].1 - w[0].1))
        .collect();
    let (n, total) = (steps[0].0, steps[0].1);
    let periodic = total / u128::from(n);
    for (n, v) in &steps {
        assert_eq!(
            *v,
            periodic * u128::from(*n),
            "funding payments differ: {seen:?}"
        );
    }
    let (first_n, first_v) = seen[0];
    let opening = first_v - periodic * u128::from(first_n - 1);
    h.finish().await;
    (opening, periodic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_budget_stops_its_job_and_cannot_start_another() {
    let (opening, periodic) = payment_sizes().await;
    assert!(opening > 0 && periodic > 0);
    // Room for the reservation and two funding payments (the start itself, pipeline load
    // included, may outlast one), and nothing after.
    let budget = opening + 2 * periodic;
    let config = ServerConfig {
        api_keys: keys(),
        key_budget: BudgetConfig {
            usd: None,
            wei: Some(budget),
        },
        ..ServerConfig::default()
    };
    let h = Harness::start_with(config, priced()).await;
    let (code, s) = start_scope(&h, "key-zero").await;
    assert_eq!(code, 200, "{s}");
    let id = s["stream_id"].as_str().unwrap().to_owned();

    // The events stream sees the error.
    let events = h
        .http
        .get(h.url(&format!("/stream/{id}/events")))
        .header("X-API-Key", "key-zero")
        .send()
        .await
        .unwrap();
    let sse = tokio::spawn(async move {
        let mut events = events;
        let mut text = String::new();
        while let Ok(Some(chunk)) = events.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("budget_exhausted") {
                break;
            }
        }
        text
    });

    // The job ends on its own at the payment that does not fit (the signer bills the time
    // since its last payment, so payments come every few funding cycles).
    let last = std::sync::Mutex::new(Value::Null);
    let ended = tokio::time::timeout(STEP, async {
        loop {
            let st = status(&h, "key-zero", &id).await;
            if st["phase"] == "error" {
                return st;
            }
            *last.lock().unwrap() = st;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the job never ended: {}", last.lock().unwrap()));
    let err = ended["error"].as_str().unwrap();
    assert!(
        err.starts_with("budget_exhausted: budget key#0 exhausted"),
        "{ended}"
    );
    // Exactly what fit was paid: the reservation and two funding payments.
    assert_eq!(ended["spend"]["payments"], 3, "{ended}");
    assert_eq!(wei(&ended["spend"]["spent_wei"]), budget);
    let text = tokio::time::timeout(STEP, sse).await.unwrap().unwrap();
    assert!(text.contains("\"error\":\"budget_exhausted\""), "{text}");

    // The orchestrator credited the same amount, and nothing after.
    let (n, credited) = h.devnet().paid();
    assert_eq!((n, credited), (3, budget));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(h.devnet().paid(), (n, credited), "paid after the job ended");

    // The next start for that key is refused with the figures.
    let (code, refused) = start_scope(&h, "key-zero").await;
    assert_eq!(code, 402, "{refused}");
    assert_eq!(refused["budget"]["name"], "key#0");
    assert_eq!(wei(&refused["budget"]["limit_wei"]), budget);
    assert_eq!(wei(&refused["budget"]["spent_wei"]), budget);
    assert!(refused["error"].as_str().unwrap().contains("exhausted"));

    // Another key has its own budget.
    let (code, other) = start_scope(&h, "key-one").await;
    assert_eq!(code, 200, "{other}");
    let other_id = other["stream_id"].as_str().unwrap();
    let st = status(&h, "key-one", other_id).await;
    assert_eq!(st["key_spend"]["key"], "key#1");
    assert_eq!(wei(&st["key_spend"]["budget"]["limit_wei"]), budget);

    let metrics = h.metrics().await;
    assert!(metrics.contains("lpgw_budget_stops_total 1\n"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "lpgw_key_spend_wei_total{{key=\"key#0\"}} {budget}\n"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("lpgw_limit_rejections_total{limit=\"budget\"} 1\n"));
    h.finish().await;
}

/// A service budget is shared by every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_budget_holds_for_all_keys_together() {
    let config = ServerConfig {
        api_keys: keys(),
        service_budget: BudgetConfig {
            usd: None,
            wei: Some(1),
        },
        ..ServerConfig::default()
    };
    let h = Harness::start_with(config, priced()).await;
    // One wei cannot cover any reservation: the start fails before anything is paid.
    let (code, refused) = start_scope(&h, "key-one").await;
    assert_eq!(code, 402, "{refused}");
    assert!(
        refused["rejections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"]
                .as_str()
                .unwrap()
                .contains("budget service exhausted")),
        "{refused}"
    );
    assert_eq!(h.devnet().paid(), (0, 0));
    h.finish().await;
}
