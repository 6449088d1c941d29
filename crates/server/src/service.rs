//! The service core shared by both API families: starting, stopping and reaping jobs, their
//! media and events, and shutdown.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use lpgw_gateway::{Gateway, JobSignal};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, info_span, warn};

use crate::auth::{Keys, Owner};
use crate::backend::{JobBackend, MediaEndpoints, StartSpec};
use crate::config::ServerConfig;
use crate::error::{ApiError, reason_label};
use crate::job::{Job, Registry};
use crate::media::{JobMedia, MediaSettings};
use crate::metrics::{JobCounts, Metrics};
use crate::phase::{Phase, PhaseEvent};
use crate::ratelimit::{MAX_TRACKED, RateLimiter};
use crate::spend::{JobSpend, Spending};

/// The shared state of the service: configuration, keys, the job registry, the gateway and
/// the metrics. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

impl crate::client_ip::TrustedProxies for AppState {
    fn trusted_proxies(&self) -> &[IpAddr] {
        &self.0.trusted_proxies
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) keys: Keys,
    pub(crate) registry: Arc<Registry>,
    pub(crate) backend: JobBackend,
    pub(crate) metrics: Arc<Metrics>,
    /// Peers whose `X-Forwarded-For` is believed (canonical form).
    pub(crate) trusted_proxies: Vec<IpAddr>,
    /// Job starts per client address; `None` when unlimited.
    start_limiter: Option<RateLimiter<IpAddr>>,
    /// Cancelled when the service shuts down: WebSocket and SSE connections end.
    pub(crate) shutdown: CancellationToken,
    /// Budgets and spend per key and for the service.
    pub(crate) spending: Arc<Spending>,
}

impl AppState {
    /// Builds the state over a configured gateway.
    pub fn new(config: ServerConfig, gateway: Gateway) -> Self {
        let keys = Keys::new(&config.api_keys);
        if keys.is_open() {
            warn!(
                "no API keys configured: the service is OPEN, anyone reaching it can start paid jobs"
            );
        }
        let registry = Arc::new(Registry::new(
            config.max_jobs_per_key,
            config.max_jobs,
            config.max_jobs_per_ip,
        ));
        let (trusted_proxies, bad) = crate::client_ip::parse_trusted(&config.trusted_proxies);
        if !bad.is_empty() {
            warn!(entries = ?bad, "trusted_proxies entries that are not IP addresses are ignored");
        }
        let start_limiter = RateLimiter::new(
            config.start_rate_per_ip,
            config.start_burst_per_ip,
            MAX_TRACKED,
        );
        Self(Arc::new(Shared {
            keys,
            registry,
            backend: JobBackend::new(gateway),
            metrics: Arc::default(),
            trusted_proxies,
            start_limiter,
            shutdown: CancellationToken::new(),
            spending: Arc::new(Spending::new(&config)),
            config,
        }))
    }

    /// Jobs registered now.
    pub fn active_jobs(&self) -> usize {
        self.0.registry.len()
    }

    /// Stops every job (payments, sessions, channels), bounded by the shutdown timeout.
    pub async fn close_all(&self) {
        let jobs = self.0.registry.all();
        if jobs.is_empty() {
            return;
        }
        info!(jobs = jobs.len(), "closing every job");
        let closes = jobs.into_iter().map(|j| {
            let s = self.clone();
            async move { s.stop_job(&j).await }
        });
        if tokio::time::timeout(
            self.0.config.shutdown_timeout(),
            futures::future::join_all(closes),
        )
        .await
        .is_err()
        {
            warn!("jobs still closing after the shutdown timeout");
        }
    }
}

impl Shared {
    /// Whether a caller may name this orchestrator: its `host[:port]` is on the allow-list.
    fn orchestrator_allowed(&self, url: &str) -> bool {
        let Ok(u) = url::Url::parse(url) else {
            return false;
        };
        if !matches!(u.scheme(), "http" | "https") {
            return false;
        }
        let Some(host) = u.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let with_port = u.port_or_known_default().map(|p| format!("{host}:{p}"));
        self.config.orchestrator_allow_list.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            a == host || Some(&a) == with_port.as_ref()
        })
    }
}

/// Cancels the job's token when the gateway job ends on its own. Before that, a job that
/// failed (a budget ran out, payments were refused) records why and tells its event viewers
/// with an `error` event, so they see it before their streams close.
async fn link_end(job: Weak<Job>, gw_token: CancellationToken, metrics: Arc<Metrics>) {
    let Some(ours) = job.upgrade().map(|j| j.cancel.clone()) else {
        return;
    };
    tokio::select! {
        () = gw_token.cancelled() => {}
        () = ours.cancelled() => return,
    }
    if let Some(j) = job.upgrade() {
        let failure = match j.handle.lock().await.as_ref() {
            Some(h) => h.failure(),
            None => None,
        };
        if let Some(f) = failure {
            if f.code == "budget_exhausted" {
                metrics.budget_stops.fetch_add(1, Relaxed);
            }
            let _ = j.events.send(serde_json::json!({
                "type": "error",
                "error": f.code,
                "message": f.message,
            }));
            j.fail(f.to_string());
        }
    }
    ours.cancel();
}

/// Feeds the job's frame counters to an [`OutputWatchdog`] every half second; a stall is a
/// fault (`no_output`) that ends the job.
///
/// [`OutputWatchdog`]: lpgw_gateway::OutputWatchdog
async fn watch_output(state: AppState, job: Weak<Job>, timeout: Duration, takes_input: bool) {
    let Some(cancel) = job.upgrade().map(|j| j.cancel.clone()) else {
        return;
    };
    let mut dog = lpgw_gateway::OutputWatchdog::new(Instant::now(), timeout, takes_input);
    let (mut seen_in, mut seen_out) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(j) = job.upgrade() else { return };
        let now = Instant::now();
        if j.restarting.load(Relaxed) {
            // No output while the runner comes back; the clock starts again after.
            dog = lpgw_gateway::OutputWatchdog::new(now, timeout, takes_input);
            continue;
        }
        if let Some(m) = j.media() {
            let (i, o) = (
                m.counters.frames_in.load(Relaxed),
                m.counters.frames_out.load(Relaxed),
            );
            if i > seen_in {
                dog.on_input(now);
            }
            if o > seen_out {
                dog.on_output(now);
            }
            (seen_in, seen_out) = (i, o);
        }
        if let Some(stall) = dog.check(now) {
            state.fault(&j, "no_output", stall.to_string());
            return;
        }
    }
}

/// A fresh unguessable job id.
fn new_job_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl AppState {
    /// Takes a job-start token for client address `ip`; 429 with `Retry-After` when its
    /// bucket is empty. Unknown addresses are not limited.
    pub(crate) fn check_start_rate(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let (Some(ip), Some(limiter)) = (ip, &self.0.start_limiter) else {
            return Ok(());
        };
        limiter.check(&ip).map_err(|wait| {
            self.0.metrics.limited("start_rate_per_ip");
            ApiError::rate_limited(
                format!(
                    "Too many job starts from this address (at most {}/s, bursts of {})",
                    self.0.config.start_rate_per_ip, self.0.config.start_burst_per_ip
                ),
                wait,
            )
        })
    }

    /// Starts a job for `owner`, requested from client address `ip`: checks the allow-list
    /// and the limits, starts it through the gateway and registers it.
    pub(crate) async fn start_job(
        &self,
        owner: Owner,
        ip: Option<IpAddr>,
        mut spec: StartSpec,
    ) -> Result<Arc<Job>, ApiError> {
        let s = &self.0;
        if let Some(url) = &spec.orchestrator_url
            && !s.orchestrator_allowed(url)
        {
            return Err(ApiError::bad_request(
                "orchestrator_url is not allowed by this gateway",
            ));
        }
        if s.shutdown.is_cancelled() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
            ));
        }
        s.spending.check(owner).map_err(|e| {
            s.metrics.limited("budget");
            ApiError::budget_exhausted(&e)
        })?;
        let reservation = s.registry.reserve(owner, ip).map_err(|hit| {
            s.metrics.limited(hit.label());
            ApiError::from(hit)
        })?;
        let id = new_job_id();
        let spend = Arc::new(JobSpend::default());
        spec.wallet = s
            .spending
            .wallet(owner, &id, spend.clone(), s.metrics.clone());
        let span = info_span!("job", job_id = %id, model = %spec.model_id, owner = %owner.label());
        let t0 = Instant::now();
        let started = s.backend.start(&spec).instrument(span.clone()).await;
        let mut running = match started {
            Ok(r) => r,
            Err(e) => {
                s.metrics.start_failures.fetch_add(1, Relaxed);
                for r in e.rejections() {
                    s.metrics.rejection(reason_label(&r.reason));
                }
                span.in_scope(|| warn!(error = %e, "job start failed"));
                return Err(ApiError::from_start(&e));
            }
        };
        s.metrics.start_latency.observe(t0.elapsed());
        s.metrics.jobs_started.fetch_add(1, Relaxed);
        let events = running.events();
        let signals = running.signals();
        let gw_token = running.ended();
        let route = running.route();
        let takes_input = running.takes_input();
        let job = Arc::new(Job::new(
            id,
            owner,
            ip,
            spec.model_id.clone(),
            running,
            spend,
        ));
        if job.flow.speaks_scope() && job.endpoints().is_some() {
            // The gateway returns Scope jobs with their stream already started.
            job.on(PhaseEvent::MediaReady);
        }
        s.registry.insert(reservation, job.clone());
        span.in_scope(|| info!(flow = job.flow.as_str(), ?route, "job started"));
        tokio::spawn(link_end(Arc::downgrade(&job), gw_token, s.metrics.clone()));

        if let Some(mut rx) = events {
            let weak = Arc::downgrade(&job);
            let this = self.clone();
            tokio::spawn(
                async move {
                    while let Some(ev) = rx.recv().await {
                        let Some(job) = weak.upgrade() else { break };
                        let _ = job.events.send(ev.clone());
                        match signals.read(&ev) {
                            Some(JobSignal::Fault { code, message }) => {
                                this.fault(&job, code, message);
                            }
                            Some(JobSignal::Restarting) => job.restarting.store(true, Relaxed),
                            Some(JobSignal::MediaMoved) => this.rewire(&job).await,
                            None => {}
                        }
                    }
                }
                .instrument(span.clone()),
            );
        }
        // A stream that should give output and does not is a fault, not silence.
        tokio::spawn(
            watch_output(
                self.clone(),
                Arc::downgrade(&job),
                s.backend.settings().live.scope.output_timeout,
                takes_input,
            )
            .instrument(span.clone()),
        );
        if !takes_input {
            // Text mode: output comes with no input, so decode it from the start.
            if let Err(e) = self.media(&job) {
                warn!(error = %e.message, "starting the output of a text-mode stream failed");
            }
        }
        // The job may end on its own (session gone, price refused): mark it and clean up.
        let this = self.clone();
        let weak = Arc::downgrade(&job);
        let cancel = job.cancel.clone();
        tokio::spawn(
            async move {
                cancel.cancelled().await;
                let Some(job) = weak.upgrade() else { return };
                if this.0.registry.remove(&job.id).is_some() {
                    // `link_end` (or a media fault) recorded why, where there was a reason.
                    let reason = job.error().unwrap_or_else(|| "job ended".into());
                    warn!(%reason, "job ended on its own");
                    job.fail(reason.clone());
                    this.finish(&job).await;
                    this.0
                        .registry
                        .mark_ended(&job.id, Phase::Error, Some(reason));
                }
            }
            .instrument(span),
        );
        Ok(job)
    }

    /// A job that cannot go on: tells its event viewers with an `error` event naming
    /// `code`, records `code: message` as its error (status `phase: "error"`), and stops it
    /// so nothing paid keeps running.
    pub(crate) fn fault(&self, job: &Arc<Job>, code: &str, message: String) {
        if job.is_ended() {
            return;
        }
        warn!(job_id = %job.id, code, %message, "job fault");
        self.0.metrics.fault(code);
        let _ = job.events.send(serde_json::json!({
            "type": "error",
            "error": code,
            "message": message,
        }));
        job.fail(format!("{code}: {message}"));
        let (this, job) = (self.clone(), job.clone());
        tokio::spawn(async move { this.stop_job(&job).await });
    }

    /// Stops a job: unregisters it, then stops payments and the session and deletes its
    /// channels (bounded by the gateway's cleanup timeout).
    pub(crate) async fn stop_job(&self, job: &Arc<Job>) {
        if self.0.registry.remove(&job.id).is_none() {
            return;
        }
        job.on(PhaseEvent::Stopped);
        // In order: the runner stops its stream, then the media goes down, then the job's
        // channels and session.
        if let Some(h) = job.handle.lock().await.as_mut() {
            h.stop_stream().await;
        }
        job.cancel.cancel();
        self.finish(job).await;
        self.0
            .registry
            .mark_ended(&job.id, job.phase(), job.error());
        info!(job_id = %job.id, "job stopped");
    }

    async fn finish(&self, job: &Arc<Job>) {
        let handle = {
            let mut slot = job.handle.lock().await;
            // Moved to the closed totals under the lock a scrape takes too, so no scrape
            // counts the job twice.
            if let Some(h) = slot.as_ref() {
                let p = h.payments();
                self.0
                    .metrics
                    .job_paid(job.flow.as_str(), p.paid, p.value_wei);
            }
            slot.take()
        };
        if let Some(h) = handle {
            h.close().await;
        }
    }

    /// The job's media pipeline, started on first use.
    pub(crate) fn media(&self, job: &Arc<Job>) -> Result<Arc<JobMedia>, ApiError> {
        let mut slot = job.media.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        if job.is_ended() {
            return Err(ApiError::new(StatusCode::GONE, "job has ended"));
        }
        let Some(ends) = job.endpoints() else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job has no media channels yet",
            ));
        };
        let settings = MediaSettings {
            fps: self.0.config.fps,
            jpeg_quality: self.0.config.jpeg_quality,
        };
        let weak: Weak<Job> = Arc::downgrade(job);
        let weak_fault = weak.clone();
        let this = self.clone();
        let span = info_span!("media", job_id = %job.id);
        let m = span
            .in_scope(|| {
                JobMedia::start(
                    &ends,
                    settings,
                    self.0.metrics.clone(),
                    job.cancel.child_token(),
                    move || {
                        if let Some(j) = weak.upgrade() {
                            j.on(PhaseEvent::OutputFrame);
                        }
                    },
                    move |why| {
                        // The job cannot carry video any more: say so in status and events.
                        // While the runner restarts its old channels may go away: that is
                        // the restart's business, which ends the job itself if it fails.
                        if let Some(j) = weak_fault.upgrade() {
                            if j.restarting.load(Relaxed) {
                                info!(reason = %why, "old media channel ended during a restart");
                                return;
                            }
                            this.fault(&j, "media_failed", why);
                        }
                    },
                )
            })
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("media: {e}")))?;
        *slot = Some(m.clone());
        Ok(m)
    }

    /// Moves a job's media to the channels its restarted stream runs on; every viewer,
    /// WebSocket and counter carries on.
    async fn rewire(&self, job: &Arc<Job>) {
        let ends = match job.handle.lock().await.as_ref() {
            Some(h) => MediaEndpoints::of(h),
            None => return,
        };
        let Some(ends) = ends else {
            self.fault(
                job,
                "media_failed",
                "the restarted stream has no media channels".into(),
            );
            return;
        };
        job.set_endpoints(ends.clone());
        let media = job.media.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(m) = media
            && let Err(e) = m.rewire(&ends)
        {
            self.fault(
                job,
                "media_failed",
                format!("moving to the new channels: {e}"),
            );
            return;
        }
        job.restarting.store(false, Relaxed);
        info!(job_id = %job.id, "media moved to the restarted stream's channels");
    }

    /// Closes jobs nobody has used for the idle timeout, until shutdown.
    pub(crate) async fn reap_idle(self) {
        let idle = self.0.config.idle_timeout();
        let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                () = self.0.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for job in self.0.registry.all() {
                if job.viewers.load(Relaxed) == 0 && job.idle_for() >= idle {
                    info!(job_id = %job.id, "closing idle job");
                    self.stop_job(&job).await;
                }
            }
        }
    }

    /// Payments by flow for `/metrics`: closed jobs plus the running ones so far.
    pub(crate) async fn payment_totals(&self) -> crate::metrics::PaymentTotals {
        let mut m = self.0.metrics.closed_payments();
        for f in crate::backend::Flow::ALL {
            m.entry(f.as_str()).or_default();
        }
        for j in self.0.registry.all() {
            if let Some(h) = j.handle.lock().await.as_ref() {
                let p = h.payments();
                let e = m.entry(j.flow.as_str()).or_default();
                e.0 = e.0.saturating_add(p.paid);
                e.1 = e.1.saturating_add(p.value_wei);
            }
        }
        m
    }

    /// What each running job has paid, for `/metrics`.
    pub(crate) fn job_spend_rows(&self) -> Vec<crate::metrics::JobSpendRow> {
        self.0
            .registry
            .all()
            .into_iter()
            .map(|j| {
                let health = j
                    .handle
                    .try_lock()
                    .ok()
                    .and_then(|h| h.as_ref().and_then(|h| h.health()));
                crate::metrics::JobSpendRow {
                    job_id: j.id.clone(),
                    key: j.owner.label(),
                    wei: j.spend.get().1,
                    pong_secs: health.and_then(|h| h.last_pong).map(|d| d.as_secs_f64()),
                    missed_pongs: health.map(|h| h.missed_pongs),
                }
            })
            .collect()
    }

    /// Job counts for `/metrics`.
    pub(crate) fn job_counts(&self) -> JobCounts {
        let mut m = JobCounts::new();
        for f in crate::backend::Flow::ALL {
            for p in Phase::ALL {
                m.insert((f.as_str(), p.as_str()), 0);
            }
        }
        for j in self.0.registry.all() {
            *m.entry((j.flow.as_str(), j.phase().as_str())).or_default() += 1;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(allow: &[&str]) -> AppState {
        let config = ServerConfig {
            orchestrator_allow_list: allow.iter().map(|s| s.to_string()).collect(),
            ..ServerConfig::default()
        };
        AppState::new(
            config,
            Gateway::new(lpgw_gateway::Settings::default()).unwrap(),
        )
    }

    #[test]
    fn allow_list_matches_host_or_host_and_port() {
        let s = shared(&["orch.example", "127.0.0.1:8935"]);
        assert!(s.0.orchestrator_allowed("https://orch.example:9999"));
        assert!(s.0.orchestrator_allowed("https://127.0.0.1:8935"));
        assert!(!s.0.orchestrator_allowed("https://127.0.0.1:8936"));
        assert!(!s.0.orchestrator_allowed("https://evil.example"));
        assert!(!s.0.orchestrator_allowed("https://orch.example.evil.com"));
        assert!(!s.0.orchestrator_allowed("file:///etc/passwd"));
        assert!(!shared(&[]).0.orchestrator_allowed("https://orch.example"));
    }
}
