//! [`Ceiling`]: the most the gateway pays, on every path. Pure.
//!
//! One ceiling covers both start flows. The legacy AI-worker path is priced in wei per pixel
//! and billed as 1280×720 at 30 fps whatever the stream's size (spec §5.6, server/
//! live_payment_processor.go); live runners are priced per second, per 720p pixel or per call
//! (spec §1.7). A USD-per-hour ceiling therefore converts to the same hourly cost on both: per
//! second for `seconds` runners, per pixel of 720p30 video for the legacy path and for
//! pixel-priced runners. Explicit wei ceilings override the USD ones unit by unit.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::runner::price::{Decimal, PIXELS_PER_SECOND_720P30, PriceUnit, RunnerPrice, usd_to_wei};

/// Pixels the orchestrator bills for one hour of live video: 1280 × 720 × 30 × 3600.
pub const BILLED_PIXELS_PER_HOUR: u128 = PIXELS_PER_SECOND_720P30 * 3600;
const WEI_PER_ETH: f64 = 1e18;

/// A legacy price ceiling: `price_per_unit` wei per `pixels_per_unit` pixels.
///
/// Parsed from `WEI` (per pixel) or `WEI/PIXELS`, as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPrice {
    /// Wei.
    pub price_per_unit: i64,
    /// Units (pixels for LV2V) the price covers; must be positive.
    pub pixels_per_unit: i64,
}

impl MaxPrice {
    /// Whether `price_per_unit / pixels_per_unit` is strictly above this ceiling. A
    /// non-positive `pixels_per_unit` in the offer is treated as one unit; a negative price
    /// as zero.
    pub fn is_exceeded_by(&self, price_per_unit: i64, pixels_per_unit: i64) -> bool {
        let offer_units = i128::from(pixels_per_unit.max(1));
        let max_units = i128::from(self.pixels_per_unit.max(1));
        i128::from(price_per_unit.max(0)) * max_units
            > i128::from(self.price_per_unit.max(0)) * offer_units
    }

    /// Wei per pixel, rounded down.
    fn floor_per_pixel(&self) -> u128 {
        let p = u128::try_from(self.price_per_unit.max(0)).unwrap_or(0);
        p / u128::try_from(self.pixels_per_unit.max(1)).unwrap_or(1)
    }
}

impl FromStr for MaxPrice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s.trim().split_once('/').unwrap_or((s.trim(), "1"));
        let price_per_unit: i64 = a
            .trim()
            .parse()
            .map_err(|_| format!("max price {s:?}: wei is not a whole number"))?;
        let pixels_per_unit: i64 = b
            .trim()
            .parse()
            .map_err(|_| format!("max price {s:?}: bad pixel count"))?;
        if price_per_unit < 0 || pixels_per_unit <= 0 {
            return Err(format!(
                "max price {s:?} must be >= 0 wei per a positive number of pixels"
            ));
        }
        Ok(Self {
            price_per_unit,
            pixels_per_unit,
        })
    }
}

impl<'de> Deserialize<'de> for MaxPrice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match WeiText::deserialize(d)? {
            WeiText::Int(i) => format!("{i}"),
            WeiText::Text(t) => t,
        }
        .parse()
        .map_err(serde::de::Error::custom)
    }
}

/// A wei amount in a configuration file: an integer, or a decimal string for amounts past
/// TOML's 64-bit integers.
#[derive(Deserialize)]
#[serde(untagged)]
enum WeiText {
    Int(i64),
    Text(String),
}

/// Reads an optional wei amount written as an integer or a decimal string.
pub(crate) fn wei_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
    let v: Option<WeiText> = Option::deserialize(d)?;
    v.map(|w| match w {
        WeiText::Int(i) => u128::try_from(i).map_err(|_| "a wei amount cannot be negative".into()),
        WeiText::Text(t) => t
            .trim()
            .parse::<u128>()
            .map_err(|_| format!("{t:?} is not a whole number of wei")),
    })
    .transpose()
    .map_err(serde::de::Error::custom)
}

/// The most the gateway pays, for every flow and price unit.
///
/// The default is **5 USD per hour** — per hour of a runner session, or per hour of 720p30
/// video for pixel prices (the legacy path and pixel-priced runners, billed at 1280×720×30
/// pixels per second whatever the stream's size) — and **0.05 USD per call** for fixed-price
/// runners, converted at an ETH price of **2000 USD**. A live AI video stream needs one
/// data-centre GPU (H100/L40S class), which rents for roughly 2–3 USD per hour; 5 USD leaves
/// room for the operator's margin and price movement while refusing orchestrators priced at
/// several times the going rate. At 2000 USD/ETH that is 25 117.35 wei per pixel (legacy),
/// 25 117 wei per 720p pixel, 694 444 444 444 wei per second and 25 000 000 000 000 wei per
/// call. Set `eth_usd` near the market: a value set too high makes the wei ceilings stricter
/// than intended, the safe direction.
///
/// A setting that cannot be converted (ETH price zero, NaN) gives a zero ceiling, which
/// refuses every priced orchestrator rather than paying anything.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ceiling {
    /// USD per hour, for every metered price (legacy pixels, runner seconds and runner 720p
    /// pixels). Default 5.0.
    pub usd_per_hour: f64,
    /// USD per call for `fixed` runners. Default 0.05.
    pub usd_per_call: f64,
    /// ETH price in USD used for every conversion. Default 2000.
    pub eth_usd: f64,
    /// Explicit ceiling in wei per pixel; overrides `usd_per_hour` for the legacy path and
    /// for pixel-priced runners (both bill pixels of 720p30 video).
    pub wei_per_pixel: Option<MaxPrice>,
    /// Explicit ceiling in wei per second; overrides `usd_per_hour` for `seconds` runners.
    #[serde(deserialize_with = "wei_option")]
    pub wei_per_second: Option<u128>,
    /// Explicit ceiling in wei per call; overrides `usd_per_call`.
    #[serde(deserialize_with = "wei_option")]
    pub wei_per_call: Option<u128>,
}

impl Default for Ceiling {
    fn default() -> Self {
        Self {
            usd_per_hour: 5.0,
            usd_per_call: 0.05,
            eth_usd: 2000.0,
            wei_per_pixel: None,
            wei_per_second: None,
            wei_per_call: None,
        }
    }
}

/// Wei for `usd` (no unit division), or `None` when the settings do not convert.
fn usd_wei(usd: f64, eth_usd: f64) -> Option<u128> {
    let usd = Decimal::from_f64(usd).ok()?;
    let eth = Decimal::from_f64(eth_usd).ok()?;
    usd_to_wei(usd, PriceUnit::Fixed, eth)
}

impl Ceiling {
    /// The legacy ceiling as an exact price: the configured wei per pixel, else the USD per
    /// hour as wei per [`BILLED_PIXELS_PER_HOUR`] pixels.
    pub fn lv2v(&self) -> MaxPrice {
        if let Some(m) = self.wei_per_pixel {
            return m;
        }
        let wei_per_hour = usd_wei(self.usd_per_hour, self.eth_usd).unwrap_or(0);
        MaxPrice {
            price_per_unit: i64::try_from(wei_per_hour).unwrap_or(i64::MAX),
            // 99 532 800 000 fits an i64.
            pixels_per_unit: i64::try_from(BILLED_PIXELS_PER_HOUR).unwrap_or(i64::MAX),
        }
    }

    /// `Err(reason)` naming both prices when a legacy price (`price_per_unit` wei per
    /// `pixels_per_unit` pixels) is above the ceiling.
    pub fn check_lv2v(&self, price_per_unit: i64, pixels_per_unit: i64) -> Result<(), String> {
        let max = self.lv2v();
        if max.is_exceeded_by(price_per_unit, pixels_per_unit) {
            return Err(format!(
                "price {} is above the ceiling {}",
                self.describe_lv2v(price_per_unit, pixels_per_unit),
                self.describe_lv2v(max.price_per_unit, max.pixels_per_unit)
            ));
        }
        Ok(())
    }

    /// `"1000000000 wei/pixel ($199065.6000/hour at 720p30)"`.
    pub fn describe_lv2v(&self, price_per_unit: i64, pixels_per_unit: i64) -> String {
        // Lossy by design: this is for people, decisions use integers.
        #[allow(clippy::cast_precision_loss)]
        let per_pixel = price_per_unit.max(0) as f64 / pixels_per_unit.max(1) as f64;
        #[allow(clippy::cast_precision_loss)]
        let usd = per_pixel * BILLED_PIXELS_PER_HOUR as f64 / WEI_PER_ETH * self.eth_usd;
        let wei = if pixels_per_unit <= 1 {
            format!("{price_per_unit}")
        } else {
            format!("{per_pixel:.1}")
        };
        format!("{wei} wei/pixel (${usd:.4}/hour at 720p30)")
    }

    /// The `maxPrice` handed to the signer for a legacy payment (type `lv2v`, unit
    /// `720p-pixel-seconds`): the orchestrator's price plus 1.2 % (rounded up), never above
    /// the ceiling (rounded down). `None` when the ceiling is below one wei per pixel, which
    /// the signer cannot express; the gateway's own check still holds then.
    pub fn lv2v_signer_max(
        &self,
        price_per_unit: i64,
        pixels_per_unit: i64,
    ) -> Option<RunnerPrice> {
        let cap = self.lv2v().floor_per_pixel();
        let p = u128::try_from(price_per_unit.max(0)).unwrap_or(0);
        let px = u128::try_from(pixels_per_unit.max(1)).unwrap_or(1);
        let padded = p.saturating_mul(1012).div_ceil(px.saturating_mul(1000));
        let wei = padded.min(cap);
        (wei > 0).then_some(RunnerPrice {
            wei,
            unit: PriceUnit::PixelSeconds720p,
        })
    }

    /// The runner ceiling for `unit` in wei per unit (0 when the settings cannot be
    /// converted, which refuses every priced runner rather than paying anything).
    pub fn max_wei(&self, unit: PriceUnit) -> u128 {
        let explicit = match unit {
            PriceUnit::Seconds => self.wei_per_second,
            PriceUnit::PixelSeconds720p => self.wei_per_pixel.map(|m| m.floor_per_pixel()),
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

    /// The runner ceiling for `unit` as a price.
    pub fn max_price(&self, unit: PriceUnit) -> RunnerPrice {
        RunnerPrice {
            wei: self.max_wei(unit),
            unit,
        }
    }

    /// `Err(reason)` naming both prices when a runner `price` is above the ceiling.
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

    /// The `maxPrice` for the signer on a runner payment: the discovery price padded by
    /// 1.2 % (the reference SDK's allowance for ETH/USD drift, doc/remote-signer.md:185),
    /// never above the ceiling.
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

    /// USD value of `wei` at this ceiling's ETH price, for logs and status.
    pub fn usd(&self, wei: u128) -> f64 {
        // Lossy by design: for people.
        #[allow(clippy::cast_precision_loss)]
        let w = wei as f64;
        w / WEI_PER_ETH * self.eth_usd
    }

    /// Wei for `usd` at this ceiling's ETH price (rounded down); `None` when it does not
    /// convert.
    pub fn wei_for_usd(&self, usd: f64) -> Option<u128> {
        usd_wei(usd, self.eth_usd)
    }
}

impl fmt::Display for Ceiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.lv2v();
        write!(
            f,
            "legacy {}; runners {} / {} / {}",
            self.describe_lv2v(m.price_per_unit, m.pixels_per_unit),
            self.max_price(PriceUnit::Seconds).describe(self.eth_usd),
            self.max_price(PriceUnit::PixelSeconds720p)
                .describe(self.eth_usd),
            self.max_price(PriceUnit::Fixed).describe(self.eth_usd),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ceiling_compares_rates_not_numbers() {
        let max = MaxPrice {
            price_per_unit: 10,
            pixels_per_unit: 3,
        };
        assert!(!max.is_exceeded_by(10, 3));
        assert!(!max.is_exceeded_by(20, 6));
        assert!(max.is_exceeded_by(21, 6));
        assert!(!max.is_exceeded_by(3, 1));
        assert!(max.is_exceeded_by(4, 1));
        assert!(!max.is_exceeded_by(0, 0));
        assert!(max.is_exceeded_by(i64::MAX, 1));
        assert!(!max.is_exceeded_by(-5, 1));
    }

    #[test]
    fn max_price_parses_from_text() {
        assert_eq!(
            "25117".parse::<MaxPrice>().unwrap(),
            MaxPrice {
                price_per_unit: 25117,
                pixels_per_unit: 1
            }
        );
        assert_eq!(
            " 10 / 3 ".parse::<MaxPrice>().unwrap(),
            MaxPrice {
                price_per_unit: 10,
                pixels_per_unit: 3
            }
        );
        for bad in ["", "x", "-1", "1/0", "1/-2", "1.5", "1/x"] {
            assert!(bad.parse::<MaxPrice>().is_err(), "{bad:?}");
        }
    }

    /// The documented default: the same 5 USD per hour on both flows, at the pixel rate the
    /// orchestrator bills.
    #[test]
    fn default_is_five_dollars_an_hour_on_both_flows() {
        let c = Ceiling::default();
        let m = c.lv2v();
        assert_eq!(m.price_per_unit, 2_500_000_000_000_000);
        assert_eq!(m.pixels_per_unit, 99_532_800_000);
        // 25 117.35 wei per pixel: 25 117 passes, 25 117.5 does not.
        assert!(c.check_lv2v(25_117, 1).is_ok());
        assert!(c.check_lv2v(50_234, 2).is_ok());
        assert!(c.check_lv2v(50_235, 2).is_err());
        assert!(c.check_lv2v(25_118, 1).is_err());
        // devnet's 1e9 wei per pixel is about 199 066 USD per hour.
        let err = c.check_lv2v(1_000_000_000, 1).unwrap_err();
        assert!(err.contains("1000000000 wei/pixel"), "{err}");
        assert!(err.contains("$199065.6000/hour"), "{err}");
        assert!(err.contains("25117.3 wei/pixel ($5.0000/hour"), "{err}");

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
    fn explicit_wei_overrides_usd_per_unit() {
        let c = Ceiling {
            wei_per_pixel: Some(MaxPrice {
                price_per_unit: 2_000_000_000,
                pixels_per_unit: 1,
            }),
            ..Ceiling::default()
        };
        assert!(c.check_lv2v(1_000_000_000, 1).is_ok());
        assert_eq!(c.max_wei(PriceUnit::PixelSeconds720p), 2_000_000_000);
        // Seconds still follow the USD default.
        assert_eq!(c.max_wei(PriceUnit::Seconds), 694_444_444_444);
        let c = Ceiling {
            usd_per_hour: 1000.0,
            ..Ceiling::default()
        };
        assert_eq!(c.max_wei(PriceUnit::Seconds), 138_888_888_888_888);
        assert!(c.check_lv2v(5_000_000, 1).is_ok());
    }

    #[test]
    fn legacy_signer_max_is_padded_and_capped() {
        let c = Ceiling {
            wei_per_pixel: Some(MaxPrice {
                price_per_unit: 1_000_000,
                pixels_per_unit: 1,
            }),
            ..Ceiling::default()
        };
        let max = |p, px| c.lv2v_signer_max(p, px).map(|r| r.wei);
        assert_eq!(max(1000, 1), Some(1012));
        assert_eq!(max(3000, 3), Some(1012));
        assert_eq!(max(999_000, 1), Some(1_000_000));
        assert_eq!(max(i64::MAX, 1), Some(1_000_000));
        assert_eq!(
            c.lv2v_signer_max(1, 1).unwrap().unit,
            PriceUnit::PixelSeconds720p
        );
        let tiny = Ceiling {
            wei_per_pixel: Some(MaxPrice {
                price_per_unit: 1,
                pixels_per_unit: 2,
            }),
            ..Ceiling::default()
        };
        assert_eq!(tiny.lv2v_signer_max(1, 3), None);
    }

    #[test]
    fn signer_max_is_padded_and_capped() {
        let c = Ceiling {
            wei_per_second: Some(1_000_000),
            ..Ceiling::default()
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
        for c in [
            Ceiling {
                eth_usd: 0.0,
                ..Ceiling::default()
            },
            Ceiling {
                usd_per_hour: f64::NAN,
                ..Ceiling::default()
            },
        ] {
            assert_eq!(c.max_wei(PriceUnit::Seconds), 0);
            assert_eq!(c.lv2v().price_per_unit, 0);
            assert!(c.check_lv2v(1, 1_000_000).is_err());
            assert!(c.check_lv2v(0, 1).is_ok());
        }
    }

    #[test]
    fn toml_sets_any_part() {
        #[derive(Deserialize)]
        struct F {
            ceiling: Ceiling,
        }
        let f: F = toml::from_str(
            "[ceiling]\nusd_per_hour = 2.5\nwei_per_pixel = \"100/3\"\n\
             wei_per_second = \"340282366920938463463374607431768211455\"\nwei_per_call = 7\n",
        )
        .unwrap();
        assert_eq!(f.ceiling.usd_per_hour, 2.5);
        assert_eq!(f.ceiling.eth_usd, 2000.0);
        assert_eq!(f.ceiling.wei_per_pixel.unwrap().pixels_per_unit, 3);
        assert_eq!(f.ceiling.wei_per_second, Some(u128::MAX));
        assert_eq!(f.ceiling.wei_per_call, Some(7));
        assert!(toml::from_str::<F>("[ceiling]\nwei_per_call = -1\n").is_err());
        assert!(toml::from_str::<F>("[ceiling]\nbogus = 1\n").is_err());
    }
}
