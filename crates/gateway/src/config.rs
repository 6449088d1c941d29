//! Gateway settings: where to find orchestrators, how to pay, how to trust them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ceiling::Ceiling;
use crate::redact::HeaderNames;
use crate::token::Token;

/// How orchestrator TLS certificates are checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsMode {
    /// Trust the first certificate seen per `host:port` and require the same one afterwards.
    /// Orchestrators use self-signed certificates regenerated at every start, so this is the
    /// default (server/cert.go:18-109).
    #[default]
    TrustOnFirstUse,
    /// Accept any certificate (what go-livepeer's own gateway does, segment_rpc.go:50-71).
    SkipVerification,
    /// Verify against the Mozilla root store.
    SystemRoots,
}

/// Everything the gateway needs to find, pick and pay orchestrators.
///
/// Build with [`Settings::default`] plus field updates, then [`Settings::with_token`] to let a
/// token override them.
#[derive(Clone)]
pub struct Settings {
    /// Explicit orchestrator URLs (`https://host:port`, `http://host:port` or `host:port`).
    /// Default: empty (use discovery).
    pub orchestrators: Vec<String>,
    /// Remote signer base URL; `None` means offchain. Default: `None`.
    pub signer_url: Option<String>,
    /// Headers sent on every signer call. Default: empty.
    pub signer_headers: BTreeMap<String, String>,
    /// Discovery endpoint. Default: `None`.
    pub discovery_url: Option<String>,
    /// Headers sent to the discovery endpoint. Default: empty.
    pub discovery_headers: BTreeMap<String, String>,
    /// TLS policy for orchestrators. Default: trust on first use.
    pub tls: TlsMode,
    /// The most the gateway pays, on both flows; orchestrators and runners above it are
    /// skipped and never paid. Default: [`Ceiling::default`] (5 USD per hour).
    pub ceiling: Ceiling,
    /// How many orchestrators are probed at once. Default: 8.
    pub probe_concurrency: usize,
    /// Connect timeout for GetOrchestrator. Default: 3 s (go-livepeer rpc.go:43-45).
    pub connect_timeout: Duration,
    /// Whole-call timeout for GetOrchestrator. Default: 8 s (go-livepeer rpc.go:43-45).
    pub probe_timeout: Duration,
    /// Timeout of `POST /live-video-to-video`. Default: 5 s.
    pub start_timeout: Duration,
    /// Timeout of remote-signer and discovery calls. Default: 10 s.
    pub signer_timeout: Duration,
    /// Timeout of `POST /payment`. Default: 60 s (go-livepeer live_payment.go).
    pub payment_timeout: Duration,
    /// How many times one payment may refresh orchestrator info after a signer 480.
    /// Default: 3 (the reference SDK's limit).
    pub max_refreshes: u32,
    /// Minimum spacing of periodic payments. Default: 5 s (the reference payment sender).
    pub payment_interval: Duration,
    /// How long the signer may answer 482 (no tickets) cycle after cycle before payments
    /// count as wedged and the job ends (go-livepeer #4077). A 482 is normal while earlier
    /// tickets still cover the bill; one that lasts this long is not. Default 60 s.
    pub wedge_after: Duration,
    /// Control-channel keepalive period. Default: 10 s.
    pub keepalive_interval: Duration,
    /// The live-runner flow, Scope and start routing.
    pub live: LiveSettings,
}

/// Which start routes a model may take, in order (see [`crate::StartPolicy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// A live-runner model may fall back to serverless `/scope` entries. Default `true`.
    pub serverless: bool,
    /// A live-runner model may fall back to the legacy `/live-video-to-video` path.
    /// Default `true`.
    pub legacy: bool,
    /// A legacy model may fall back to a live runner offering
    /// `live-video-to-video/<model>`. Default `true`.
    pub live_runner_for_legacy: bool,
}

impl Default for Fallback {
    fn default() -> Self {
        Self {
            serverless: true,
            legacy: true,
            live_runner_for_legacy: true,
        }
    }
}

impl Fallback {
    /// No fallback at all: each model takes its own route only.
    pub fn none() -> Self {
        Self {
            serverless: false,
            legacy: false,
            live_runner_for_legacy: false,
        }
    }
}

/// Settings of the live-runner flow (spec §1), Scope and start routing.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Models started through live runners (app `live-video-to-video/<model>`).
    /// Default `["scope"]`.
    pub models: Vec<String>,
    /// Fallback between routes. Default: all enabled.
    pub fallback: Fallback,
    /// Only runners on these GPUs (by name); empty means any. Default empty.
    pub gpus: Vec<String>,
    /// Period of the payment loop of metered sessions. Default 3 s (the reference SDK; the
    /// orchestrator meters every 5 s).
    pub payment_interval: Duration,
    /// How many fresh payment challenges one reservation may answer. Default 3.
    pub challenge_retries: u32,
    /// How long a runner whose paid session failed its app call is skipped. Default 5 min.
    pub cooldown: Duration,
    /// Timeout of each reservation, app and payment call. Default 10 s.
    pub call_timeout: Duration,
    /// How long to wait for any one answer of a Scope runner (`api_response`,
    /// `stream_started`). Default 30 s: a real runner builds its pipeline registry on the
    /// first schemas request, which took 5–7 s on a CPU machine.
    pub stream_start_timeout: Duration,
    /// The Scope start sequence: default pipelines, bounded waits, keepalive.
    pub scope: ScopeSettings,
    /// Attempts to stop a session at the orchestrator before giving up (logged). Default 4.
    pub stop_attempts: u32,
    /// Runner entries read from one discovery answer (before filtering); the rest are
    /// ignored with one rejection. Default 256.
    pub max_runners: usize,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            models: vec!["scope".into()],
            fallback: Fallback::default(),
            gpus: Vec::new(),
            payment_interval: Duration::from_secs(3),
            challenge_retries: 3,
            cooldown: Duration::from_secs(300),
            call_timeout: Duration::from_secs(10),
            stream_start_timeout: Duration::from_secs(30),
            scope: ScopeSettings::default(),
            stop_attempts: 4,
            max_runners: 256,
        }
    }
}

/// How a Scope stream is prepared on a runner (`shared/spec/scope-protocol.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSettings {
    /// Pipelines loaded when a start names none. Default `["streamdiffusionv2"]`: Scope's
    /// real-time video-to-video pipeline, which takes video input by default. A Scope
    /// runner without a GPU offers only `gray` and `passthrough`: name one of those then.
    pub default_pipelines: Vec<String>,
    /// How long to wait for `runner_ready` before going on without it. Default 5 s.
    pub ready_timeout: Duration,
    /// How long pipelines may take to load. Default 300 s (GPU pipelines load model weights
    /// for minutes; `gray` and `passthrough` take about a second).
    pub load_timeout: Duration,
    /// How often the load status is polled. Default 250 ms.
    pub poll_interval: Duration,
    /// How long a stream may give no output after `stream_started` while input flows (or
    /// at all, in text mode) before the job is reported as failed. Default 20 s.
    pub output_timeout: Duration,
    /// `ping` period on the control channel. Default 10 s (the Scope client's).
    pub ping_interval: Duration,
    /// Pings in a row without a `pong` after which the runner counts as unresponsive.
    /// Default 3.
    pub max_missed_pongs: u32,
    /// Runner restarts a stream is started again after (pipelines reloaded, parameters
    /// replayed, media moved to the new channels); one more ends the job.
    pub max_restarts: u32,
    /// How long a runner may take to say `runner_ready` after answering a restart request
    /// (`POST /api/v1/restart`) before the job ends. Default 30 s (the Scope client's).
    pub restart_timeout: Duration,
}

impl Default for ScopeSettings {
    fn default() -> Self {
        Self {
            default_pipelines: vec!["streamdiffusionv2".into()],
            ready_timeout: Duration::from_secs(5),
            load_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_millis(250),
            output_timeout: Duration::from_secs(20),
            ping_interval: Duration::from_secs(10),
            max_missed_pongs: 3,
            max_restarts: 3,
            restart_timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("orchestrators", &self.orchestrators)
            .field("signer_url", &self.signer_url)
            .field("signer_headers", &HeaderNames(&self.signer_headers))
            .field("discovery_url", &self.discovery_url)
            .field("discovery_headers", &HeaderNames(&self.discovery_headers))
            .field("tls", &self.tls)
            .field("ceiling", &self.ceiling)
            .field("probe_concurrency", &self.probe_concurrency)
            .field("connect_timeout", &self.connect_timeout)
            .field("probe_timeout", &self.probe_timeout)
            .field("start_timeout", &self.start_timeout)
            .field("signer_timeout", &self.signer_timeout)
            .field("payment_timeout", &self.payment_timeout)
            .field("max_refreshes", &self.max_refreshes)
            .field("payment_interval", &self.payment_interval)
            .field("wedge_after", &self.wedge_after)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("live", &self.live)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            orchestrators: Vec::new(),
            signer_url: None,
            signer_headers: BTreeMap::new(),
            discovery_url: None,
            discovery_headers: BTreeMap::new(),
            tls: TlsMode::default(),
            ceiling: Ceiling::default(),
            probe_concurrency: 8,
            connect_timeout: Duration::from_secs(3),
            probe_timeout: Duration::from_secs(8),
            start_timeout: Duration::from_secs(5),
            signer_timeout: Duration::from_secs(10),
            payment_timeout: Duration::from_secs(60),
            max_refreshes: 3,
            payment_interval: Duration::from_secs(5),
            wedge_after: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(10),
            live: LiveSettings::default(),
        }
    }
}

impl Settings {
    /// Applies a token: every value the token carries replaces the configured one.
    ///
    /// A token's orchestrator list replaces the explicit list even when empty, so an empty
    /// token list falls through to discovery, as in the reference SDK.
    pub fn with_token(mut self, token: &Token) -> Self {
        if let Some(o) = &token.orchestrators {
            self.orchestrators.clone_from(o);
        }
        if let Some(s) = &token.signer {
            self.signer_url = Some(s.clone());
        }
        if let Some(h) = &token.signer_headers {
            self.signer_headers.clone_from(h);
        }
        if let Some(d) = &token.discovery {
            self.discovery_url = Some(d.clone());
        }
        if let Some(h) = &token.discovery_headers {
            self.discovery_headers.clone_from(h);
        }
        self
    }

    /// Whether payments go through a remote signer (onchain) or not at all (offchain).
    pub fn is_offchain(&self) -> bool {
        self.signer_url
            .as_deref()
            .is_none_or(|s| s.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_win_and_missing_ones_keep_explicit_settings() {
        let explicit = Settings {
            orchestrators: vec!["https://explicit:1".into()],
            signer_url: Some("http://explicit-signer".into()),
            signer_headers: BTreeMap::from([("A".into(), "explicit".into())]),
            discovery_url: Some("http://explicit-discovery".into()),
            ..Settings::default()
        };
        let token = Token {
            signer: Some("http://token-signer".into()),
            discovery_headers: Some(BTreeMap::from([("B".into(), "token".into())])),
            ..Token::default()
        };
        let s = explicit.with_token(&token);
        assert_eq!(s.orchestrators, ["https://explicit:1"]);
        assert_eq!(s.signer_url.as_deref(), Some("http://token-signer"));
        assert_eq!(s.signer_headers["A"], "explicit");
        assert_eq!(
            s.discovery_url.as_deref(),
            Some("http://explicit-discovery")
        );
        assert_eq!(s.discovery_headers["B"], "token");
        assert!(!s.is_offchain());
    }

    #[test]
    fn debug_output_hides_header_values() {
        let s = Settings {
            signer_headers: BTreeMap::from([("Authorization".into(), "Bearer secret".into())]),
            ..Settings::default()
        };
        let text = format!("{s:?}");
        assert!(text.contains("Authorization"));
        assert!(!text.contains("secret"));
    }
}
