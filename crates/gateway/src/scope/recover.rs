//! Driving a start sequence, and starting the stream again when the runner restarts under
//! it.
//!
//! A Scope runner that restarts (its `POST /api/v1/restart`, or its process re-executed)
//! loses its pipelines and its stream, keeps the job's control and events channels, and
//! says `runner_ready` again. The job then loads the same pipelines, starts the stream in
//! the mode it ran in, replays the parameters the caller changed since, and announces the
//! new media channels with a `stream_restarted` event, so the application can move its
//! media to them and keep its clients. A restart that cannot be recovered, or one too many,
//! ends the job with the reason.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use lpgw_trickle::json::JsonWriter;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use url::Url;

use super::MediaChannels;
use super::plan::{InputMode, StartPlan};
use super::start::{Outcome, StartMachine, Step, Timeouts};
use crate::error::Error;

/// A poison-tolerant lock: the state stays usable after a panic elsewhere.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the running stream is, shared by the job and its recovery task.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The media channels of the current stream.
    pub(super) media: Mutex<Option<MediaChannels>>,
    /// The input mode the stream runs in.
    pub(super) mode: Mutex<Option<InputMode>>,
    /// Every `parameters` update since the start, merged key by key: replayed after a
    /// restart.
    pub(super) params: Mutex<Option<serde_json::Map<String, Value>>>,
    /// Why the stream could not go on after a restart.
    pub(super) fault: Mutex<Option<String>>,
    /// The restart count when the runner last answered a restart request: until it says
    /// `runner_ready` (and the count moves on) the stream is down for a restart.
    pub(super) announced: Mutex<Option<u32>>,
}

impl StreamState {
    /// Remembers a control message that changes parameters.
    pub(super) fn note_control(&self, msg: &Value) {
        if msg.get("type").and_then(Value::as_str) != Some("parameters") {
            return;
        }
        let Some(p) = msg.get("params").and_then(Value::as_object) else {
            return;
        };
        let mut merged = lock(&self.params);
        let m = merged.get_or_insert_with(Default::default);
        for (k, v) in p {
            m.insert(k.clone(), v.clone());
        }
    }
}

/// How a start sequence talks: the control channel and the application's events.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) control: Weak<JsonWriter>,
    pub(super) app: mpsc::Sender<Value>,
}

impl Link {
    pub(super) async fn send(&self, msg: &Value) -> Result<(), Error> {
        let c = self.control.upgrade().ok_or(Error::JobClosed)?;
        super::rpc::write(&c, msg).await
    }
}

/// Runs `m` to its outcome: its messages on the control channel, its progress to the
/// application, the events from `tap` and its deadlines.
pub(super) async fn drive(
    m: &mut StartMachine,
    tap: &mut mpsc::Receiver<Value>,
    link: &Link,
    token: &CancellationToken,
) -> Outcome {
    loop {
        while let Some(step) = m.poll_step() {
            match step {
                Step::Send(v) => {
                    if let Err(e) = link.send(&v).await {
                        return Outcome::Failed(e.to_string());
                    }
                }
                Step::Progress(v) => {
                    let _ = link.app.try_send(v);
                }
            }
        }
        if let Some(o) = m.outcome() {
            return o;
        }
        let Some(due) = m.poll_timeout() else {
            return Outcome::Failed("start sequence stalled".into());
        };
        tokio::select! {
            ev = tap.recv() => match ev {
                Some(v) => m.handle_event(Instant::now(), &v),
                None => return Outcome::Failed("events reader stopped".into()),
            },
            () = tokio::time::sleep_until(due.into()) => m.handle_timeout(Instant::now()),
            () = token.cancelled() => {
                return Outcome::Failed("job ended before the stream started".into());
            }
        }
    }
}

/// The media channels and mode of a finished start, or why it failed.
pub(super) fn started_media(
    outcome: Outcome,
    base: &Url,
) -> Result<(MediaChannels, InputMode), Error> {
    let fail = |reason: String| Error::Runner { reason };
    let (channels, mode) = match outcome {
        Outcome::Started(c, mode) => (c, mode),
        Outcome::Failed(why) => return Err(fail(why)),
        Outcome::Refused(reason) => return Err(Error::ScopeRefused { reason }),
    };
    let media = MediaChannels::from_event(&channels, base).map_err(fail)?;
    if mode == InputMode::Video && media.input.is_none() {
        return Err(fail(
            "stream_started without an input channel in video mode".into(),
        ));
    }
    Ok((media, mode))
}

/// Everything the recovery task needs.
pub(super) struct Recovery {
    pub(super) link: Link,
    /// The start as it ran (the mode it settled on included).
    pub(super) plan: StartPlan,
    pub(super) timeouts: Timeouts,
    pub(super) manifest: String,
    /// What channel URLs resolve against.
    pub(super) base: Url,
    pub(super) state: Arc<StreamState>,
    /// Where the events reader forwards events while a recovery runs; cleared after.
    pub(super) tap: Arc<Mutex<Option<mpsc::Sender<Value>>>>,
    /// One events receiver per restart the events reader saw.
    pub(super) restarts: mpsc::Receiver<mpsc::Receiver<Value>>,
    pub(super) max_restarts: u32,
    pub(super) token: CancellationToken,
}

impl Recovery {
    /// Waits for restarts and starts the stream again after each; ends the job when one
    /// cannot be recovered.
    pub(super) async fn run(mut self) {
        for n in 1u32.. {
            let mut tap = tokio::select! {
                () = self.token.cancelled() => return,
                t = self.restarts.recv() => match t {
                    Some(t) => t,
                    None => return,
                },
            };
            let result = if n > self.max_restarts {
                Err(format!(
                    "the runner restarted {n} times, more than the {} a stream recovers from",
                    self.max_restarts
                ))
            } else {
                self.restart(n, &mut tap).await
            };
            *lock(&self.tap) = None;
            if let Err(why) = result {
                if self.token.is_cancelled() {
                    return;
                }
                warn!(manifest = %self.manifest, reason = %why, "scope stream lost");
                *lock(&self.state.fault) = Some(why);
                self.token.cancel();
                return;
            }
        }
    }

    /// One recovery: the start sequence on the ready runner, the new channels published,
    /// the parameters replayed.
    async fn restart(&self, n: u32, tap: &mut mpsc::Receiver<Value>) -> Result<(), String> {
        let prefix = format!("{}-r{n}", self.manifest);
        let mut m =
            StartMachine::after_ready(self.plan.clone(), self.timeouts, &prefix, Instant::now());
        let outcome = drive(&mut m, tap, &self.link, &self.token).await;
        // The start is over: events no longer need a second reader.
        *lock(&self.tap) = None;
        let (media, mode) = started_media(outcome, &self.base)
            .map_err(|e| format!("the runner restarted and the stream did not start again: {e}"))?;
        *lock(&self.state.media) = Some(media);
        *lock(&self.state.mode) = Some(mode);
        let replay = lock(&self.state.params).clone();
        if let Some(p) = replay {
            let msg = json!({"type": "parameters", "request_id": format!("{prefix}-params"),
                "params": Value::Object(p)});
            self.link
                .send(&msg)
                .await
                .map_err(|e| format!("replaying parameters after a restart: {e}"))?;
        }
        info!(manifest = %self.manifest, restarts = n, "scope stream started again");
        let _ = self
            .link
            .app
            .try_send(json!({"type": "stream_restarted", "restarts": n}));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_updates_merge_and_other_messages_do_not_count() {
        let s = StreamState::default();
        s.note_control(&json!({"type": "ping", "params": {"x": 1}}));
        assert!(lock(&s.params).is_none());
        s.note_control(&json!({"type": "parameters", "params": {"prompt": "a", "noise": 1}}));
        s.note_control(&json!({"type": "parameters", "params": {"prompt": "b"}}));
        s.note_control(&json!({"type": "parameters", "params": "not an object"}));
        let p = lock(&s.params).clone().unwrap();
        assert_eq!(Value::Object(p), json!({"prompt": "b", "noise": 1}));
    }

    #[test]
    fn a_start_that_failed_or_has_no_input_in_video_mode_is_an_error() {
        let base = Url::parse("https://o/").unwrap();
        let out = json!([{"url": "/out", "direction": "out"}]);
        assert!(started_media(Outcome::Started(out.clone(), InputMode::Text), &base).is_ok());
        assert!(started_media(Outcome::Started(out, InputMode::Video), &base).is_err());
        assert!(matches!(
            started_media(Outcome::Refused("no".into()), &base),
            Err(Error::ScopeRefused { .. })
        ));
        assert!(matches!(
            started_media(Outcome::Failed("x".into()), &base),
            Err(Error::Runner { .. })
        ));
    }
}
