//! The live-runner registry as plain data: runners, their sessions, channels and proxies,
//! heartbeat secrets and expiry (ai/runner/live_runner.go). Time and randomness are passed
//! in; the caller does the I/O the returned values describe (trickle channels, o2r events).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::advert::{Advert, Mode};
use super::ids;

/// An error answered as a plain-text HTTP error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveError {
    pub(crate) status: u16,
    pub(crate) msg: String,
}

impl LiveError {
    pub(crate) fn new(status: u16, msg: impl Into<String>) -> Self {
        Self {
            status,
            msg: msg.into(),
        }
    }
}

pub(crate) fn not_found() -> LiveError {
    LiveError::new(404, "runner not found")
}

/// A trickle channel of a runner or session, as described to runners.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ChannelDesc {
    pub(crate) name: String,
    pub(crate) channel_name: String,
    pub(crate) url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) internal_url: Option<String>,
    pub(crate) mime_type: String,
}

/// How a runner came to be.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Registered by heartbeat; expires without one.
    Dynamic {
        heartbeat_secret: String,
        last_heartbeat: Instant,
        o2r: ChannelDesc,
    },
    /// Configured by the operator; health-checked, never expires.
    Static {
        health_url: String,
        healthy_status: u16,
        healthy: bool,
    },
    /// Part of the devnet itself.
    Builtin,
}

/// One reserved session.
#[derive(Debug)]
pub(crate) struct Session {
    order: u64,
    pub(crate) channels: BTreeMap<String, ChannelDesc>,
    pub(crate) proxies: Vec<String>,
    /// Fires on release (stops the meter and in-flight single-shot requests).
    pub(crate) cancel: CancellationToken,
}

/// One runner.
#[derive(Debug)]
pub(crate) struct Runner {
    pub(crate) route: String,
    pub(crate) kind: Kind,
    pub(crate) advert: Advert,
    pub(crate) seed: [u8; 32],
    pub(crate) sessions: HashMap<String, Session>,
}

impl Runner {
    fn expired(&self, now: Instant, ttl: Duration) -> bool {
        matches!(&self.kind, Kind::Dynamic { last_heartbeat, .. }
            if now.saturating_duration_since(*last_heartbeat) > ttl)
    }

    /// Visible and usable: not expired and (for static runners) healthy.
    fn live(&self, now: Instant, ttl: Duration) -> bool {
        !self.expired(now, ttl) && !matches!(self.kind, Kind::Static { healthy: false, .. })
    }

    pub(crate) fn session_token(&self, sid: &str) -> String {
        ids::derive_secret(&self.seed, &format!("session:{sid}"))
    }

    /// Active session IDs by creation order.
    pub(crate) fn session_ids(&self) -> Vec<String> {
        let mut v: Vec<(&u64, &String)> =
            self.sessions.iter().map(|(k, s)| (&s.order, k)).collect();
        v.sort();
        v.into_iter().map(|(_, k)| k.clone()).collect()
    }
}

/// What a release leaves for the caller to do.
#[derive(Debug)]
pub(crate) struct Released {
    pub(crate) route: String,
    pub(crate) sid: String,
    /// Trickle channels to delete.
    pub(crate) channels: Vec<String>,
    /// o2r channel to send `released` on (absent when the runner itself is going).
    pub(crate) o2r: Option<String>,
}

/// What removing a runner leaves for the caller to do.
#[derive(Debug)]
pub(crate) struct Removed {
    pub(crate) route: String,
    pub(crate) o2r: Option<String>,
    pub(crate) sessions: Vec<Released>,
}

/// A successful heartbeat.
#[derive(Debug)]
pub(crate) struct Beat {
    pub(crate) runner_id: String,
    /// Secret and o2r channel, on first registration only.
    pub(crate) first: Option<(String, ChannelDesc)>,
    pub(crate) session_ids: Vec<String>,
}

/// Where a proxy ID leads.
#[derive(Debug, Clone)]
pub(crate) struct ProxyTarget {
    pub(crate) route: String,
    pub(crate) sid: String,
    pub(crate) target: String,
}

/// All runners.
#[derive(Debug)]
pub(crate) struct Registry {
    runners: HashMap<String, Runner>,
    proxies: HashMap<String, ProxyTarget>,
    bootstrap: Option<String>,
    ttl: Duration,
    order: u64,
}

impl Registry {
    pub(crate) fn new(bootstrap: Option<String>, ttl: Duration) -> Self {
        Self {
            runners: HashMap::new(),
            proxies: HashMap::new(),
            bootstrap,
            ttl,
            order: 0,
        }
    }

    /// A live runner by route, or 404 `runner not found`.
    pub(crate) fn get(&self, route: &str, now: Instant) -> Result<&Runner, LiveError> {
        self.runners
            .get(route)
            .filter(|r| r.live(now, self.ttl))
            .ok_or_else(not_found)
    }

    fn get_mut(&mut self, route: &str, now: Instant) -> Result<&mut Runner, LiveError> {
        let ttl = self.ttl;
        self.runners
            .get_mut(route)
            .filter(|r| r.live(now, ttl))
            .ok_or_else(not_found)
    }

    /// Visible, ready runners (discovery).
    pub(crate) fn listed(&self, now: Instant) -> impl Iterator<Item = &Runner> {
        self.runners
            .values()
            .filter(move |r| r.live(now, self.ttl) && r.advert.ready())
    }

    /// `POST /runners/heartbeat` after validation (live_runner.go:371-473). `o2r` makes the
    /// o2r channel descriptor from the runner ID and seed for a new runner.
    pub(crate) fn heartbeat(
        &mut self,
        runner_id: String,
        advert: Advert,
        auth: &str,
        now: Instant,
        seed: [u8; 32],
        o2r: impl FnOnce(&str, &[u8; 32]) -> ChannelDesc,
    ) -> Result<Beat, LiveError> {
        let ttl = self.ttl;
        let Some(r) = self.runners.get_mut(&runner_id) else {
            let Some(bootstrap) = &self.bootstrap else {
                return Err(LiveError::new(
                    404,
                    "dynamic live runner registration is disabled",
                ));
            };
            if !ids::secret_eq(auth, bootstrap) {
                return Err(LiveError::new(401, "invalid registration authorization"));
            }
            let secret = ids::derive_secret(&seed, "heartbeat");
            let channel = o2r(&runner_id, &seed);
            self.runners.insert(
                runner_id.clone(),
                Runner {
                    route: runner_id.clone(),
                    kind: Kind::Dynamic {
                        heartbeat_secret: secret.clone(),
                        last_heartbeat: now,
                        o2r: channel.clone(),
                    },
                    advert,
                    seed,
                    sessions: HashMap::new(),
                },
            );
            return Ok(Beat {
                runner_id,
                first: Some((secret, channel)),
                session_ids: Vec::new(),
            });
        };
        if r.expired(now, ttl) {
            return Err(not_found());
        }
        match &mut r.kind {
            Kind::Dynamic {
                heartbeat_secret,
                last_heartbeat,
                ..
            } => {
                if !ids::secret_eq(auth, heartbeat_secret) {
                    return Err(LiveError::new(401, "invalid heartbeat authorization"));
                }
                *last_heartbeat = now;
            }
            // Static and built-in runners have an empty heartbeat secret.
            Kind::Static { .. } | Kind::Builtin => {
                if !auth.is_empty() {
                    return Err(LiveError::new(401, "invalid heartbeat authorization"));
                }
                return Err(LiveError::new(400, "static runner cannot heartbeat"));
            }
        }
        r.advert = advert;
        Ok(Beat {
            runner_id,
            first: None,
            session_ids: r.session_ids(),
        })
    }

    /// `POST /runners/{id}/unregister` (live_runner.go:920-947).
    pub(crate) fn unregister(
        &mut self,
        route: &str,
        auth: &str,
        now: Instant,
    ) -> Result<Removed, LiveError> {
        let r = self.get(route, now)?;
        match &r.kind {
            Kind::Dynamic {
                heartbeat_secret, ..
            } => {
                if !ids::secret_eq(auth, heartbeat_secret) {
                    return Err(LiveError::new(401, "invalid authorization"));
                }
            }
            _ => {
                return Err(LiveError::new(
                    400,
                    "static runner cannot unregister with heartbeat credentials",
                ));
            }
        }
        Ok(self.remove(route).unwrap_or_else(|| Removed {
            route: route.to_string(),
            o2r: None,
            sessions: Vec::new(),
        }))
    }

    /// Removes a runner and all its sessions. The o2r channel goes first, so no `released`
    /// events are sent (live_runner.go:1495-1511).
    pub(crate) fn remove(&mut self, route: &str) -> Option<Removed> {
        let r = self.runners.remove(route)?;
        let o2r = match &r.kind {
            Kind::Dynamic { o2r, .. } => Some(o2r.channel_name.clone()),
            _ => None,
        };
        let sessions = r
            .sessions
            .into_iter()
            .map(|(sid, s)| self.drop_session(route, sid, s, None))
            .collect();
        Some(Removed {
            route: route.to_string(),
            o2r,
            sessions,
        })
    }

    /// Removes expired dynamic runners (the sweep).
    pub(crate) fn sweep(&mut self, now: Instant) -> Vec<Removed> {
        let ttl = self.ttl;
        let gone: Vec<String> = self
            .runners
            .values()
            .filter(|r| r.expired(now, ttl))
            .map(|r| r.route.clone())
            .collect();
        gone.iter().filter_map(|g| self.remove(g)).collect()
    }

    /// Adds a static or built-in runner under `route`, replacing one with the same route
    /// but keeping its seed and sessions (upsert).
    pub(crate) fn upsert_fixed(&mut self, route: String, kind: Kind, advert: Advert) {
        match self.runners.get_mut(&route) {
            Some(r) => {
                r.kind = kind;
                r.advert = advert;
            }
            None => {
                self.runners.insert(
                    route.clone(),
                    Runner {
                        route,
                        kind,
                        advert,
                        seed: ids::seed(),
                        sessions: HashMap::new(),
                    },
                );
            }
        }
    }

    /// Records a health result; an unhealthy runner loses all its sessions.
    pub(crate) fn set_health(&mut self, route: &str, ok: bool) -> Vec<Released> {
        let Some(r) = self.runners.get_mut(route) else {
            return Vec::new();
        };
        if let Kind::Static { healthy, .. } = &mut r.kind {
            *healthy = ok;
        }
        if ok {
            return Vec::new();
        }
        let sessions: Vec<(String, Session)> = r.sessions.drain().collect();
        sessions
            .into_iter()
            .map(|(sid, s)| self.drop_session(route, sid, s, None))
            .collect()
    }

    /// Reserves a session (live_runner.go:953-1007): `id` when given (409 if taken), or a
    /// generated one; 503 at capacity; 404 for a runner that is not ready.
    pub(crate) fn reserve(
        &mut self,
        route: &str,
        id: Option<String>,
        now: Instant,
    ) -> Result<String, LiveError> {
        self.order += 1;
        let order = self.order;
        let r = self.get_mut(route, now)?;
        if !r.advert.ready() {
            return Err(not_found());
        }
        if let Some(id) = &id
            && r.sessions.contains_key(id)
        {
            return Err(LiveError::new(409, "session already exists"));
        }
        if r.sessions.len() >= r.advert.capacity as usize {
            return Err(LiveError::new(503, "no capacity available for runner"));
        }
        let id = id.unwrap_or_else(|| {
            loop {
                let id = ids::session_id();
                if !r.sessions.contains_key(&id) {
                    break id;
                }
            }
        });
        r.sessions.insert(
            id.clone(),
            Session {
                order,
                channels: BTreeMap::new(),
                proxies: Vec::new(),
                cancel: CancellationToken::new(),
            },
        );
        Ok(id)
    }

    fn drop_session(
        &mut self,
        route: &str,
        sid: String,
        s: Session,
        o2r: Option<String>,
    ) -> Released {
        s.cancel.cancel();
        for p in &s.proxies {
            self.proxies.remove(p);
        }
        Released {
            route: route.to_string(),
            sid,
            channels: s.channels.into_values().map(|c| c.channel_name).collect(),
            o2r,
        }
    }

    /// Releases a session if it exists.
    pub(crate) fn release(&mut self, route: &str, sid: &str) -> Option<Released> {
        let r = self.runners.get_mut(route)?;
        let s = r.sessions.remove(sid)?;
        let o2r = match &r.kind {
            Kind::Dynamic { o2r, .. } => Some(o2r.channel_name.clone()),
            _ => None,
        };
        Some(self.drop_session(route, sid.to_string(), s, o2r))
    }

    /// The runner holding session `sid`, whichever it is.
    pub(crate) fn runner_of_session(&self, sid: &str) -> Option<&Runner> {
        self.runners.values().find(|r| r.sessions.contains_key(sid))
    }

    /// A session of a live runner: 404 `runner not found` / `runner session not found`.
    pub(crate) fn session(
        &self,
        route: &str,
        sid: &str,
        now: Instant,
    ) -> Result<(&Runner, &Session), LiveError> {
        let r = self.get(route, now)?;
        let s = r
            .sessions
            .get(sid)
            .ok_or_else(|| LiveError::new(404, "runner session not found"))?;
        Ok((r, s))
    }

    /// Checks a runner callback's `Livepeer-Session-Token` (401 `invalid authorization`).
    pub(crate) fn authorize(
        &self,
        route: &str,
        sid: &str,
        token: &str,
        now: Instant,
    ) -> Result<(), LiveError> {
        let r = self.get(route, now)?;
        if !r.advert.ready() {
            return Err(not_found());
        }
        if !r.sessions.contains_key(sid) {
            return Err(LiveError::new(404, "runner session not found"));
        }
        if !ids::secret_eq(token, &r.session_token(sid)) {
            return Err(LiveError::new(401, "invalid authorization"));
        }
        Ok(())
    }

    /// Creates (or returns the existing) session channels; `make` builds a descriptor for a
    /// sanitized name. Returns the descriptors and the channels that are new.
    pub(crate) fn create_channels(
        &mut self,
        route: &str,
        sid: &str,
        wanted: &[(String, String)],
        now: Instant,
        make: impl Fn(&str, &str) -> ChannelDesc,
    ) -> Result<(Vec<ChannelDesc>, Vec<ChannelDesc>), LiveError> {
        check_batch(wanted.len())?;
        let mut names = Vec::with_capacity(wanted.len());
        for (name, mime) in wanted {
            let n = sanitize_channel_name(name)?;
            let mime = if mime.trim().is_empty() {
                "application/octet-stream".to_string()
            } else {
                mime.clone()
            };
            names.push((n, mime));
        }
        let r = self.get_mut(route, now)?;
        let s = r
            .sessions
            .get_mut(sid)
            .ok_or_else(|| LiveError::new(404, "runner session not found"))?;
        let mut out = Vec::new();
        let mut created = Vec::new();
        for (n, mime) in names {
            let d = s.channels.entry(n.clone()).or_insert_with(|| {
                let d = make(&n, &mime);
                created.push(d.clone());
                d
            });
            out.push(d.clone());
        }
        Ok((out, created))
    }

    /// Deletes session channels by name; returns the trickle channel names deleted.
    pub(crate) fn delete_channels(
        &mut self,
        route: &str,
        sid: &str,
        names: &[String],
        now: Instant,
    ) -> Result<(Vec<String>, Vec<String>), LiveError> {
        check_batch(names.len())?;
        let r = self.get_mut(route, now)?;
        let s = r
            .sessions
            .get_mut(sid)
            .ok_or_else(|| LiveError::new(404, "runner session not found"))?;
        let clean: Vec<String> = names
            .iter()
            .map(|n| sanitize_channel_name(n))
            .collect::<Result<_, _>>()?;
        if let Some(missing) = clean.iter().find(|n| !s.channels.contains_key(*n)) {
            tracing::debug!(channel = %missing, "delete of unknown session channel");
            return Err(LiveError::new(404, "trickle channel not found"));
        }
        let mut deleted = Vec::new();
        let mut trickle = Vec::new();
        for n in clean {
            if let Some(d) = s.channels.remove(&n) {
                trickle.push(d.channel_name);
                deleted.push(n);
            }
        }
        Ok((deleted, trickle))
    }

    /// Registers a proxy ID for a session.
    pub(crate) fn add_proxy(
        &mut self,
        route: &str,
        sid: &str,
        target: String,
        now: Instant,
    ) -> Result<String, LiveError> {
        let id = loop {
            let id = ids::proxy_id();
            if !self.proxies.contains_key(&id) {
                break id;
            }
        };
        let r = self.get_mut(route, now)?;
        let s = r
            .sessions
            .get_mut(sid)
            .ok_or_else(|| LiveError::new(404, "runner session not found"))?;
        s.proxies.push(id.clone());
        self.proxies.insert(
            id.clone(),
            ProxyTarget {
                route: route.to_string(),
                sid: sid.to_string(),
                target,
            },
        );
        Ok(id)
    }

    /// Changes a runner's capacity (a dynamic runner's next heartbeat sets it again).
    pub(crate) fn set_capacity(&mut self, route: &str, capacity: u32) -> bool {
        self.runners
            .get_mut(route)
            .map(|r| r.advert.capacity = capacity)
            .is_some()
    }

    /// Static runners to health-check: (route, URL, healthy status).
    pub(crate) fn statics(&self) -> Vec<(String, String, u16)> {
        self.runners
            .values()
            .filter_map(|r| match &r.kind {
                Kind::Static {
                    health_url,
                    healthy_status,
                    ..
                } => Some((r.route.clone(), health_url.clone(), *healthy_status)),
                _ => None,
            })
            .collect()
    }

    /// The o2r channel name of a dynamic runner.
    pub(crate) fn o2r_of(&self, route: &str) -> Option<String> {
        match &self.runners.get(route)?.kind {
            Kind::Dynamic { o2r, .. } => Some(o2r.channel_name.clone()),
            _ => None,
        }
    }

    pub(crate) fn proxy(&self, id: &str) -> Option<&ProxyTarget> {
        self.proxies.get(id)
    }

    /// Whether a runner with this route exists and is persistent (for error texts).
    pub(crate) fn mode(&self, route: &str, now: Instant) -> Result<Mode, LiveError> {
        self.get(route, now).map(|r| r.advert.mode)
    }
}

/// Most channels one create or delete call may name.
pub(crate) const MAX_CHANNELS: usize = 25;

/// `/` becomes `-`, then trimmed, then `^[A-Za-z0-9_-]+$` (live_runner.go:1117-1160).
pub(crate) fn sanitize_channel_name(name: &str) -> Result<String, LiveError> {
    let n = name.trim().replace('/', "-");
    if n.is_empty() {
        return Err(LiveError::new(400, "trickle channel name is required"));
    }
    if !n
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(LiveError::new(
            400,
            "trickle channel name may only contain alphanumerics, underscores, or hyphens",
        ));
    }
    Ok(n)
}

/// The batch-size check of the channel handlers (server/ai_http.go:612-699).
pub(crate) fn check_batch(n: usize) -> Result<(), LiveError> {
    if n == 0 {
        return Err(LiveError::new(400, "channels is required"));
    }
    if n > MAX_CHANNELS {
        return Err(LiveError::new(
            400,
            format!("channels cannot contain more than {MAX_CHANNELS} entries"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
