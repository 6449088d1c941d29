//! Payments for LV2V jobs: the pure decisions ([`state`]) and the session that acts on them.

pub(crate) mod session;
pub(crate) mod state;
pub(crate) mod value;

pub use session::PaymentStats;
