//! # lpgw-gateway
//!
//! The control plane of a Livepeer gateway: find orchestrators, check and pick them, pay them
//! through a remote signer (or not at all, offchain), and start live video-to-video jobs.
//!
//! - [`Token`] and [`Settings`]: configuration, with token values winning;
//! - [`Gateway::discover`]: the orchestrator list (explicit, discovery URL, or the signer);
//! - [`Gateway::orchestrator_info`]: gRPC `GetOrchestrator` over HTTP/2, TLS pinned on first use
//!   by default ([`TlsMode`]), h2c for `http://` orchestrators; connections are kept per
//!   orchestrator for later probes, and a job's trickle channels use the same TLS policy and pins;
//! - [`Gateway::candidates`] / [`Gateway::probe_all`]: concurrent probes, fastest first, with a
//!   [`Rejection`] for every orchestrator not used;
//! - [`Gateway::start_lv2v`]: pay, `POST /live-video-to-video`, fall through to the next
//!   candidate, and return an [`Lv2vJob`] that keeps paying, keeps control alive and streams
//!   events until closed.
//! - [`Gateway::discover_runners`]: live runners from each orchestrator's `/discovery`, a
//!   discovery URL or the signer, filtered by app and GPU, hostile answers tolerated, best
//!   candidates first ([`order_candidates`]: free capacity, then price, then latency);
//! - [`Ceiling`]: the most the gateway pays on either flow (default 5 USD per hour, at the
//!   720p30 pixel rate orchestrators bill); orchestrators and runners above it become
//!   rejections naming both prices, and the signer's `maxPrice` is the offered price plus
//!   1.2 %, never above the ceiling;
//! - [`Gateway::reserve_session`] / [`Gateway::call_runner`]: the 402 challenge answered
//!   through the signer, a payment loop for metered sessions, and a [`RunnerSession`] that
//!   always stops at the orchestrator when closed;
//! - [`Gateway::start`]: one entry point for every model, routed by [`StartPolicy`]
//!   (live runner → serverless `/scope` → legacy, and legacy → live runner), returning a
//!   [`Job`]; Scope jobs ([`ScopeJob`]) come back with their stream started and their
//!   `in`/`out` channel URLs in [`ScopeJob::media`]. Every failed attempt is a [`Rejection`].
//!   A runner that takes a payment and delivers nothing is stopped at once and put on
//!   cool-down, never paid in a loop.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lpgw_gateway::Error> {
//! use lpgw_gateway::{Gateway, Settings, StartRequest, Token};
//!
//! let token = Token::parse("eyJvcmNoZXN0cmF0b3JzIjpbImh0dHBzOi8vMTI3LjAuMC4xOjg5MzUiXX0=")?;
//! let gateway = Gateway::new(Settings::default().with_token(&token))?;
//! let mut job = gateway.start_lv2v(&StartRequest::new("noop")).await?;
//! println!("publish to {}", job.urls().publish_url);
//! let mut events = job.take_events().expect("first call");
//! while let Some(event) = events.recv().await {
//!     println!("{event}");
//! }
//! job.close().await;
//! # Ok(()) }
//! ```
//!
//! Decisions (discovery precedence, candidate ranking, the payment cycle) are plain data with
//! unit tests; the async code around them only moves bytes. The crate does not touch media:
//! publishing video to the job's channels is the caller's business.
#![warn(missing_docs)]

mod budget;
mod ceiling;
mod config;
mod discovery;
mod error;
mod gateway;
mod handle;
mod http;
mod job;
mod lv2v;
mod orchestrator;
mod payment;
mod redact;
mod route;
mod runner;
mod scope;
mod signal;
mod signer;
mod tls;
mod token;
mod watchdog;

pub use budget::{Budget, BudgetConfig, BudgetExhausted, BudgetLimit, PaymentRecord, Wallet};
pub use ceiling::{BILLED_PIXELS_PER_HOUR, Ceiling, MaxPrice};
pub use config::{Fallback, LiveSettings, ScopeSettings, Settings, TlsMode};
pub use discovery::{DiscoverySource, LV2V_CAPABILITY, discover_orchestrators, lv2v_cap};
pub use error::{Error, RejectReason, Rejection};
pub use gateway::{Candidates, Gateway};
pub use handle::{Job, JobFailure};
pub use job::{EndReason, JobUrls, Lv2vJob};
pub use lv2v::StartRequest;
pub use orchestrator::{ModelCapacity, OrchestratorSummary, Price, lv2v_capabilities};
pub use payment::PaymentStats;
pub use route::{Route, StartPolicy};
pub use runner::{
    FundingEnd, PIXELS_PER_SECOND_720P30, PriceUnit, RunnerDiscovery, RunnerFilter, RunnerMode,
    RunnerOffer, RunnerPrice, RunnerReply, RunnerRequest, RunnerSession, order_candidates,
};
pub use scope::{
    InputMode, MediaChannels, PipelineSpec, ScopeChannel, ScopeHealth, ScopeJob, ScopeUrls,
};
pub use signal::{JobSignal, SignalReader};
pub use signer::{ORCHESTRATOR_URL_HEADER, SignerMaterial};
pub use token::{Token, TokenError};
pub use watchdog::{OutputWatchdog, Stall};

/// Protobuf types used in this crate's API.
pub use lpgw_proto as proto;
