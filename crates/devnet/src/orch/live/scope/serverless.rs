//! The serverless `POST /scope` (server/ai_http.go:1188-1355): payment when priced (the
//! challenge's `payment_url` is `/payment`), then `<mid>-control` and `<mid>-events` and a
//! Scope job (a fresh runner: nothing loaded) whose media channels are `<mid>-<n>-in/out`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::super::Live;
use super::super::meter::UnitMeter;
use super::super::paid::{challenge, payer, payment_headers};
use super::{Channels, MAX_BODY, job, new_pipelines};
use crate::ledger::{LV2V_PIXELS_PER_SEC, Price};
use crate::orch::{payment, random_manifest_id, unix_now};
use crate::respond::{json_error, json_ok, plain_error};

/// Releases a serverless slot on drop.
struct Slot(Arc<Live>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.serverless_in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) async fn start(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(cfg) = live.cfg.scope.clone().filter(|s| s.serverless) else {
        return plain_error(StatusCode::NOT_FOUND, "404 page not found");
    };
    if body.len() > MAX_BODY {
        return plain_error(StatusCode::BAD_REQUEST, "http: request body too large");
    }
    let (mid, meter) = if live.priced() {
        let ph = headers
            .get(lpgw_proto::LIVEPEER_PAYMENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ph.is_empty() || lpgw_proto::decode_payment(ph).is_err() {
            if payer(&headers).is_none() {
                return json_error(
                    StatusCode::PAYMENT_REQUIRED,
                    "invalid live runner payment signer address",
                );
            }
            let now = unix_now();
            let mut info =
                live.orch
                    .base_info(live.orch.price(Some("scope")), random_manifest_id(), now);
            info.capabilities = None;
            let url = format!("{}/payment", live.orch.service_uri);
            return challenge(&live, &info, url);
        }
        let (pay, seg) = match payment_headers(&live, &headers) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let mid = String::from_utf8_lossy(&seg.manifest_id).into_owned();
        if let Err(msg) = payment::process(&live.orch, &pay, &mid, unix_now()) {
            return plain_error(StatusCode::BAD_REQUEST, &msg);
        }
        let price = Price::from_info(pay.expected_price.as_ref());
        let key = (pay.sender.clone(), mid.clone());
        if price.per_unit > 0 && live.orch.ledger().balance(&key) < live.orch.tickets().ev() {
            return plain_error(StatusCode::BAD_REQUEST, "Insufficient balance");
        }
        (mid, (price.per_unit > 0).then_some((key, price)))
    } else {
        (random_manifest_id(), None)
    };
    let used = live.serverless_in_use.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(live.clone());
    if used >= cfg.serverless_capacity {
        drop(slot);
        return plain_error(StatusCode::SERVICE_UNAVAILABLE, "insufficient capacity");
    }
    let control = format!("{mid}-control");
    let events = format!("{mid}-events");
    live.orch
        .trickle
        .create_channel(&control, "application/json");
    live.orch
        .trickle
        .create_channel(&events, "application/json");
    let cancel = live.orch.shutdown.child_token();
    // Each serverless job is a fresh runner process: no pipeline is loaded.
    let job = job::run(
        job::Job {
            live: live.clone(),
            how: Channels::Direct { mid: mid.clone() },
            pipelines: new_pipelines(),
            load_delay: cfg.load_delay,
            manifest_id: mid.clone(),
            events_rotate: cfg.events_rotate,
        },
        live.internal_trickle(&control),
        live.internal_trickle(&events),
        cancel.clone(),
    );
    let l = live.clone();
    let m = mid.clone();
    live.orch.tracker.spawn(async move {
        let _slot = slot;
        let metering = async {
            match meter {
                Some((key, price)) => serverless_meter(&l, key, price).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = job => {}
            () = metering => cancel.cancel(),
        }
        for n in [format!("{m}-control"), format!("{m}-events")] {
            l.orch.trickle.delete_channel(&n);
        }
        tracing::debug!(manifest = %m, "serverless scope job ended");
    });
    json_ok(&json!({
        "control_url": live.public_trickle(&control),
        "events_url": live.public_trickle(&events),
        "manifest_id": mid,
        "publish_url": "",
        "subscribe_url": "",
    }))
}

/// Meters a serverless job in 720p pixel-seconds; returns when the balance runs out.
async fn serverless_meter(live: &Live, key: crate::ledger::AccountKey, price: Price) {
    let interval = live.orch.payment_interval.max(Duration::from_millis(10));
    let mut m = UnitMeter::new(interval, LV2V_PIXELS_PER_SEC, Instant::now());
    loop {
        tokio::time::sleep(interval).await;
        let Some(units) = m.tick(Instant::now()) else {
            continue;
        };
        let debit = live
            .orch
            .ledger()
            .debit(&key, price.fee(units), Instant::now());
        if let Err(e) = debit {
            tracing::warn!(error = %e, "serverless scope job unpaid, closing");
            return;
        }
    }
}
