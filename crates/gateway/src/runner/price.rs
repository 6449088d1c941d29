//! Live-runner prices: units, exact USD ⇄ wei conversion, the gateway's ceiling and the
//! max price handed to the signer. All pure.
//!
//! Conversion follows go-livepeer (ai/runner/live_runner.go:1768-1817, spec §1.7):
//! `wei = floor(usd / divisor × 1e18 / ETHUSD)` with divisor hour = 3600,
//! 720p = 3600·1280·720·30, fixed = 1. It is done on exact decimals so the spec's vectors
//! come out to the wei.

use std::fmt;

/// Units per second of 720p30 video (server/live_payment_processor.go:34-41).
pub const PIXELS_PER_SECOND_720P30: u128 = 1280 * 720 * 30;
/// Seconds in an hour.
const HOUR: u128 = 3600;
const WEI_PER_ETH: u128 = 1_000_000_000_000_000_000;

/// What one unit of a runner price buys (discovery `price_info.unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PriceUnit {
    /// `seconds`: one second of a session (registered per hour).
    Seconds,
    /// `720p-pixel-seconds`: one pixel of 720p30 video (registered per 720p hour).
    PixelSeconds720p,
    /// `fixed`: one call or session, paid once.
    Fixed,
}

impl PriceUnit {
    /// Parses a wei unit (`seconds`, `720p-pixel-seconds`, `fixed`) or a registration unit
    /// (`hour`, `720p`), case-insensitively, as the reference SDK does.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "seconds" | "hour" => Some(Self::Seconds),
            "720p-pixel-seconds" | "720p" => Some(Self::PixelSeconds720p),
            "fixed" => Some(Self::Fixed),
            _ => None,
        }
    }

    /// The wire name of the wei unit.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::PixelSeconds720p => "720p-pixel-seconds",
            Self::Fixed => "fixed",
        }
    }

    /// The remote signer's payment `type` for this unit (spec §5.8, §5.10).
    pub fn payment_type(self) -> &'static str {
        match self {
            Self::Seconds => "live",
            Self::PixelSeconds720p => "lv2v",
            Self::Fixed => "fixed",
        }
    }

    /// Whether sessions at this unit are billed for as long as they run (and so need a
    /// payment loop).
    pub fn is_metered(self) -> bool {
        !matches!(self, Self::Fixed)
    }

    /// Units in one "hour" of the registration unit: a USD price per hour (or per 720p hour,
    /// or per call) divided by this gives USD per unit.
    pub(crate) fn divisor(self) -> u128 {
        match self {
            Self::Seconds => HOUR,
            Self::PixelSeconds720p => HOUR * PIXELS_PER_SECOND_720P30,
            Self::Fixed => 1,
        }
    }
}

impl fmt::Display for PriceUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exact non-negative decimal `mantissa / 10^scale`, parsed from JSON number text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decimal {
    mantissa: u128,
    scale: u32,
}

/// Why a price could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PriceError {
    #[error("negative price {0}")]
    Negative(String),
    #[error("price {0} is not a decimal number")]
    NotANumber(String),
    #[error("price {0} is out of range")]
    OutOfRange(String),
}

impl Decimal {
    /// Parses `123`, `1.5`, `1e12`, `2.5E-3` (no sign other than a rejected `-`).
    pub(crate) fn parse(text: &str) -> Result<Self, PriceError> {
        let t = text.trim();
        if t.starts_with('-') {
            return Err(PriceError::Negative(t.to_owned()));
        }
        let nan = || PriceError::NotANumber(t.to_owned());
        let range = || PriceError::OutOfRange(t.to_owned());
        let t = t.strip_prefix('+').unwrap_or(t);
        let (num, exp) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| nan())?),
            None => (t, 0),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(nan());
        }
        // Trailing fractional zeros carry no value; dropping them keeps mantissas small.
        let frac = frac.trim_end_matches('0');
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let mut mantissa: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| range())?
        };
        let mut scale = i64::try_from(frac.len()).map_err(|_| range())? - i64::from(exp);
        if scale < 0 {
            let up = u32::try_from(-scale).map_err(|_| range())?;
            mantissa = 10u128
                .checked_pow(up)
                .and_then(|p| mantissa.checked_mul(p))
                .ok_or_else(range)?;
            scale = 0;
        }
        let scale = u32::try_from(scale).map_err(|_| range())?;
        if scale > 36 {
            // Below 1e-36 of anything is zero for every price we handle.
            return Ok(Self {
                mantissa: 0,
                scale: 0,
            });
        }
        Ok(Self { mantissa, scale })
    }

    /// From an `f64` setting (its shortest decimal text).
    pub(crate) fn from_f64(v: f64) -> Result<Self, PriceError> {
        if !v.is_finite() {
            return Err(PriceError::NotANumber(v.to_string()));
        }
        Self::parse(&format!("{v}"))
    }

    fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// `floor(self)`.
    fn floor(self) -> u128 {
        self.mantissa / 10u128.pow(self.scale)
    }
}

/// `floor(usd / divisor × 1e18 / eth_usd)`, exactly; `None` on overflow or a zero ETH price.
pub(crate) fn usd_to_wei(usd: Decimal, unit: PriceUnit, eth_usd: Decimal) -> Option<u128> {
    if eth_usd.is_zero() {
        return None;
    }
    // usd.m / 10^us / div × 1e18 / (eth.m / 10^es) = usd.m × 1e18 × 10^es / (10^us × div × eth.m)
    let num = usd
        .mantissa
        .checked_mul(WEI_PER_ETH)?
        .checked_mul(10u128.checked_pow(eth_usd.scale)?)?;
    let den = 10u128
        .checked_pow(usd.scale)?
        .checked_mul(unit.divisor())?
        .checked_mul(eth_usd.mantissa)?;
    Some(num / den)
}

/// A runner's price in wei per unit, as discovery reports it (or converted from USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerPrice {
    /// Wei per unit; always positive.
    pub wei: u128,
    /// The unit.
    pub unit: PriceUnit,
}

impl RunnerPrice {
    /// Reads a discovery `price_info` (`price` as JSON number text, `currency`, `unit`).
    /// `wei` prices are floored to whole wei; `usd` prices are converted through `eth_usd`.
    /// Missing currency means wei.
    pub(crate) fn from_parts(
        price: &str,
        currency: &str,
        unit: &str,
        eth_usd: f64,
    ) -> Result<Self, String> {
        let unit_parsed = PriceUnit::parse(unit).ok_or_else(|| {
            format!(
                "unknown price unit {:?}",
                crate::http::snippet(unit.as_bytes())
            )
        })?;
        let amount = Decimal::parse(price).map_err(|e| e.to_string())?;
        let wei = match currency.trim().to_ascii_lowercase().as_str() {
            "" | "wei" => amount.floor(),
            "usd" => {
                let eth = Decimal::from_f64(eth_usd).map_err(|e| e.to_string())?;
                usd_to_wei(amount, unit_parsed, eth)
                    .ok_or_else(|| format!("price {price} usd is out of range"))?
            }
            other => {
                return Err(format!(
                    "unknown price currency {:?}",
                    crate::http::snippet(other.as_bytes())
                ));
            }
        };
        if wei == 0 {
            return Err(format!("price {price} {currency} is below one wei"));
        }
        Ok(Self {
            wei,
            unit: unit_parsed,
        })
    }

    /// USD for one hour of use (metered units; for 720p pixels: an hour of 720p30 video) or
    /// for one call (`fixed`), at `eth_usd`. For display only.
    pub fn usd(&self, eth_usd: f64) -> f64 {
        // Lossy by design: this is for people, decisions use wei.
        #[allow(clippy::cast_precision_loss)]
        let wei = self.wei as f64 * self.unit.divisor() as f64;
        wei / 1e18 * eth_usd
    }

    /// The price of one hour (or one call, for `fixed`) in wei, to compare runners that bill
    /// in different units. Saturates.
    pub fn hourly_wei(&self) -> u128 {
        self.wei.saturating_mul(self.unit.divisor())
    }

    /// `"1388888888888 wei/seconds ($10.00/hour)"`.
    pub fn describe(&self, eth_usd: f64) -> String {
        let per = if self.unit == PriceUnit::Fixed {
            "call"
        } else {
            "hour"
        };
        format!(
            "{} wei/{} (${:.4}/{per})",
            self.wei,
            self.unit,
            self.usd(eth_usd)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(p: &str, unit: &str) -> u128 {
        RunnerPrice::from_parts(p, "usd", unit, 2000.0).unwrap().wei
    }

    #[test]
    fn spec_vectors_convert_exactly() {
        // spec §1.7, ETH = 2000 USD.
        assert_eq!(usd("10", "hour"), 1_388_888_888_888);
        assert_eq!(usd("10", "720p"), 50_234);
        assert_eq!(usd("0.001990656", "720p"), 10);
        assert_eq!(usd("0.001", "fixed"), 500_000_000_000);
    }

    #[test]
    fn wei_prices_parse_leniently_but_safely() {
        let p = |s: &str| RunnerPrice::from_parts(s, "wei", "seconds", 2000.0);
        assert_eq!(p("1388888888888").unwrap().wei, 1_388_888_888_888);
        assert_eq!(p("1.5e3").unwrap().wei, 1500);
        assert_eq!(p("10.9").unwrap().wei, 10);
        assert!(p("-5").unwrap_err().contains("negative"));
        assert!(p("0").unwrap_err().contains("below one wei"));
        assert!(p("0.3").is_err());
        assert!(p("abc").is_err());
        assert!(p("1e400").unwrap_err().contains("out of range"));
        assert!(p("").is_err());
        assert!(RunnerPrice::from_parts("1", "wei", "minutes", 1.0).is_err());
        assert!(RunnerPrice::from_parts("1", "eur", "seconds", 1.0).is_err());
        assert_eq!(
            RunnerPrice::from_parts("1", "", "FIXED", 1.0).unwrap().unit,
            PriceUnit::Fixed
        );
    }

    #[test]
    fn units_map_to_signer_types() {
        assert_eq!(PriceUnit::parse("hour").unwrap().payment_type(), "live");
        assert_eq!(PriceUnit::parse("seconds").unwrap().payment_type(), "live");
        assert_eq!(PriceUnit::parse("720p").unwrap().payment_type(), "lv2v");
        assert_eq!(
            PriceUnit::parse("720p-pixel-seconds")
                .unwrap()
                .payment_type(),
            "lv2v"
        );
        assert_eq!(PriceUnit::parse("fixed").unwrap().payment_type(), "fixed");
        assert!(!PriceUnit::Fixed.is_metered());
    }
}
