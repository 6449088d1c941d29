//! The job registry shared by both API families: jobs, their owners, limits, and the
//! tombstones of recently ended jobs (so `status` can say `stopped` and `publish` 410).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::arbiter::{Claim, InputArbiter, InputSource};
use crate::auth::Owner;
use crate::backend::{Flow, MediaEndpoints};
use crate::error::ApiError;
use crate::media::JobMedia;
use crate::phase::{Phase, PhaseEvent};
use crate::seq::SeqGate;
use lpgw_gateway::Job as RunningJob;

/// Ended jobs remembered for status queries.
const TOMBSTONES: usize = 1024;
/// Events buffered per SSE viewer before it loses the oldest.
const EVENT_BUFFER: usize = 64;

/// One job.
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) owner: Owner,
    /// The client address that started it; `None` when unknown.
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) model_id: String,
    pub(crate) flow: Flow,
    pub(crate) created_at: f64,
    pub(crate) orchestrator_url: String,
    pub(crate) has_payment_session: bool,
    pub(crate) has_control: bool,
    /// Taken by `close`.
    pub(crate) handle: tokio::sync::Mutex<Option<RunningJob>>,
    /// Cancelled when the job ends, by a stop or because the gateway job ended.
    pub(crate) cancel: CancellationToken,
    /// The job's media channels; they change when a Scope runner restarts and the
    /// stream starts again.
    endpoints: Mutex<Option<MediaEndpoints>>,
    /// The runner restarted and the gateway is starting the stream again: no output is
    /// expected, and the old channels may fail without that being a fault.
    pub(crate) restarting: std::sync::atomic::AtomicBool,
    pub(crate) media: Mutex<Option<Arc<JobMedia>>>,
    state: Mutex<JobState>,
    pub(crate) events: broadcast::Sender<Value>,
    /// WebSocket and SSE connections open now; a job with viewers is never idle.
    pub(crate) viewers: AtomicUsize,
    /// The highest `seq` of a frame published over HTTP. Held while the frame is handed to
    /// the encoder, so accepted frames reach it in sequence order.
    pub(crate) seq: Mutex<SeqGate>,
    /// Numbered frames skipped because they were not newer than the last accepted.
    pub(crate) dropped_stale: AtomicU64,
    /// Which source feeds the job's input now: one at a time.
    input: Mutex<InputArbiter>,
    /// What the job has paid, counted by its wallet.
    pub(crate) spend: Arc<crate::spend::JobSpend>,
}

struct JobState {
    phase: Phase,
    error: Option<String>,
    last_used: Instant,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Job {
    pub(crate) fn new(
        id: String,
        owner: Owner,
        client_ip: Option<IpAddr>,
        model_id: String,
        running: RunningJob,
        spend: Arc<crate::spend::JobSpend>,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            id,
            owner,
            client_ip,
            model_id,
            flow: Flow::of(running.route()),
            created_at: unix_now(),
            orchestrator_url: running.orchestrator_url().to_owned(),
            has_payment_session: running.is_paid(),
            has_control: running.has_control(),
            cancel: CancellationToken::new(),
            endpoints: Mutex::new(MediaEndpoints::of(&running)),
            restarting: std::sync::atomic::AtomicBool::new(false),
            handle: tokio::sync::Mutex::new(Some(running)),
            media: Mutex::new(None),
            state: Mutex::new(JobState {
                phase: Phase::Connecting,
                error: None,
                last_used: Instant::now(),
            }),
            events,
            viewers: AtomicUsize::new(0),
            seq: Mutex::default(),
            dropped_stale: AtomicU64::new(0),
            input: Mutex::default(),
            spend,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job's payment counters as JSON for status answers; `None` while the job is
    /// being closed (its handle is busy or gone). `value_wei` is a decimal string: wei
    /// amounts outgrow JSON's safe integers.
    pub(crate) fn payments_json(&self) -> Option<Value> {
        let slot = self.handle.try_lock().ok()?;
        let p = slot.as_ref()?.payments();
        Some(serde_json::json!({
            "paid": p.paid,
            "skipped": p.skipped,
            "refreshes": p.refreshes,
            "value_wei": p.value_wei.to_string(),
        }))
    }

    pub(crate) fn phase(&self) -> Phase {
        self.state().phase
    }

    pub(crate) fn error(&self) -> Option<String> {
        self.state().error.clone()
    }

    pub(crate) fn on(&self, event: PhaseEvent) {
        let mut s = self.state();
        s.phase = s.phase.next(event);
    }

    pub(crate) fn fail(&self, reason: String) {
        let mut s = self.state();
        s.phase = s.phase.next(PhaseEvent::Failed);
        s.error.get_or_insert(reason);
    }

    fn arbiter(&self) -> std::sync::MutexGuard<'_, InputArbiter> {
        self.input.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides whether a frame from `src` may feed the job's input now
    /// ([`InputArbiter::claim`]).
    pub(crate) fn claim_input(&self, src: InputSource) -> Claim {
        self.arbiter().claim(src, Instant::now())
    }

    /// The source feeding the job's input now, if one is active.
    pub(crate) fn input_holder(&self) -> Option<InputSource> {
        self.arbiter().holder(Instant::now())
    }

    /// `src` is gone: another source may take the input at once.
    pub(crate) fn release_input(&self, src: InputSource) {
        self.arbiter().release(src);
    }

    pub(crate) fn touch(&self) {
        self.state().last_used = Instant::now();
    }

    pub(crate) fn idle_for(&self) -> std::time::Duration {
        self.state().last_used.elapsed()
    }

    /// The job's current media channels.
    pub(crate) fn endpoints(&self) -> Option<MediaEndpoints> {
        self.endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the channels a restarted stream runs on.
    pub(crate) fn set_endpoints(&self, ends: MediaEndpoints) {
        *self.endpoints.lock().unwrap_or_else(|p| p.into_inner()) = Some(ends);
    }

    pub(crate) fn media(&self) -> Option<Arc<JobMedia>> {
        self.media.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.cancel.is_cancelled() || self.phase().is_terminal()
    }
}

/// What is remembered of an ended job.
#[derive(Debug, Clone)]
pub(crate) struct Tombstone {
    pub(crate) owner: Owner,
    pub(crate) model_id: String,
    pub(crate) flow: Flow,
    pub(crate) created_at: f64,
    pub(crate) phase: Phase,
    pub(crate) error: Option<String>,
    pub(crate) spend: Arc<crate::spend::JobSpend>,
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Arc<Job>>,
    /// Starts in flight per owner, counted against the limits.
    pending: HashMap<Owner, usize>,
    /// Starts in flight per client address; entries at zero are removed.
    pending_ip: HashMap<IpAddr, usize>,
    ended: HashMap<String, Tombstone>,
    ended_order: VecDeque<String>,
}

/// All jobs.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
    per_key: usize,
    total: usize,
    /// 0: no per-address limit.
    per_ip: usize,
}

/// Which job limit a start ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    /// Concurrent jobs of one key.
    PerKey(usize),
    /// Concurrent jobs from one client address.
    PerIp(usize),
    /// Concurrent jobs in total.
    Total(usize),
}

impl LimitHit {
    /// A short label for the metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::PerKey(_) => "jobs_per_key",
            Self::PerIp(_) => "jobs_per_ip",
            Self::Total(_) => "jobs_total",
        }
    }
}

impl From<LimitHit> for ApiError {
    fn from(l: LimitHit) -> Self {
        let msg = match l {
            LimitHit::PerKey(n) => format!("Job limit reached ({n} per key)"),
            LimitHit::PerIp(n) => format!("Job limit reached ({n} per client address)"),
            LimitHit::Total(n) => format!("Service job limit reached ({n})"),
        };
        Self::new(StatusCode::TOO_MANY_REQUESTS, msg)
    }
}

/// A slot taken against the limits while a job starts; released on drop unless the job was
/// inserted.
pub(crate) struct Reservation {
    registry: Arc<Registry>,
    owner: Owner,
    ip: Option<IpAddr>,
    live: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.live {
            let mut g = self.registry.lock();
            g.unpend(self.owner, self.ip);
        }
    }
}

impl Inner {
    fn unpend(&mut self, owner: Owner, ip: Option<IpAddr>) {
        if let Some(n) = self.pending.get_mut(&owner) {
            *n = n.saturating_sub(1);
        }
        if let Some(ip) = ip
            && let Some(n) = self.pending_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pending_ip.remove(&ip);
            }
        }
    }
}

impl Registry {
    /// Limits per key and in total (at least 1 each), and per client address (0: none).
    pub(crate) fn new(per_key: usize, total: usize, per_ip: usize) -> Self {
        Self {
            inner: Mutex::default(),
            per_key: per_key.max(1),
            total: total.max(1),
            per_ip,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `owner` starting from `ip`, checking every limit and counting it
    /// in one step, so concurrent starts cannot overshoot. The slot is freed when the
    /// reservation is dropped unused or, once inserted, when the job is removed.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        owner: Owner,
        ip: Option<IpAddr>,
    ) -> Result<Reservation, LimitHit> {
        let mut g = self.lock();
        let owned = g.jobs.values().filter(|j| j.owner == owner).count();
        let pending_owner = g.pending.get(&owner).copied().unwrap_or(0);
        if owned + pending_owner >= self.per_key {
            return Err(LimitHit::PerKey(self.per_key));
        }
        if let Some(ip) = ip
            && self.per_ip > 0
        {
            let from_ip = g.jobs.values().filter(|j| j.client_ip == Some(ip)).count();
            let pending_ip = g.pending_ip.get(&ip).copied().unwrap_or(0);
            if from_ip + pending_ip >= self.per_ip {
                return Err(LimitHit::PerIp(self.per_ip));
            }
        }
        let pending_all: usize = g.pending.values().sum();
        if g.jobs.len() + pending_all >= self.total {
            return Err(LimitHit::Total(self.total));
        }
        *g.pending.entry(owner).or_default() += 1;
        if let Some(ip) = ip {
            *g.pending_ip.entry(ip).or_default() += 1;
        }
        Ok(Reservation {
            registry: self.clone(),
            owner,
            ip,
            live: true,
        })
    }

    /// Turns a reservation into a registered job.
    pub(crate) fn insert(&self, mut r: Reservation, job: Arc<Job>) {
        let mut g = self.lock();
        g.unpend(r.owner, r.ip);
        r.live = false;
        g.jobs.insert(job.id.clone(), job);
    }

    /// A job visible to `owner` (another owner's job is reported as absent).
    pub(crate) fn get(&self, id: &str, owner: Owner) -> Option<Arc<Job>> {
        self.lock()
            .jobs
            .get(id)
            .filter(|j| j.owner == owner)
            .cloned()
    }

    /// An ended job visible to `owner`.
    pub(crate) fn tombstone(&self, id: &str, owner: Owner) -> Option<Tombstone> {
        self.lock()
            .ended
            .get(id)
            .filter(|t| t.owner == owner)
            .cloned()
    }

    /// `owner`'s jobs, oldest first.
    pub(crate) fn list(&self, owner: Owner) -> Vec<Arc<Job>> {
        let mut v: Vec<_> = self
            .lock()
            .jobs
            .values()
            .filter(|j| j.owner == owner)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        v
    }

    pub(crate) fn all(&self) -> Vec<Arc<Job>> {
        self.lock().jobs.values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Removes a job and remembers it as ended. Returns it if it was still registered.
    pub(crate) fn remove(&self, id: &str) -> Option<Arc<Job>> {
        let mut g = self.lock();
        let job = g.jobs.remove(id)?;
        let tomb = Tombstone {
            owner: job.owner,
            model_id: job.model_id.clone(),
            flow: job.flow,
            created_at: job.created_at,
            phase: job.phase(),
            error: job.error(),
            spend: job.spend.clone(),
        };
        if g.ended_order.len() >= TOMBSTONES
            && let Some(old) = g.ended_order.pop_front()
        {
            g.ended.remove(&old);
        }
        g.ended_order.push_back(id.to_string());
        g.ended.insert(id.to_string(), tomb);
        Some(job)
    }

    /// Updates a tombstone's phase after the job's close finished.
    pub(crate) fn mark_ended(&self, id: &str, phase: Phase, error: Option<String>) {
        if let Some(t) = self.lock().ended.get_mut(id) {
            t.phase = phase;
            if error.is_some() {
                t.error = error;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_against_the_per_key_limit_until_released() {
        let r = Arc::new(Registry::new(2, 100, 0));
        let a = r.reserve(Owner::Key(0), None).unwrap();
        let _b = r.reserve(Owner::Key(0), None).unwrap();
        let hit = r.reserve(Owner::Key(0), None).err();
        assert_eq!(hit, Some(LimitHit::PerKey(2)));
        assert_eq!(
            ApiError::from(hit.unwrap()).status,
            StatusCode::TOO_MANY_REQUESTS
        );
        // Another key has its own budget.
        let _c = r.reserve(Owner::Key(1), None).unwrap();
        drop(a);
        assert!(r.reserve(Owner::Key(0), None).is_ok());
    }

    #[test]
    fn total_limit_applies_across_keys() {
        let r = Arc::new(Registry::new(10, 2, 0));
        let _a = r.reserve(Owner::Key(0), None).unwrap();
        let _b = r.reserve(Owner::Key(1), None).unwrap();
        assert_eq!(
            r.reserve(Owner::Key(2), None).err(),
            Some(LimitHit::Total(2))
        );
    }

    #[test]
    fn per_address_limit_applies_across_keys_and_frees_on_release() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let r = Arc::new(Registry::new(10, 100, 2));
        let a = r.reserve(Owner::Key(0), Some(ip)).unwrap();
        let _b = r.reserve(Owner::Key(1), Some(ip)).unwrap();
        assert_eq!(
            r.reserve(Owner::Key(2), Some(ip)).err(),
            Some(LimitHit::PerIp(2))
        );
        assert!(r.reserve(Owner::Key(2), Some(other)).is_ok());
        // An unknown address is not limited per address.
        assert!(r.reserve(Owner::Key(2), None).is_ok());
        drop(a);
        let _c = r.reserve(Owner::Key(0), Some(ip)).unwrap();
        // Fully released addresses leave no entry behind.
        drop(_c);
        drop(_b);
        assert!(r.lock().pending_ip.is_empty());
    }

    #[test]
    fn zero_per_address_limit_means_none() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let r = Arc::new(Registry::new(100, 100, 0));
        let held: Vec<_> = (0..50)
            .map(|_| r.reserve(Owner::Open, Some(ip)).unwrap())
            .collect();
        assert_eq!(held.len(), 50);
    }
}
