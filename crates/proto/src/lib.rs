//! Protobuf types of the Livepeer orchestrator protocol (package `net` of go-livepeer's
//! `net/lp_rpc.proto`) and the codecs of the `Livepeer-Payment` and `Livepeer-Segment` headers.
//!
//! The `.proto` file is our own, written from the wire specification with only the messages
//! and fields lpgw uses; field numbers match the network's. It is compiled at build time with a
//! pure-Rust compiler, so building needs no system `protoc`.
//!
//! - [`net`]: the generated messages, plus the tonic [`net::orchestrator_client`] and
//!   [`net::orchestrator_server`] for `net.Orchestrator/GetOrchestrator`.
//! - [`headers`]: base64 (standard, padded) protobuf codecs for the payment headers.
//! - [`caps`]: capability IDs and the bitstring layout.
#![warn(missing_docs)]

pub mod caps;
pub mod headers;

/// Messages and services of the `net` protobuf package.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::use_self
)]
pub mod net {
    tonic::include_proto!("net");
}

pub use headers::{
    HeaderError, LIVEPEER_PAYMENT, LIVEPEER_SEGMENT, decode_payment, decode_seg_data,
    encode_payment, encode_seg_data,
};
pub use net::{
    AuthToken, Capabilities, OrchestratorInfo, OrchestratorRequest, Payment, PaymentResult,
    PriceInfo, SegData, TicketExpirationParams, TicketParams, TicketSenderParams,
};
