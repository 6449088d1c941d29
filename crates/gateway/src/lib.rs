//! # lpgw-gateway
//!
//! The control plane of a Livepeer gateway: find orchestrators, check and pick them, pay them
//! through a remote signer (or not at all, offchain), and start live video-to-video jobs.
//!
//! - [`Token`] and [`Settings`]: configuration, with token values winning;
//! - [`Gateway::discover`]: the orchestrator list (explicit, discovery URL, or the signer);
//! - [`Gateway::orchestrator_info`]: gRPC `GetOrchestrator` over HTTP/2, TLS pinned on first use
//!   by default ([`TlsMode`]), h2c for `http://` orchestrators;
//! - [`Gateway::candidates`] / [`Gateway::probe_all`]: concurrent probes, fastest first, with a
//!   [`Rejection`] for every orchestrator not used;
//! - [`Gateway::start_lv2v`]: pay, `POST /live-video-to-video`, fall through to the next
//!   candidate, and return an [`Lv2vJob`] that keeps paying, keeps control alive and streams
//!   events until closed.
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

mod config;
mod discovery;
mod error;
mod gateway;
mod http;
mod job;
mod lv2v;
mod orchestrator;
mod payment;
mod signer;
mod tls;
mod token;

pub use config::{MaxPrice, Settings, TlsMode};
pub use discovery::{DiscoverySource, LV2V_CAPABILITY, discover_orchestrators, lv2v_cap};
pub use error::{Error, RejectReason, Rejection};
pub use gateway::{Candidates, Gateway};
pub use job::{EndReason, JobUrls, Lv2vJob};
pub use lv2v::StartRequest;
pub use orchestrator::{ModelCapacity, OrchestratorSummary, Price, lv2v_capabilities};
pub use payment::PaymentStats;
pub use signer::{ORCHESTRATOR_URL_HEADER, SignerMaterial};
pub use token::{Token, TokenError};

/// Protobuf types used in this crate's API.
pub use lpgw_proto as proto;
