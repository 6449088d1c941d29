//! One LV2V session: its capacity slot, its four trickle channels, the built-in runner and
//! the meter that releases it when the payer's balance runs out (ai_http.go:1085-1136).

use std::sync::Arc;
use std::time::Instant;

use lpgw_proto::PriceInfo;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Orch;
use crate::ledger::{Meter, Price};
use crate::runner::{self, RunnerSpec};

/// A reserved LV2V slot; released on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    orch: Arc<Orch>,
    model: String,
}

impl Slot {
    /// Reserves a slot of `model`, or `None` without capacity (or for an unknown model).
    pub(crate) fn reserve(o: &Arc<Orch>, model: &str) -> Option<Self> {
        if !o.serves(model) {
            return None;
        }
        let total = o.model_capacity();
        o.capacity().try_reserve(model, total).then(|| Self {
            orch: o.clone(),
            model: model.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.orch.capacity().release(&self.model);
    }
}

/// What a session runs.
#[derive(Debug)]
pub(crate) struct SessionSpec {
    pub(crate) mid: String,
    pub(crate) model: String,
    pub(crate) params: Option<Value>,
    pub(crate) sender: Vec<u8>,
    pub(crate) price: Option<PriceInfo>,
}

/// The four channel URLs of a session.
#[derive(Debug, Clone)]
pub(crate) struct Urls {
    pub(crate) publish: String,
    pub(crate) subscribe: String,
    pub(crate) control: String,
    pub(crate) events: String,
}

impl Urls {
    fn under(base: &str, mid: &str) -> Self {
        Self {
            publish: format!("{base}/{mid}"),
            subscribe: format!("{base}/{mid}-out"),
            control: format!("{base}/{mid}-control"),
            events: format!("{base}/{mid}-events"),
        }
    }
}

const MIME_TS: &str = "video/MP2T";
const MIME_JSON: &str = "application/json";

fn channel_names(mid: &str) -> [(String, &'static str); 4] {
    [
        (mid.to_string(), MIME_TS),
        (format!("{mid}-out"), MIME_TS),
        (format!("{mid}-control"), MIME_JSON),
        (format!("{mid}-events"), MIME_JSON),
    ]
}

/// Creates the channels, starts the session task and returns the public URLs.
pub(crate) fn start(o: &Arc<Orch>, spec: SessionSpec, slot: Slot) -> Urls {
    for (name, mime) in channel_names(&spec.mid) {
        o.trickle.create_channel(&name, mime);
    }
    let token = o.shutdown.child_token();
    o.sessions().insert(spec.mid.clone(), token.clone());
    let public = Urls::under(&format!("{}/ai/trickle", o.service_uri), &spec.mid);
    let task = run(o.clone(), spec, slot, token);
    o.tracker.spawn(task);
    public
}

async fn run(o: Arc<Orch>, spec: SessionSpec, slot: Slot, token: CancellationToken) {
    let internal = Urls::under(&o.runner_trickle_base, &spec.mid);
    // The runner subscribes to the input and publishes the output (the swap of ai_http.go).
    let runner_spec = RunnerSpec {
        model: spec.model.clone(),
        params: spec.params.clone(),
        input: internal.publish,
        output: internal.subscribe,
        control: internal.control,
        events: internal.events,
        status_interval: o.status_interval,
    };
    let (seg_tx, mut seg_rx) = mpsc::channel::<()>(8);
    let runner = runner::run(runner_spec, token.child_token(), seg_tx);
    tokio::pin!(runner);
    let price = Price::from_info(spec.price.as_ref());
    let mut meter =
        (o.onchain && price.per_unit > 0).then(|| Meter::new(o.payment_interval, Instant::now()));
    let key = (spec.sender.clone(), spec.mid.clone());
    tracing::debug!(manifest = %spec.mid, model = %spec.model, "lv2v session started");
    let reason = loop {
        tokio::select! {
            () = token.cancelled() => break "cancelled",
            () = &mut runner => break "input ended",
            Some(()) = seg_rx.recv() => {
                let Some(units) = meter.as_mut().and_then(|m| m.tick(Instant::now())) else {
                    continue;
                };
                let fee = price.fee(units);
                if let Err(e) = o.ledger().debit(&key, fee, Instant::now()) {
                    tracing::warn!(manifest = %spec.mid, error = %e, "lv2v session unpaid, closing");
                    break "unpaid";
                }
                tracing::debug!(manifest = %spec.mid, units, fee = %fee, "lv2v metered");
            }
        }
    };
    for (name, _) in channel_names(&spec.mid) {
        o.trickle.delete_channel(&name);
    }
    token.cancel();
    o.sessions().remove(&spec.mid);
    drop(slot);
    tracing::debug!(manifest = %spec.mid, reason, "lv2v session closed");
}
