//! # lpgw-devnet
//!
//! A local Livepeer network that go-livepeer's clients cannot tell from the real thing:
//!
//! - an **orchestrator** on one port serving HTTP/1.1 and HTTP/2 (TLS with a self-signed
//!   certificate made at start, or plain HTTP with h2c): gRPC `GetOrchestrator`,
//!   `POST /live-video-to-video` in go-livepeer's processing order, `POST /payment`,
//!   `POST /refresh-payment`, and the trickle server under `/ai/trickle/`;
//! - a **remote signer** with the real signer's HTTP API (`/sign-orchestrator-info`,
//!   `/generate-live-payment`, `/discover-orchestrators`);
//! - the **live-runner flow** (`-useLiveRunners`): dynamic registration by heartbeat with
//!   the o2r channel, static runners with health checks, `GET /discovery`, session
//!   reservation with the 402 payment challenge, session payments and the meter, stops, the
//!   runner callbacks (channels, proxies, stop) and the app proxy (persistent, single-shot,
//!   generated proxy URLs; streaming, SSE and WebSocket), on the public port and on a
//!   loopback runner-facing port ([`DevnetHandle::runner_url`]);
//! - **Scope out of the box**: built-in persistent `live-video-to-video/scope` live runners
//!   (capacity 1 each, four by default) and the serverless `POST /scope`, both behaving as
//!   the real Scope live runner: `runner_ready`, pipeline load and status through `api`,
//!   schemas, `start_stream` over a graph (failing silently when a pipeline is not loaded),
//!   `parameters`, `stop_stream`, restart and batched `logs`; pipelines `passthrough`,
//!   `gray` and the diffusion ids (emulated by the video effect, generating frames in text
//!   mode) ([`LiveConfig`], [`ScopeRunnerConfig`]);
//! - a **built-in LV2V runner** per session that decodes the input channel, applies a visible
//!   effect driven by the `prompt` and `strength` parameters, re-encodes and publishes the
//!   output channel (models `noop`, `relay` and `passthrough` copy segments through
//!   unchanged), follows the control channel and publishes status events with fps and frame
//!   counts;
//! - seeded **fault knobs**: capacity, latency, refusals, price, garbage gRPC, signer answers,
//!   and Scope's (slow or failing loads, no `runner_ready`, an uncorrelated `error`).
//!
//! Payments are emulated without a chain: tickets are opaque, authenticated with a per-devnet
//! secret, and credit their expected value to a balance per (sender, manifest) that the
//! orchestrator meters; an unpaid session is released as go-livepeer releases it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lpgw_devnet::DevnetError> {
//! let devnet = lpgw_devnet::Devnet::start(lpgw_devnet::DevnetConfig::default()).await?;
//! println!("orchestrator: {}", devnet.orchestrator_url());
//! devnet.shutdown().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod auth;
mod config;
mod devnet;
mod error;
mod keys;
mod ledger;
mod orch;
mod receipts;
mod respond;
mod runner;
mod runner_effect;
mod runner_status;
mod serve;
mod signer;
mod tickets;

pub use config::{DevnetConfig, FaultControl, Faults, PriceConfig};
pub use devnet::{Devnet, DevnetHandle};
pub use error::DevnetError;
pub use orch::live::config::{LiveConfig, ScopeRunnerConfig, StaticRunnerConfig, UsdPriceConfig};
