//! Price ceilings and budgets: the same flags, environment variables and TOML keys on every
//! command that can pay (`serve`, `demo`, `start`, `stream`, and the discovery commands that
//! judge prices).
//!
//! Precedence, for every value: the TOML file (`--config`), then the environment, then the
//! flag. With nothing set, the gateway pays at most 5 USD per hour on either flow.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use lpgw_gateway::{Budget, BudgetConfig, Ceiling, MaxPrice, Wallet};
use lpgw_server::ServerConfig;

/// Ceiling and budget options.
#[derive(Debug, Clone, Args)]
pub(crate) struct PayArgs {
    /// TOML configuration file: `[ceiling]`, `[service_budget]`, `budget_window_secs`, and
    /// (for `serve` and `demo`) the service settings.
    #[arg(long, env = "LPGW_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Price ceiling as `WEI` per pixel or `WEI/PIXELS`, for the legacy path and
    /// pixel-priced runners (overrides `--max-usd-per-hour` for pixel prices).
    #[arg(long, env = "LPGW_MAX_PRICE")]
    pub(crate) max_price: Option<MaxPrice>,
    /// The most paid per hour, in USD, on both flows (per hour of 720p30 video for pixel
    /// prices). Default 5.
    #[arg(long, env = "LPGW_MAX_USD_PER_HOUR")]
    pub(crate) max_usd_per_hour: Option<f64>,
    /// The most paid per call to a fixed-price runner, in USD. Default 0.05.
    #[arg(long, env = "LPGW_MAX_USD_PER_CALL")]
    pub(crate) max_usd_per_call: Option<f64>,
    /// ETH price in USD for every conversion. Default 2000.
    #[arg(long, env = "LPGW_ETH_USD")]
    pub(crate) eth_usd: Option<f64>,
    /// The most all jobs together may pay per budget window, in USD.
    #[arg(long, env = "LPGW_BUDGET_USD")]
    pub(crate) budget_usd: Option<f64>,
    /// The most all jobs together may pay per budget window, in wei.
    #[arg(long, env = "LPGW_BUDGET_WEI")]
    pub(crate) budget_wei: Option<u128>,
    /// The sliding window budgets apply to, in seconds. Default 86400.
    #[arg(long, env = "LPGW_BUDGET_WINDOW_SECS")]
    pub(crate) budget_window_secs: Option<u64>,
}

impl PayArgs {
    /// The TOML file's settings, or the defaults without one.
    pub(crate) fn file(&self) -> anyhow::Result<ServerConfig> {
        match &self.config {
            Some(p) => {
                ServerConfig::from_toml_file(p).with_context(|| format!("reading {}", p.display()))
            }
            None => Ok(ServerConfig::default()),
        }
    }

    /// Puts the flags (and environment) over `c`'s ceiling and service budget.
    pub(crate) fn apply(&self, c: &mut ServerConfig) -> anyhow::Result<()> {
        let ceiling = &mut c.ceiling;
        if let Some(m) = self.max_price {
            ceiling.wei_per_pixel = Some(m);
        }
        if let Some(v) = self.max_usd_per_hour {
            ceiling.usd_per_hour = v;
        }
        if let Some(v) = self.max_usd_per_call {
            ceiling.usd_per_call = v;
        }
        if let Some(v) = self.eth_usd {
            ceiling.eth_usd = v;
        }
        for (name, v) in [
            ("--max-usd-per-hour", ceiling.usd_per_hour),
            ("--max-usd-per-call", ceiling.usd_per_call),
            ("--eth-usd", ceiling.eth_usd),
        ] {
            anyhow::ensure!(v.is_finite() && v >= 0.0, "{name} must be >= 0, not {v}");
        }
        merge_budget(&mut c.service_budget, self.budget_usd, self.budget_wei);
        if let Some(w) = self.budget_window_secs {
            c.budget_window_secs = w;
        }
        Ok(())
    }

    /// The ceiling and the process-wide wallet for commands that run one job (`start`,
    /// `stream`): the file, then environment and flags.
    pub(crate) fn resolve(&self) -> anyhow::Result<(Ceiling, Wallet)> {
        let mut c = self.file()?;
        self.apply(&mut c)?;
        let wallet = match c.service_budget.limit(c.ceiling.eth_usd, c.budget_window()) {
            Some(l) => Wallet::default().with_budget(Budget::new("budget", l, c.ceiling.eth_usd)),
            None => Wallet::default(),
        };
        Ok((c.ceiling, wallet))
    }
}

/// Sets the parts of a budget a flag names; the rest keeps the file's value.
pub(crate) fn merge_budget(b: &mut BudgetConfig, usd: Option<f64>, wei: Option<u128>) {
    if usd.is_some() {
        b.usd = usd;
    }
    if wei.is_some() {
        b.wei = wei;
    }
}

/// A one-line account of the ceiling in force, for start-up logs.
pub(crate) fn describe(c: &Ceiling, window: Duration) -> String {
    format!("price ceiling: {c}; budgets over {} s", window.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        pay: PayArgs,
    }

    #[test]
    fn flags_override_the_file_and_defaults_hold_without_either() {
        let none = Cli::parse_from(["x"]);
        let (c, w) = none.pay.resolve().unwrap();
        assert_eq!(c, Ceiling::default());
        assert!(w.check().is_ok());

        let dir = std::env::temp_dir().join(format!("lpgw-pay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[ceiling]\nusd_per_hour = 2.0\neth_usd = 3000.0\n[service_budget]\nusd = 1.0\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let cli = Cli::parse_from(["x", "--config", path, "--eth-usd", "1000"]);
        let mut cfg = cli.pay.file().unwrap();
        cli.pay.apply(&mut cfg).unwrap();
        assert_eq!(cfg.ceiling.usd_per_hour, 2.0);
        assert_eq!(cfg.ceiling.eth_usd, 1000.0);
        assert_eq!(cfg.service_budget.usd, Some(1.0));
        let cli = Cli::parse_from([
            "x",
            "--config",
            path,
            "--max-price",
            "100/3",
            "--budget-wei",
            "7",
        ]);
        let (c, _) = cli.pay.resolve().unwrap();
        assert_eq!(c.wei_per_pixel.unwrap().pixels_per_unit, 3);
        let mut cfg = cli.pay.file().unwrap();
        cli.pay.apply(&mut cfg).unwrap();
        assert_eq!(cfg.service_budget.wei, Some(7));
        assert_eq!(cfg.service_budget.usd, Some(1.0));
        let bad = Cli::try_parse_from(["x", "--max-usd-per-hour=-1"]).unwrap();
        assert!(bad.pay.resolve().is_err());
        assert!(Cli::try_parse_from(["x", "--max-price", "1/0"]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
