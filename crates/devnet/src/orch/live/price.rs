//! Live-runner prices: USD per hour, per 720p hour or fixed, converted to integer wei per
//! billing unit with an ETH/USD price (ai/runner/live_runner.go:1768-1817). Exact decimal
//! arithmetic; the result is floored as `common.PriceToInt64` floors it.

/// A non-negative rational `num / den` parsed from a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decimal {
    num: u128,
    den: u128,
}

/// Why a price cannot be used; texts are go-livepeer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PriceError {
    /// The price field is empty.
    #[error("price_info.price is required")]
    Missing,
    /// Not a decimal, zero or negative.
    #[error("price_info.price must be a positive decimal")]
    NotPositive,
    /// A currency other than USD.
    #[error("price_info.currency must be usd")]
    Currency,
    /// An unknown unit.
    #[error("price_info.unit must be hour, 720p, or fixed")]
    Unit,
    /// The conversion floors to zero wei (or overflows).
    #[error("converted live runner price must be at least one wei")]
    BelowOneWei,
}

impl Decimal {
    /// Parses `123`, `0.5`, `1e-3`, `2.5E2`, or `a/b` (Go `big.Rat.SetString`).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('/') {
            let num: u128 = a.parse().ok()?;
            let den: u128 = b.parse().ok()?;
            return (den > 0).then_some(Self { num, den });
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
            None => (s, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let mut num: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let scale = i32::try_from(frac.len()).ok()? - exp;
        let mut den: u128 = 1;
        if scale >= 0 {
            den = 10u128.checked_pow(u32::try_from(scale).ok()?)?;
        } else {
            num = num.checked_mul(10u128.checked_pow(u32::try_from(-scale).ok()?)?)?;
        }
        Some(Self { num, den })
    }

    /// From an `f64` through its shortest decimal form.
    pub(crate) fn from_f64(x: f64) -> Option<Self> {
        (x.is_finite() && x >= 0.0).then(|| Self::parse(&format!("{x}")))?
    }

    pub(crate) fn is_positive(self) -> bool {
        self.num > 0
    }
}

/// `floor(a / b)` for `a = an·bd`, `b = bn·ad`... computed as `floor(n / d)` by long
/// division with `scale` extra decimal digits: `floor(n · 10^scale / d)`.
fn div_scaled(n: u128, d: u128, scale: u32) -> Option<u128> {
    if d == 0 {
        return None;
    }
    let mut q = n / d;
    let mut r = n % d;
    for _ in 0..scale {
        q = q.checked_mul(10)?;
        // r < d; r·10 overflows only for d > u128::MAX / 10.
        let r10 = r.checked_mul(10)?;
        q = q.checked_add(r10 / d)?;
        r = r10 % d;
    }
    Some(q)
}

/// The billing unit of a USD price unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// USD per hour → wei per second.
    Hour,
    /// USD per hour of 720p30 → wei per pixel.
    P720,
    /// USD once → wei once.
    Fixed,
}

impl Unit {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "720p" => Some(Self::P720),
            "fixed" => Some(Self::Fixed),
            _ => None,
        }
    }

    /// The registration unit name.
    #[cfg(test)]
    pub(crate) fn usd_name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::P720 => "720p",
            Self::Fixed => "fixed",
        }
    }

    /// The discovery unit name of the wei price.
    pub(crate) fn wei_name(self) -> &'static str {
        match self {
            Self::Hour => "seconds",
            Self::P720 => "720p-pixel-seconds",
            Self::Fixed => "fixed",
        }
    }

    /// Units in one USD price unit.
    fn divisor(self) -> u128 {
        match self {
            Self::Hour => 3600,
            Self::P720 => 3600 * 1280 * 720 * 30,
            Self::Fixed => 1,
        }
    }

    /// Billing units accrued per second of a session (server/live_payment_processor.go).
    pub(crate) fn units_per_sec(self) -> u64 {
        match self {
            Self::Hour => 1,
            Self::P720 => 1280 * 720 * 30,
            Self::Fixed => 0,
        }
    }
}

/// A validated USD price of a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsdPrice {
    /// The price as the runner sent it (a JSON number's text).
    pub(crate) text: String,
    pub(crate) value: Decimal,
    pub(crate) unit: Unit,
}

impl UsdPrice {
    /// Validates `price`, `currency` (default `usd`) and `unit` (default `hour`) in
    /// go-livepeer's order (live_runner.go:100-125).
    pub(crate) fn normalize(price: &str, currency: &str, unit: &str) -> Result<Self, PriceError> {
        let text = price.trim();
        if text.is_empty() {
            return Err(PriceError::Missing);
        }
        let value = Decimal::parse(text)
            .filter(|d| d.is_positive())
            .ok_or(PriceError::NotPositive)?;
        let currency = currency.trim().to_ascii_lowercase();
        if !currency.is_empty() && currency != "usd" {
            return Err(PriceError::Currency);
        }
        let unit = unit.trim().to_ascii_lowercase();
        let unit = if unit.is_empty() {
            Unit::Hour
        } else {
            Unit::parse(&unit).ok_or(PriceError::Unit)?
        };
        Ok(Self {
            text: text.to_string(),
            value,
            unit,
        })
    }

    /// Integer wei per billing unit at `eth_usd` USD per ETH:
    /// `floor(usd / divisor × 1e18 / eth_usd)`, at least one wei.
    pub(crate) fn to_wei(&self, eth_usd: Decimal) -> Result<i64, PriceError> {
        if !eth_usd.is_positive() {
            return Err(PriceError::BelowOneWei);
        }
        // usd.num/usd.den / divisor * 1e18 * eth.den/eth.num
        let n = self.value.num.checked_mul(eth_usd.den);
        let d = self
            .value
            .den
            .checked_mul(self.unit.divisor())
            .and_then(|x| x.checked_mul(eth_usd.num));
        let wei = match (n, d) {
            (Some(n), Some(d)) => div_scaled(n, d, 18),
            _ => None,
        }
        .ok_or(PriceError::BelowOneWei)?;
        if wei == 0 {
            return Err(PriceError::BelowOneWei);
        }
        i64::try_from(wei).map_err(|_| PriceError::BelowOneWei)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    fn wei(price: &str, unit: &str) -> Result<i64, PriceError> {
        UsdPrice::normalize(price, "usd", unit)?.to_wei(eth("2000"))
    }

    #[test]
    fn conversion_vectors_at_2000_usd_per_eth() {
        assert_eq!(wei("10", "hour"), Ok(1_388_888_888_888));
        assert_eq!(wei("10", "720p"), Ok(50_234));
        assert_eq!(wei("0.001990656", "720p"), Ok(10));
        assert_eq!(wei("0.001", "fixed"), Ok(500_000_000_000));
        assert_eq!(wei("1e-30", "hour"), Err(PriceError::BelowOneWei));
        assert_eq!(
            UsdPrice::normalize("10", "", "")
                .unwrap()
                .to_wei(Decimal::from_f64(2000.0).unwrap()),
            Ok(1_388_888_888_888)
        );
    }

    #[test]
    fn validation_in_order() {
        assert_eq!(
            UsdPrice::normalize(" ", "usd", "hour"),
            Err(PriceError::Missing)
        );
        for bad in ["0", "-1", "abc", "1..2", "."] {
            assert_eq!(
                UsdPrice::normalize(bad, "usd", "hour"),
                Err(PriceError::NotPositive),
                "{bad}"
            );
        }
        assert_eq!(
            UsdPrice::normalize("1", "eur", "hour"),
            Err(PriceError::Currency)
        );
        assert_eq!(
            UsdPrice::normalize("1", "USD", "minute"),
            Err(PriceError::Unit)
        );
        let p = UsdPrice::normalize("3.5", "", "").unwrap();
        assert_eq!((p.unit, p.text.as_str()), (Unit::Hour, "3.5"));
        assert_eq!(
            UsdPrice::normalize("2.5E2", "usd", "FIXED").unwrap().unit,
            Unit::Fixed
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(Decimal::parse("2.5E2"), Some(Decimal { num: 250, den: 1 }));
        assert_eq!(
            Decimal::parse("0.010"),
            Some(Decimal { num: 10, den: 1000 })
        );
        assert_eq!(Decimal::parse("1/3"), Some(Decimal { num: 1, den: 3 }));
        assert_eq!(Decimal::parse("1/0"), None);
        assert_eq!(
            Decimal::from_f64(1234.5),
            Some(Decimal {
                num: 12345,
                den: 10
            })
        );
        assert_eq!(Decimal::from_f64(-1.0), None);
    }
}
