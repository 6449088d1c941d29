//! Errors of the gateway SDK, and the per-orchestrator rejections they carry.

use std::fmt;

use crate::token::TokenError;

/// One orchestrator that was tried (or skipped) and why it was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The orchestrator URL as it was configured or discovered.
    pub url: String,
    /// Why it was rejected.
    pub reason: RejectReason,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.url, self.reason)
    }
}

/// Why an orchestrator was rejected. `Display` gives the human-readable reason that goes into
/// API error bodies (`{"url", "reason"}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The URL could not be parsed.
    #[error("invalid orchestrator url: {0}")]
    InvalidUrl(String),
    /// No connection could be made (refused, DNS, TLS handshake).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The orchestrator did not answer in time.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// GetOrchestrator answered with a gRPC error status.
    #[error("GetOrchestrator failed ({code}): {message}")]
    Rpc {
        /// gRPC status code name.
        code: String,
        /// gRPC status message (e.g. `OrchestratorCapped`).
        message: String,
    },
    /// The orchestrator answered something that is not a valid reply.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The orchestrator's price is above the configured ceiling (the text names both
    /// prices); it was never paid.
    #[error("{0}")]
    OverPriceCeiling(String),
    /// The orchestrator's auth token is missing or already expired.
    #[error("orchestrator auth token missing or expired")]
    AuthTokenExpired,
    /// The orchestrator has no capacity for the model (`503 insufficient capacity`).
    #[error("insufficient capacity")]
    InsufficientCapacity,
    /// The orchestrator refused the payment header (402) or payment processing (400).
    #[error("payment refused ({status}): {body}")]
    PaymentRefused {
        /// HTTP status.
        status: u16,
        /// Error text from the orchestrator.
        body: String,
    },
    /// The orchestrator refused the segment credentials (403), e.g. an expired auth token.
    #[error("segment credentials refused: {0}")]
    CredentialsRefused(String),
    /// `POST /live-video-to-video` failed with another status.
    #[error("start failed ({status}): {body}")]
    StartFailed {
        /// HTTP status.
        status: u16,
        /// Error text from the orchestrator.
        body: String,
    },
    /// The remote signer reported the price exceeded (481); the orchestrator was never paid.
    #[error("remote signer: price exceeded: {0}")]
    SignerPriceExceeded(String),
    /// The signer asked for refreshed orchestrator info (480) more times than allowed.
    #[error("remote signer kept asking for a refresh ({0} refreshes)")]
    RefreshLimit(u32),
    /// The remote signer failed.
    #[error("remote signer: {0}")]
    Signer(String),
    /// A budget the job draws on has no room for the opening payment (the text gives the
    /// figures); nothing was paid.
    #[error("{0}")]
    BudgetExhausted(String),
    /// A live runner's price is above the configured ceiling (the text names both prices);
    /// it was never paid.
    #[error("{0}")]
    OverRunnerCeiling(String),
    /// The live runner has no free session (`503 no capacity available for runner`).
    #[error("no capacity available for runner")]
    RunnerFull,
    /// The orchestrator refused the reservation or call.
    #[error("runner refused ({status}): {body}")]
    RunnerRefused {
        /// HTTP status.
        status: u16,
        /// Error text from the orchestrator.
        body: String,
    },
    /// The runner is on cool-down after a paid session whose app call failed.
    #[error("on cool-down after a failed paid session ({0} s left)")]
    CoolingDown(u64),
    /// A reserved (and possibly paid) session's app call failed; the session was stopped.
    #[error("app call failed ({status}): {body}")]
    AppCallFailed {
        /// HTTP status (0 when no answer arrived).
        status: u16,
        /// Error text.
        body: String,
    },
    /// The runner asked for payment (402) but no remote signer is configured.
    #[error("payment required but no remote signer is configured")]
    PaymentRequired,
    /// The payment challenge could not be settled (the signer kept asking for fresh
    /// parameters); the number of challenges received.
    #[error("payment challenge not settled after {0} challenges")]
    ChallengeRetries(u32),
    /// The Scope stream did not start (error event, timeout or broken channels).
    #[error("scope stream did not start: {0}")]
    ScopeStart(String),
    /// The Scope runner refused the pipelines or parameters asked for; no other runner is
    /// tried, since each would refuse them too.
    #[error("scope pipeline refused: {0}")]
    PipelineRefused(String),
    /// Nothing offered the app, or this route is not available.
    #[error("{0}")]
    Unavailable(String),
}

/// Errors of the gateway SDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The gateway token is malformed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// No orchestrator list, discovery URL or signer is configured.
    #[error("no orchestrators, discovery url or signer configured")]
    NoDiscoverySource,
    /// A discovery endpoint failed or answered garbage.
    #[error("discovery at {url} failed: {reason}")]
    Discovery {
        /// The discovery endpoint (with query).
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Discovery succeeded but named no orchestrators.
    #[error("no orchestrators available to select")]
    NoOrchestrators,
    /// Every candidate orchestrator failed or was skipped.
    #[error("{}", all_failed(.rejections))]
    NoOrchestratorAvailable {
        /// One entry per candidate, in the order they were rejected.
        rejections: Vec<Rejection>,
    },
    /// A single orchestrator call failed (outside of selection).
    #[error(transparent)]
    Orchestrator(#[from] Rejection),
    /// A remote-signer call failed.
    #[error("remote signer at {url}: {reason}")]
    Signer {
        /// The signer endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A caller-supplied setting is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The start request itself is malformed (for example Scope parameters of the wrong
    /// shape): refused before any orchestrator is asked or paid.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The TLS configuration could not be built.
    #[error("tls setup: {0}")]
    Tls(String),
    /// The job has ended; its channels are gone.
    #[error("job closed")]
    JobClosed,
    /// Reading a runner's answer failed.
    #[error("runner: {reason}")]
    Runner {
        /// What went wrong.
        reason: String,
    },
    /// A Scope runner refused what the start asked of it (an unknown pipeline, a failed
    /// load, bad parameters): every runner would, so no other one is tried.
    #[error("scope runner refused the stream: {reason}")]
    ScopeRefused {
        /// The runner's words.
        reason: String,
    },
    /// Every live runner candidate failed or was skipped.
    #[error("{}", all_runners_failed(.rejections))]
    NoRunnerAvailable {
        /// One entry per runner tried or skipped, in order.
        rejections: Vec<Rejection>,
    },
    /// Every start route (live runner, serverless, legacy) failed for a model.
    #[error("could not start {model}{}", list(.rejections))]
    StartFailed {
        /// The model asked for.
        model: String,
        /// Every attempt's rejection, in order, across routes.
        rejections: Vec<Rejection>,
    },
}

impl std::error::Error for Rejection {}

fn all_failed(rejections: &[Rejection]) -> String {
    format!(
        "all orchestrators failed ({} tried){}",
        rejections.len(),
        list(rejections)
    )
}

fn all_runners_failed(rejections: &[Rejection]) -> String {
    format!(
        "all runners failed ({} tried){}",
        rejections.len(),
        list(rejections)
    )
}

/// `": a: why; b: why"`, or empty.
fn list(rejections: &[Rejection]) -> String {
    let mut s = String::new();
    for (i, r) in rejections.iter().enumerate() {
        s.push_str(if i == 0 { ": " } else { "; " });
        s.push_str(&r.to_string());
    }
    s
}

impl Error {
    /// Whether trying again later may succeed (network or capacity trouble), as opposed to a
    /// configuration or input problem that will fail the same way.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Token(_)
            | Self::NoDiscoverySource
            | Self::Config(_)
            | Self::InvalidRequest(_)
            | Self::Tls(_)
            | Self::ScopeRefused { .. }
            | Self::JobClosed => false,
            Self::Discovery { .. }
            | Self::NoOrchestrators
            | Self::Signer { .. }
            | Self::Runner { .. } => true,
            Self::NoOrchestratorAvailable { rejections }
            | Self::NoRunnerAvailable { rejections }
            | Self::StartFailed { rejections, .. } => {
                rejections.iter().any(|r| r.reason.is_retryable())
            }
            Self::Orchestrator(r) => r.reason.is_retryable(),
        }
    }

    /// The per-orchestrator rejections this error carries (empty for most variants).
    pub fn rejections(&self) -> &[Rejection] {
        match self {
            Self::NoOrchestratorAvailable { rejections }
            | Self::NoRunnerAvailable { rejections }
            | Self::StartFailed { rejections, .. } => rejections,
            Self::Orchestrator(r) => std::slice::from_ref(r),
            _ => &[],
        }
    }
}

impl RejectReason {
    /// Whether the same orchestrator may accept a later attempt.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::InvalidUrl(_)
                | Self::OverPriceCeiling(_)
                | Self::BudgetExhausted(_)
                | Self::SignerPriceExceeded(_)
                | Self::OverRunnerCeiling(_)
                | Self::PipelineRefused(_)
                | Self::PaymentRequired
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_error_lists_every_rejection() {
        let err = Error::NoOrchestratorAvailable {
            rejections: vec![
                Rejection {
                    url: "https://a:1".into(),
                    reason: RejectReason::Timeout(3000),
                },
                Rejection {
                    url: "https://b:2".into(),
                    reason: RejectReason::InsufficientCapacity,
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "all orchestrators failed (2 tried): https://a:1: timed out after 3000 ms; \
             https://b:2: insufficient capacity"
        );
        assert_eq!(err.rejections().len(), 2);
        assert!(err.is_retryable());
    }

    #[test]
    fn price_rejections_are_not_retryable() {
        let err = Error::NoOrchestratorAvailable {
            rejections: vec![Rejection {
                url: "https://a:1".into(),
                reason: RejectReason::OverPriceCeiling("price 5 wei/pixel".into()),
            }],
        };
        assert!(!err.is_retryable());
        assert!(!Error::NoDiscoverySource.is_retryable());
    }
}
