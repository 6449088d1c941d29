//! The built-in LV2V runner: follows the control channel, publishes status events, and either
//! applies a visible prompt-driven video effect ([`crate::runner_effect`]) or, for the
//! passthrough models ([`PASSTHROUGH_MODELS`]), copies each input segment to the output channel
//! unchanged (what benchmarks of the gateway's own cost need).
//!
//! It talks to the orchestrator's trickle server over loopback HTTP, as an ai-runner
//! container would (go-livepeer `-liveAITrickleHostForRunner`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::json::{
    JsonReader, JsonReaderConfig, JsonWriter, JsonWriterConfig, is_keepalive,
};
use lpgw_trickle::wire::SeqRequest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::runner_effect::{EffectParams, SharedParams};
pub(crate) use crate::runner_status::RunnerSpec;
use crate::runner_status::{Shared, Status, lock, unix_secs};

/// Models whose runner copies segments through untouched instead of decoding them.
pub(crate) const PASSTHROUGH_MODELS: [&str; 3] = ["noop", "relay", "passthrough"];

/// Whether `model` runs as a passthrough.
pub(crate) fn is_passthrough(model: &str) -> bool {
    PASSTHROUGH_MODELS.contains(&model)
}

/// Runs until the input channel ends or `cancel` fires. Each input segment is announced on
/// `on_segment` (for the meter) as soon as its headers arrive.
pub(crate) async fn run(spec: RunnerSpec, cancel: CancellationToken, on_segment: mpsc::Sender<()>) {
    let status: Shared = Arc::new(Mutex::new(Status::new(
        spec.model.clone(),
        spec.params.clone(),
    )));
    let mut initial = EffectParams::default();
    if let Some(p) = &spec.params {
        initial.update(p);
    }
    let params: SharedParams = Arc::new(Mutex::new(initial));
    let side = async {
        tokio::join!(
            control(&spec.control, status.clone(), params.clone()),
            events(&spec.events, spec.status_interval, status.clone())
        );
        std::future::pending::<()>().await;
    };
    let work = async {
        if is_passthrough(&spec.model) {
            passthrough(&spec, status.clone(), on_segment).await;
        } else {
            let token = cancel.child_token();
            crate::runner_effect::process(&spec, status.clone(), params.clone(), on_segment, token)
                .await;
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        () = work => {}
        () = side => {}
    }
}

async fn passthrough(spec: &RunnerSpec, status: Shared, on_segment: mpsc::Sender<()>) {
    let sub_cfg = SubscriberConfig {
        start: SeqRequest::At(0),
        ..SubscriberConfig::default()
    };
    let (mut sub, mut publ) = match (
        Subscriber::new(&spec.input, sub_cfg),
        Publisher::new(&spec.output, "video/MP2T", PublisherConfig::default()),
    ) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "runner cannot open channels");
            return;
        }
    };
    loop {
        let mut seg = match sub.next_segment().await {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "runner input ended");
                break;
            }
        };
        let _ = on_segment.try_send(());
        {
            let mut s = lock(&status);
            s.segments_in += 1;
            s.last_input_time = Some(unix_secs());
            if s.state != "ONLINE" {
                s.state = "ONLINE";
                s.last_state_update_time = unix_secs();
            }
        }
        let mut writer = match publ.next_segment().await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::debug!(error = %e, "runner output unavailable");
                None
            }
        };
        loop {
            match seg.chunk().await {
                Ok(Some(chunk)) => {
                    if let Some(w) = writer.as_mut()
                        && w.write(chunk).await.is_err()
                    {
                        writer = None;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "runner input segment broke off");
                    break;
                }
            }
        }
        if let Some(w) = writer
            && w.finish().await.is_ok()
        {
            let mut s = lock(&status);
            s.segments_out += 1;
            s.last_output_time = Some(unix_secs());
        }
    }
    let _ = publ.close().await;
}

async fn control(url: &str, status: Shared, params: SharedParams) {
    let cfg = JsonReaderConfig {
        subscriber: SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
        ..JsonReaderConfig::default()
    };
    let Ok(mut reader) = JsonReader::new(url, cfg) else {
        return;
    };
    while let Ok(Some(msg)) = reader.next().await {
        if is_keepalive(&msg) {
            continue;
        }
        params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(&msg);
        let mut s = lock(&status);
        s.last_params = Some(msg);
        s.last_params_update_time = Some(unix_secs());
    }
}

async fn events(url: &str, every: Duration, status: Shared) {
    let cfg = JsonWriterConfig {
        keepalive: None,
        ..JsonWriterConfig::default()
    };
    let Ok(writer) = JsonWriter::new(url, cfg) else {
        return;
    };
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let event = lock(&status).next_event();
        if let Err(e) = writer.send(&event).await {
            tracing::debug!(error = %e, "runner events ended");
            return;
        }
    }
}
