//! The remote signer's session state and billing rules (server/remote_signer.go:148-774).
//! Pure: time is passed in.

use serde::{Deserialize, Serialize};

use crate::ledger::{LV2V_PIXELS_PER_SEC, Price};

/// Most tickets one call may create (remote_signer.go).
pub(crate) const MAX_TICKETS: u128 = 100;

/// Seconds billed by the first `lv2v` call (the initial prepayment of server/ai_process.go).
pub(crate) const LV2V_FIRST_SECS: u64 = 60;

/// Seconds billed by the first `live` call.
pub(crate) const LIVE_FIRST_SECS: u64 = 10;

/// What a payment is for; decides the billable units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobType {
    /// Units come from `inPixels`.
    Untyped,
    /// Live runner: one unit per second.
    Live,
    /// LV2V: 720p30 pixels per second.
    Lv2v,
    /// One unit per call.
    Fixed,
}

impl JobType {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "" => Some(Self::Untyped),
            "live" => Some(Self::Live),
            "lv2v" => Some(Self::Lv2v),
            "fixed" => Some(Self::Fixed),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Untyped => "",
            Self::Live => "live",
            Self::Lv2v => "lv2v",
            Self::Fixed => "fixed",
        }
    }

    /// The `maxPrice.unit` that goes with this type.
    pub(crate) fn max_price_unit(self) -> Option<&'static str> {
        match self {
            Self::Untyped => None,
            Self::Live => Some("seconds"),
            Self::Lv2v => Some("720p-pixel-seconds"),
            Self::Fixed => Some("fixed"),
        }
    }
}

/// The signer's per-session state, signed and handed to the gateway between calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PaymentState {
    #[serde(rename = "StateID")]
    pub(crate) state_id: String,
    #[serde(rename = "PMSessionID")]
    pub(crate) pm_session_id: String,
    /// Unix milliseconds of the last billed call.
    pub(crate) last_update: i64,
    pub(crate) orchestrator_address: String,
    pub(crate) app: String,
    pub(crate) auth_expiry: i64,
    pub(crate) sender_nonce: u32,
    /// Credit left at the orchestrator, `num/den` in wei.
    pub(crate) balance: String,
    pub(crate) initial_price_per_unit: i64,
    pub(crate) initial_pixels_per_unit: i64,
    #[serde(rename = "Type")]
    pub(crate) job_type: String,
    pub(crate) sequence_number: u64,
    #[serde(rename = "AuthID")]
    pub(crate) auth_id: String,
}

impl PaymentState {
    pub(crate) fn balance_wei(&self) -> u128 {
        let (num, den) = self.balance.split_once('/').unwrap_or((&self.balance, "1"));
        let num: u128 = num.trim().parse().unwrap_or(0);
        let den: u128 = den.trim().parse().unwrap_or(1).max(1);
        num / den
    }

    pub(crate) fn initial_price(&self) -> Price {
        Price {
            per_unit: self.initial_price_per_unit,
            pixels: self.initial_pixels_per_unit.max(1),
        }
    }
}

/// Billable units of one call: `elapsed_ms` since the last call, or `None` on the first.
pub(crate) fn billable_units(job: JobType, elapsed_ms: Option<u64>, in_pixels: u64) -> u64 {
    match (job, elapsed_ms) {
        (JobType::Untyped, _) => in_pixels,
        (JobType::Fixed, _) => 1,
        (JobType::Lv2v, None) => LV2V_FIRST_SECS * LV2V_PIXELS_PER_SEC,
        (JobType::Lv2v, Some(ms)) => {
            u64::try_from(u128::from(ms) * u128::from(LV2V_PIXELS_PER_SEC) / 1000)
                .unwrap_or(u64::MAX)
        }
        (JobType::Live, None) => LIVE_FIRST_SECS,
        (JobType::Live, Some(ms)) => ms.div_ceil(1000),
    }
}

/// Tickets needed so that `balance` plus their value covers `fee`; 0 when it already does.
pub(crate) fn tickets_needed(fee: u128, balance: u128, ev: u128) -> Option<u128> {
    if balance >= fee {
        return Some(0);
    }
    if ev == 0 {
        return None;
    }
    Some((fee - balance).div_ceil(ev))
}

/// `a > b` for prices as fractions.
pub(crate) fn price_above(a: Price, b: Price) -> bool {
    i128::from(a.per_unit) * i128::from(b.pixels.max(1))
        > i128::from(b.per_unit) * i128::from(a.pixels.max(1))
}

/// A non-negative decimal (`"1.012"`, `"2e3"`, `"5"`) as an exact fraction, like Go's
/// `big.Rat.SetString`. Digits beyond what fits in `i64` are truncated (the value rounds
/// down); too large a value saturates. `None` when it is not a decimal.
pub(crate) fn decimal_price(s: &str) -> Option<Price> {
    let s = s.trim();
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let mantissa = mantissa.strip_prefix('+').unwrap_or(mantissa);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut digits: String = int.chars().chain(frac.chars()).collect();
    digits = digits.trim_start_matches('0').to_owned();
    let mut scale = i32::try_from(frac.len()).ok()?.checked_sub(exp)?;
    // At most 18 digits and 10^18 as denominator keep both within i64.
    while scale > 0 && (digits.len() > 18 || scale > 18) {
        digits.pop();
        scale -= 1;
    }
    if digits.is_empty() {
        return Some(Price {
            per_unit: 0,
            pixels: 1,
        });
    }
    let mut num: u128 = digits.parse().unwrap_or(u128::MAX);
    if scale < 0 {
        num = u32::try_from(-scale)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
            .and_then(|m| num.checked_mul(m))
            .unwrap_or(u128::MAX);
    }
    let den = 10i64.pow(u32::try_from(scale.max(0)).ok()?);
    Some(Price {
        per_unit: i64::try_from(num).unwrap_or(i64::MAX),
        pixels: den,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frac(per_unit: i64, pixels: i64) -> Option<Price> {
        Some(Price { per_unit, pixels })
    }

    #[test]
    fn decimal_prices_are_exact_fractions() {
        assert_eq!(decimal_price("5"), frac(5, 1));
        assert_eq!(decimal_price(" 1.012 "), frac(1012, 1000));
        assert_eq!(decimal_price("0.5"), frac(5, 10));
        assert_eq!(decimal_price(".25"), frac(25, 100));
        assert_eq!(decimal_price("2e3"), frac(2000, 1));
        assert_eq!(decimal_price("1.5E-2"), frac(15, 1000));
        assert_eq!(decimal_price("0"), frac(0, 1));
        assert_eq!(decimal_price("1e40"), frac(i64::MAX, 1));
        // Too many digits round down.
        assert_eq!(
            decimal_price("0.1234567890123456789"),
            frac(123_456_789_012_345_678, 1_000_000_000_000_000_000)
        );
        for bad in ["", ".", "-1", "abc", "1.2.3", "1e", "0x10"] {
            assert_eq!(decimal_price(bad), None, "{bad}");
        }
        // 1.5 wei per pixel is within a 1.6 ceiling and above a 1.4 one.
        let p = Price {
            per_unit: 3,
            pixels: 2,
        };
        assert!(!price_above(p, decimal_price("1.6").unwrap()));
        assert!(price_above(p, decimal_price("1.4").unwrap()));
    }

    #[test]
    fn units_per_type() {
        assert_eq!(billable_units(JobType::Lv2v, None, 0), 60 * 27_648_000);
        assert_eq!(billable_units(JobType::Lv2v, Some(1_500), 0), 41_472_000);
        assert_eq!(billable_units(JobType::Live, None, 0), 10);
        assert_eq!(billable_units(JobType::Live, Some(1_001), 0), 2);
        assert_eq!(billable_units(JobType::Fixed, Some(99_000), 0), 1);
        assert_eq!(billable_units(JobType::Untyped, None, 777), 777);
    }

    #[test]
    fn live_billing_vector_price_3_ev_35() {
        // remote_signer_test.go LiveBillsElapsedSeconds: 10 s first, then elapsed seconds.
        let price = Price {
            per_unit: 3,
            pixels: 1,
        };
        let fee1 = price.fee(billable_units(JobType::Live, None, 0));
        let n1 = tickets_needed(fee1, 0, 35).unwrap();
        let bal1 = n1 * 35 - fee1;
        assert_eq!((fee1, n1, bal1), (30, 1, 5));
        let fee2 = price.fee(billable_units(JobType::Live, Some(12_000), 0));
        let n2 = tickets_needed(fee2, bal1, 35).unwrap();
        assert_eq!(bal1 + n2 * 35 - fee2, 4);
        assert_eq!(tickets_needed(5, 5, 35), Some(0));
        assert_eq!(tickets_needed(5, 0, 0), None);
    }

    #[test]
    fn state_round_trips_with_go_field_names() {
        let s = PaymentState {
            state_id: "s".into(),
            pm_session_id: "p".into(),
            last_update: 1,
            orchestrator_address: "0xab".into(),
            app: String::new(),
            auth_expiry: 2,
            sender_nonce: 3,
            balance: "10/4".into(),
            initial_price_per_unit: 5,
            initial_pixels_per_unit: 1,
            job_type: "lv2v".into(),
            sequence_number: 4,
            auth_id: String::new(),
        };
        let j = serde_json::to_value(&s).unwrap();
        for k in [
            "StateID",
            "PMSessionID",
            "LastUpdate",
            "Balance",
            "Type",
            "AuthID",
        ] {
            assert!(j.get(k).is_some(), "{k}");
        }
        assert_eq!(serde_json::from_value::<PaymentState>(j).unwrap(), s);
        assert_eq!(s.balance_wei(), 2);
        assert!(price_above(
            Price {
                per_unit: 3,
                pixels: 2
            },
            Price {
                per_unit: 1,
                pixels: 1
            }
        ));
        assert!(!price_above(
            Price {
                per_unit: 2,
                pixels: 2
            },
            Price {
                per_unit: 1,
                pixels: 1
            }
        ));
    }
}
