//! Requests to the runner over control and their answers on events, matched by
//! `request_id`, and the `ping` keepalive that measures the runner's round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lpgw_trickle::json::JsonWriter;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::ScopeHealth;
use crate::error::Error;

/// Writes one message on the control channel.
pub(super) async fn write(control: &JsonWriter, msg: &Value) -> Result<(), Error> {
    control.send(msg).await.map_err(|e| Error::Runner {
        reason: format!("control channel: {e}"),
    })
}

/// Requests waiting for their answer, by `request_id`.
pub(super) type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// Hands an event to the request waiting for it, matched by `request_id` only: an event
/// without one (an uncorrelated `error`) never completes a request.
pub(super) fn deliver(waiters: &Waiters, ev: &Value) {
    let Some(rid) = ev.get("request_id").and_then(Value::as_str) else {
        return;
    };
    let tx = waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(rid);
    if let Some(tx) = tx {
        let _ = tx.send(ev.clone());
    }
}

/// Registers a waiter for `rid`, runs `send`, and waits (bounded by `wait`) for the answer.
pub(super) async fn ask(
    waiters: &Waiters,
    rid: &str,
    wait: Duration,
    token: &CancellationToken,
    send: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<Value, String> {
    let (tx, rx) = oneshot::channel();
    waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(rid.to_owned(), tx);
    let result = async {
        send.await.map_err(|e| e.to_string())?;
        tokio::select! {
            a = tokio::time::timeout(wait, rx) => match a {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(_)) => Err("events reader stopped".to_owned()),
                Err(_) => Err(format!("no answer within {} ms", wait.as_millis())),
            },
            () = token.cancelled() => Err("job ended".to_owned()),
        }
    }
    .await;
    waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(rid);
    result
}

/// Sends a `ping` (with `request_id` and `timestamp`) every `ping_interval` and records the
/// `pong` round trip; pings in a row without a `pong` count as missed, and past
/// `max_missed_pongs` the runner is logged as unresponsive.
pub(super) async fn ping_task(
    control: std::sync::Weak<JsonWriter>,
    waiters: Waiters,
    health: Arc<Mutex<ScopeHealth>>,
    settings: crate::config::ScopeSettings,
    manifest: String,
    token: CancellationToken,
) {
    let period = settings.ping_interval.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let rid = format!("{manifest}-ping-{n}");
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let sent = Instant::now();
        let msg = json!({"type": "ping", "request_id": rid, "timestamp": ts});
        let send = async {
            let c = control.upgrade().ok_or(Error::JobClosed)?;
            write(&c, &msg).await
        };
        let answer = ask(&waiters, &rid, period, &token, send).await;
        if token.is_cancelled() {
            return;
        }
        let mut h = health.lock().unwrap_or_else(|p| p.into_inner());
        match answer {
            Ok(_) => {
                h.last_pong = Some(sent.elapsed());
                h.missed_pongs = 0;
            }
            Err(e) => {
                h.missed_pongs += 1;
                if h.missed_pongs == settings.max_missed_pongs {
                    warn!(missed = h.missed_pongs, error = %e, "scope runner does not answer pings");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_reach_only_the_request_they_name() {
        let waiters: Waiters = Arc::default();
        let (tx_a, mut rx_a) = oneshot::channel();
        waiters.lock().unwrap().insert("a".into(), tx_a);
        for other in [
            json!({"type":"stream_started","request_id":"zzz"}),
            json!({"type":"error","request_id":null,"error":"Unknown message type: None"}),
            json!({"type":"error","error":"no"}),
            json!({"type":"stream_started","channels":[]}),
            json!({"type":"api_response","request_id":7}),
        ] {
            deliver(&waiters, &other);
        }
        assert!(
            rx_a.try_recv().is_err(),
            "an event for nobody completed a request"
        );
        let answer = json!({"type":"api_response","request_id":"a","status":200});
        deliver(&waiters, &answer);
        assert_eq!(rx_a.try_recv().unwrap(), answer);
        assert!(waiters.lock().unwrap().is_empty());
    }
}
