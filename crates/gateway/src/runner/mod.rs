//! The live-runner flow (spec §1): discovery, prices and the ceiling, candidate order,
//! reservation with payment, the funding loop, app calls and the stop that always follows.

mod call;
mod discover;
mod offer;
pub(crate) mod pay;
pub(crate) mod price;
mod select;
mod session;

pub use call::{RunnerReply, RunnerRequest};
pub use discover::RunnerDiscovery;
pub use offer::{RunnerFilter, RunnerMode, RunnerOffer};
pub use pay::FundingEnd;
pub use price::{PIXELS_PER_SECOND_720P30, PriceUnit, RunnerPrice};
pub use select::order_candidates;
pub use session::RunnerSession;

pub(crate) use call::{Funding, cool_down, funding_for, paid_request};
pub(crate) use select::{Cooldowns, apply_ceiling};
