//! # lpgw-trickle
//!
//! Livepeer's *trickle* protocol: segmented HTTP pub/sub where a publisher streams each
//! segment's body with a `POST {channel}/{seq}` while subscribers read the same bytes live with
//! `GET {channel}/{seq}`. This crate is wire-compatible with go-livepeer's `trickle` package.
//!
//! It provides:
//! - [`wire`]: header names, status codes and the [`wire::SeqRequest`] vocabulary;
//! - [`ring`]: the server's per-channel segment ring as plain data (no I/O);
//! - [`server`]: an axum [`Router`](axum::Router) over the ring, mountable under any base path;
//! - [`follow`] and [`publish`]: the clients' sequencing and retry decisions as plain data;
//! - [`client`]: the async [`client::Publisher`] and [`client::Subscriber`] (with preconnect);
//! - [`json`]: JSON control/events channels over the clients (one document per segment or
//!   newline-delimited), with keepalives;
//! - [`TrickleError`]: the clients' error type;
//!
//! It deliberately knows nothing about video, Livepeer jobs or payments: payloads are bytes.
#![warn(missing_docs)]

pub mod client;
mod error;
pub mod follow;
pub mod json;
pub mod publish;
pub mod ring;
mod segment;
pub mod server;
pub mod wire;

pub use error::{TransportError, TrickleError};
