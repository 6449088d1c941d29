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
    fn divisor(self) -> u128 {
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

/// The most the gateway pays a live runner, per unit.
///
/// The default is **5 USD per hour** for metered runners (per hour of 720p30 video for
/// pixel-priced ones) and **0.05 USD per call** for fixed-price ones, converted at an ETH
/// price of **2000 USD**. A Scope runner needs one data-centre GPU (H100/L40S class), which
/// rents for roughly 2–3 USD per hour; 5 USD leaves room for the operator's margin and price
/// movement while refusing runners priced at several times the going rate. The conversion
/// uses a configured ETH price because orchestrators convert their USD prices with a live
/// feed: set it near the market. If it is set too high, the wei ceiling is stricter than
/// intended (the safe direction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunnerPriceCeiling {
    /// USD per hour for `seconds` and `720p-pixel-seconds` runners. Default 5.0.
    pub usd_per_hour: f64,
    /// USD per call for `fixed` runners. Default 0.05.
    pub usd_per_call: f64,
    /// ETH price in USD used for every conversion. Default 2000.
    pub eth_usd: f64,
    /// Explicit ceiling in wei per second; overrides `usd_per_hour` for `seconds`.
    pub wei_per_second: Option<u128>,
    /// Explicit ceiling in wei per 720p pixel; overrides `usd_per_hour` for pixels.
    pub wei_per_pixel: Option<u128>,
    /// Explicit ceiling in wei per call; overrides `usd_per_call`.
    pub wei_per_call: Option<u128>,
}

impl Default for RunnerPriceCeiling {
    fn default() -> Self {
        Self {
            usd_per_hour: 5.0,
            usd_per_call: 0.05,
            eth_usd: 2000.0,
            wei_per_second: None,
            wei_per_pixel: None,
            wei_per_call: None,
        }
    }
}

impl RunnerPriceCeiling {
    /// The ceiling for `unit` in wei per unit (0 when the settings cannot be converted,
    /// which refuses every priced runner rather than paying anything).
    pub fn max_wei(&self, unit: PriceUnit) -> u128 {
        let explicit = match unit {
            PriceUnit::Seconds => self.wei_per_second,
            PriceUnit::PixelSeconds720p => self.wei_per_pixel,
            PriceUnit::Fixed => self.wei_per_call,
        };
        if let Some(w) = explicit {
            return w;
        }
        let usd = match unit {
            PriceUnit::Fixed => self.usd_per_call,
            _ => self.usd_per_hour,
        };
        match (Decimal::from_f64(usd), Decimal::from_f64(self.eth_usd)) {
            (Ok(usd), Ok(eth)) => usd_to_wei(usd, unit, eth).unwrap_or(0),
            _ => 0,
        }
    }

    /// The ceiling for `unit` as a price.
    pub fn max_price(&self, unit: PriceUnit) -> RunnerPrice {
        RunnerPrice {
            wei: self.max_wei(unit),
            unit,
        }
    }

    /// `Err(reason)` naming both prices when `price` is above the ceiling.
    pub fn check(&self, price: &RunnerPrice) -> Result<(), String> {
        let max = self.max_price(price.unit);
        if price.wei > max.wei {
            return Err(format!(
                "price {} is above the ceiling {}",
                price.describe(self.eth_usd),
                max.describe(self.eth_usd)
            ));
        }
        Ok(())
    }

    /// The `maxPrice` for the signer: the discovery price padded by 1.2 % (the reference
    /// SDK's allowance for ETH/USD drift, doc/remote-signer.md:185), never above the ceiling.
    pub fn signer_max(&self, price: &RunnerPrice) -> RunnerPrice {
        let padded = price
            .wei
            .saturating_mul(1012)
            .div_ceil(1000)
            .min(self.max_wei(price.unit));
        RunnerPrice {
            wei: padded,
            unit: price.unit,
        }
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

    #[test]
    fn default_ceiling_is_five_dollars_an_hour() {
        let c = RunnerPriceCeiling::default();
        assert_eq!(c.max_wei(PriceUnit::Seconds), 694_444_444_444);
        assert_eq!(c.max_wei(PriceUnit::PixelSeconds720p), 25_117);
        assert_eq!(c.max_wei(PriceUnit::Fixed), 25_000_000_000_000);
        let ten = RunnerPrice {
            wei: 1_388_888_888_888,
            unit: PriceUnit::Seconds,
        };
        let err = c.check(&ten).unwrap_err();
        assert!(err.contains("1388888888888 wei/seconds"), "{err}");
        assert!(err.contains("694444444444 wei/seconds"), "{err}");
        assert!(
            err.contains("$10.0000/hour") && err.contains("$5.0000/hour"),
            "{err}"
        );
        let four = RunnerPrice {
            wei: 555_555_555_555,
            unit: PriceUnit::Seconds,
        };
        assert!(c.check(&four).is_ok());
    }

    #[test]
    fn signer_max_is_padded_and_capped() {
        let c = RunnerPriceCeiling {
            wei_per_second: Some(1_000_000),
            ..RunnerPriceCeiling::default()
        };
        let p = |wei| RunnerPrice {
            wei,
            unit: PriceUnit::Seconds,
        };
        assert_eq!(c.signer_max(&p(1000)).wei, 1012);
        assert_eq!(c.signer_max(&p(1001)).wei, 1014); // ceil(1013.012)
        assert_eq!(c.signer_max(&p(999_000)).wei, 1_000_000);
        assert_eq!(c.signer_max(&p(u128::MAX)).wei, 1_000_000);
    }

    #[test]
    fn broken_settings_refuse_everything() {
        let c = RunnerPriceCeiling {
            eth_usd: 0.0,
            ..RunnerPriceCeiling::default()
        };
        assert_eq!(c.max_wei(PriceUnit::Seconds), 0);
        let c = RunnerPriceCeiling {
            usd_per_hour: f64::NAN,
            ..RunnerPriceCeiling::default()
        };
        assert_eq!(c.max_wei(PriceUnit::Seconds), 0);
    }
}
