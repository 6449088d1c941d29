//! The live-runner flow (spec §1): the runner registry with dynamic (heartbeat), static and
//! built-in runners; `GET /discovery`; session reservation with go-livepeer's 402 payment
//! challenge; session payments, stops and the meter; runner callbacks (channels, proxies,
//! stop); the app proxy; and the Scope runners (`POST /scope` and a persistent runner).
//!
//! Runners reach the orchestrator at its *runner-facing* base (`-liveRunnerAddr`): the
//! devnet's internal plain-HTTP loopback listener, which serves the runner endpoints and the
//! trickle server. Clients use the public service URI.

pub(crate) mod advert;
mod callbacks;
pub(crate) mod config;
mod handlers;
mod ids;
mod meter;
mod paid;
mod price;
mod proxy;
mod registry;
mod reply;
mod scope;
mod statics;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::routing::{any, get, post};
use bytes::Bytes;
use lpgw_trickle::json::{JsonWriter, JsonWriterConfig};
use tokio::sync::mpsc;

use self::advert::Advert;
use self::config::LiveConfig;
use self::price::Decimal;
use self::registry::{ChannelDesc, LiveError, Registry, Released, Removed};
use super::Orch;

/// The shared state of the live-runner side.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) orch: Arc<Orch>,
    pub(crate) cfg: LiveConfig,
    pub(crate) eth_usd: Decimal,
    /// Runner-facing base URL (no trailing slash).
    pub(crate) runner_base: String,
    reg: Mutex<Registry>,
    /// o2r queues by channel name (32 messages, as go-livepeer's).
    o2r: Mutex<HashMap<String, mpsc::Sender<Bytes>>>,
    /// Serverless Scope jobs running now.
    pub(crate) serverless_in_use: AtomicU32,
    /// The built-in persistent Scope runners' routes, in registration order.
    pub(crate) scope_routes: Mutex<Vec<String>>,
    pub(crate) client: reqwest::Client,
    pub(crate) proxy_client: proxy::ProxyClient,
}

/// Messages the o2r queue holds before dropping (live_runner.go:1604-1620).
const O2R_QUEUE: usize = 32;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Bookkeeping updated in single steps; keep serving after a panic elsewhere.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// RFC 3339 UTC with nanoseconds, as Go's `time.RFC3339Nano` prints it.
pub(crate) fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let nanos = d.subsec_nanos();
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_string()
    };
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{frac}Z")
}

/// Go's `time.Duration.String()` for whole milliseconds and up (`5s`, `1m30s`, `250ms`).
pub(crate) fn go_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let total = d.as_secs_f64();
    let h = d.as_secs() / 3600;
    let m = d.as_secs() % 3600 / 60;
    let s = total - (h * 3600 + m * 60) as f64;
    let s = format!("{s}");
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

impl Live {
    pub(crate) fn new(orch: Arc<Orch>, cfg: LiveConfig, runner_base: String) -> Arc<Self> {
        let eth_usd = Decimal::from_f64(cfg.eth_usd).unwrap_or_else(|| {
            tracing::warn!(eth_usd = cfg.eth_usd, "unusable ETH price, using 2000");
            Decimal::parse("2000").unwrap_or_else(|| unreachable!("constant parses"))
        });
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            reg: Mutex::new(Registry::new(cfg.orch_secret.clone(), cfg.heartbeat_ttl)),
            orch,
            eth_usd,
            runner_base,
            cfg,
            o2r: Mutex::new(HashMap::new()),
            serverless_in_use: AtomicU32::new(0),
            scope_routes: Mutex::new(Vec::new()),
            client,
            proxy_client: proxy::client(),
        })
    }

    pub(crate) fn reg(&self) -> MutexGuard<'_, Registry> {
        lock(&self.reg)
    }

    /// Whether runner prices are charged (the devnet is "onchain").
    pub(crate) fn priced(&self) -> bool {
        self.orch.onchain
    }

    pub(crate) fn public_trickle(&self, name: &str) -> String {
        format!("{}/ai/trickle/{name}", self.orch.service_uri)
    }

    pub(crate) fn internal_trickle(&self, name: &str) -> String {
        format!("{}/ai/trickle/{name}", self.runner_base)
    }

    /// A session channel descriptor; the trickle channel is `<sid>-<name>`.
    pub(crate) fn session_channel(&self, sid: &str, name: &str, mime: &str) -> ChannelDesc {
        let channel_name = format!("{sid}-{name}");
        ChannelDesc {
            name: name.to_string(),
            url: self.public_trickle(&channel_name),
            internal_url: Some(self.internal_trickle(&channel_name)),
            channel_name,
            mime_type: mime.to_string(),
        }
    }

    /// The o2r descriptor of a new runner (live_runner.go:1162-1180).
    fn o2r_channel(&self, runner_id: &str, seed: &[u8; 32]) -> ChannelDesc {
        let tag: String = ids::derive_secret(seed, "trickle:o2r")
            .chars()
            .take(16)
            .collect();
        let channel_name = format!("{runner_id}-{tag}-o2r");
        ChannelDesc {
            name: "o2r".into(),
            url: self.internal_trickle(&channel_name),
            internal_url: None,
            channel_name,
            mime_type: "application/json".into(),
        }
    }

    /// Registers (or refreshes) a runner by heartbeat; starts the o2r writer of a new one.
    pub(crate) fn heartbeat(
        &self,
        runner_id: String,
        advert: Advert,
        auth: &str,
    ) -> Result<registry::Beat, LiveError> {
        let beat = self.reg().heartbeat(
            runner_id,
            advert,
            auth,
            Instant::now(),
            ids::seed(),
            |id, seed| self.o2r_channel(id, seed),
        )?;
        if let Some((_, ch)) = &beat.first {
            self.orch
                .trickle
                .create_channel(&ch.channel_name, &ch.mime_type);
            let cfg = JsonWriterConfig {
                keepalive: Some(self.cfg.o2r_keepalive),
                ..JsonWriterConfig::default()
            };
            match JsonWriter::new(&self.internal_trickle(&ch.channel_name), cfg) {
                Ok(w) => {
                    let (tx, mut rx) = mpsc::channel::<Bytes>(O2R_QUEUE);
                    lock(&self.o2r).insert(ch.channel_name.clone(), tx);
                    // Ends when the runner is removed (the sender is dropped) or at shutdown.
                    let shutdown = self.orch.shutdown.clone();
                    self.orch.tracker.spawn(async move {
                        loop {
                            let msg = tokio::select! {
                                () = shutdown.cancelled() => break,
                                m = rx.recv() => match m {
                                    Some(m) => m,
                                    None => break,
                                },
                            };
                            if let Err(e) = w.send_raw(msg).await {
                                tracing::debug!(error = %e, "o2r writer ended");
                                return;
                            }
                        }
                        let _ = w.close().await;
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot start o2r writer"),
            }
            tracing::debug!(runner = %beat.runner_id, "live runner registered");
        }
        Ok(beat)
    }

    /// Queues an o2r session event; drops it when the queue is full (live_runner.go:1604-1620).
    fn o2r_event(&self, channel: &str, event: &str, sid: &str) {
        let msg = serde_json::json!({
            "event": event,
            "session": sid,
            "timestamp": rfc3339_nano(SystemTime::now()),
        });
        let Ok(bytes) = serde_json::to_vec(&msg) else {
            return;
        };
        let writers = lock(&self.o2r);
        let Some(w) = writers.get(channel) else {
            return;
        };
        if let Err(e) = w.try_send(bytes.into()) {
            tracing::warn!(error = %e, event, session = sid, "o2r event dropped");
        }
    }

    /// Sends `reserved` for a new session of `route`.
    pub(crate) fn announce_reserved(&self, route: &str, sid: &str) {
        let channel = self.reg().o2r_of(route);
        if let Some(c) = channel {
            self.o2r_event(&c, "reserved", sid);
        }
    }

    /// Cleans up after a release: channels, o2r event.
    pub(crate) fn finish_release(&self, r: Released) {
        for c in &r.channels {
            self.orch.trickle.delete_channel(c);
        }
        if let Some(o2r) = &r.o2r {
            self.o2r_event(o2r, "released", &r.sid);
        }
        tracing::debug!(runner = %r.route, session = %r.sid, "live session released");
    }

    /// Releases a session if it exists.
    pub(crate) fn release(&self, route: &str, sid: &str) -> bool {
        let released = self.reg().release(route, sid);
        match released {
            Some(r) => {
                self.finish_release(r);
                true
            }
            None => false,
        }
    }

    /// Cleans up after a runner is removed: o2r first, then its sessions.
    pub(crate) fn finish_remove(&self, r: Removed) {
        if let Some(o2r) = &r.o2r {
            lock(&self.o2r).remove(o2r);
            self.orch.trickle.delete_channel(o2r);
        }
        for s in r.sessions {
            self.finish_release(s);
        }
        tracing::debug!(runner = %r.route, "live runner removed");
    }

    /// Removes a runner as expiry would (o2r closed, sessions released).
    pub(crate) fn remove_runner(&self, route: &str) -> bool {
        let removed = self.reg().remove(route);
        removed.map(|r| self.finish_remove(r)).is_some()
    }

    /// Sessions of `route` now.
    pub(crate) fn sessions_of(&self, route: &str) -> Vec<String> {
        self.reg()
            .get(route, Instant::now())
            .map(registry::Runner::session_ids)
            .unwrap_or_default()
    }

    /// Starts the expiry sweep and the static runners' health checks.
    pub(crate) fn start_tasks(self: &Arc<Self>) {
        let live = self.clone();
        let shutdown = self.orch.shutdown.clone();
        let every = self
            .cfg
            .heartbeat_interval
            .max(std::time::Duration::from_millis(10));
        self.orch.tracker.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let gone = live.reg().sweep(Instant::now());
                for g in gone {
                    tracing::debug!(runner = %g.route, "live runner expired");
                    live.finish_remove(g);
                }
            }
        });
        statics::start(self);
    }

    /// The runner records `GET /discovery` lists now.
    pub(crate) fn discovery_runners(&self) -> Vec<serde_json::Value> {
        handlers::discovery_runners(self)
    }

    /// Serverless capacity left.
    pub(crate) fn serverless_available(&self, total: u32) -> u32 {
        total.saturating_sub(self.serverless_in_use.load(Ordering::Relaxed))
    }
}

/// Routes clients use (the public service URI).
pub(crate) fn public_router(live: Arc<Live>) -> Router {
    runner_routes()
        .route("/discovery", get(handlers::discovery))
        .route("/apps/{rid}/session", post(handlers::reserve))
        .route("/apps/{rid}/session/{sid}/stop", post(handlers::stop))
        .route("/apps/{rid}/session/{sid}/payment", post(paid::payment))
        .route("/apps/{rid}/session/{sid}/app", any(proxy::session_root))
        .route(
            "/apps/{rid}/session/{sid}/app/{*path}",
            any(proxy::session_path),
        )
        .route("/apps/{rid}/app", any(proxy::single_shot_root))
        .route("/apps/{rid}/app/{*path}", any(proxy::single_shot_path))
        .route("/run/{proxy}", any(proxy::by_id_root))
        .route("/run/{proxy}/{*path}", any(proxy::by_id_path))
        .route("/scope", post(scope::serverless::start))
        .route("/refresh-payment", post(paid::refresh))
        .with_state(live)
}

fn runner_routes() -> Router<Arc<Live>> {
    Router::new()
        .route("/runners/heartbeat", post(handlers::heartbeat))
        .route("/runners/{rid}/unregister", post(handlers::unregister))
        .route(
            "/runner/{rid}/session/{sid}/channels",
            post(callbacks::create_channels).delete(callbacks::delete_channels),
        )
        .route(
            "/runner/{rid}/session/{sid}/proxy",
            post(callbacks::create_proxy),
        )
        .route(
            "/runner/{rid}/session/{sid}/stop",
            post(callbacks::runner_stop),
        )
}

/// Routes runners use at the runner-facing base.
pub(crate) fn internal_router(live: Arc<Live>) -> Router {
    runner_routes().with_state(live)
}

/// Registers the configured static and built-in runners and starts the background tasks.
pub(crate) async fn start(live: &Arc<Live>) -> Result<(), crate::DevnetError> {
    statics::register_configured(live)?;
    scope::register_builtin(live).await?;
    live.start_tasks();
    Ok(())
}
