//! Payments for both flows: the pure decisions ([`state`]), the one driver that acts on them
//! ([`driver`]), and the value of a signed payment ([`value`]).

pub(crate) mod driver;
pub(crate) mod state;
pub(crate) mod value;

pub use driver::PaymentStats;
