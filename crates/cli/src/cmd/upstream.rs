//! Where orchestrators are and how their certificates are checked: one set of flags, with
//! one spelling, for every command that talks to orchestrators (`serve`, `start`, `stream`,
//! `discover`, `orch-info`, `runners`). The environment variables are the ones the
//! reference SDK wrapper reads, so an operator's existing settings carry over.

use clap::{Args, ValueEnum};
use lpgw_gateway::{Settings, TlsMode, Token};

/// How orchestrator certificates are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TlsArg {
    /// Pin the first certificate seen per host:port.
    Tofu,
    /// Accept any certificate (orchestrators' certificates are usually self-signed).
    #[value(alias = "skip")]
    Insecure,
    /// Verify against the Mozilla roots.
    System,
}

impl From<TlsArg> for TlsMode {
    fn from(t: TlsArg) -> Self {
        match t {
            TlsArg::Tofu => Self::TrustOnFirstUse,
            TlsArg::Insecure => Self::SkipVerification,
            TlsArg::System => Self::SystemRoots,
        }
    }
}

/// The orchestrator-facing flags.
#[derive(Debug, Args)]
pub(crate) struct UpstreamArgs {
    /// Orchestrator URLs, repeatable or comma separated; `host:port` means https (empty:
    /// discovery or the signer's list).
    #[arg(long = "orch", env = "ORCHESTRATOR_URL", value_delimiter = ',')]
    pub(crate) orchestrators: Vec<String>,
    /// Discovery endpoint answering `[{"address": ...}]`.
    #[arg(long, env = "DISCOVERY_URL")]
    pub(crate) discovery: Option<String>,
    /// Remote signer base URL; without one the gateway runs offchain.
    #[arg(long, env = "SIGNER_URL")]
    pub(crate) signer: Option<String>,
    /// Gateway token (base64 JSON); its values win over the flags above.
    #[arg(long, env = "LIVEPEER_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Orchestrator certificate policy.
    #[arg(long, value_enum, default_value = "tofu")]
    pub(crate) tls: TlsArg,
}

impl UpstreamArgs {
    /// `base` with these flags applied, then the token's values (which win).
    pub(crate) fn apply(&self, mut base: Settings) -> anyhow::Result<Settings> {
        base.orchestrators = self
            .orchestrators
            .iter()
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect();
        base.signer_url = self.signer.clone().filter(|s| !s.trim().is_empty());
        base.discovery_url = self.discovery.clone().filter(|s| !s.trim().is_empty());
        base.tls = self.tls.into();
        if let Some(t) = &self.token {
            base = base.with_token(&Token::parse(t)?);
        }
        Ok(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        up: UpstreamArgs,
    }

    fn parse(args: &[&str]) -> UpstreamArgs {
        Cli::try_parse_from(std::iter::once("lpgw").chain(args.iter().copied()))
            .expect("parses")
            .up
    }

    #[test]
    fn one_spelling_with_the_old_one_still_accepted() {
        assert_eq!(parse(&["--tls", "insecure"]).tls, TlsArg::Insecure);
        assert_eq!(parse(&["--tls", "skip"]).tls, TlsArg::Insecure);
        assert_eq!(parse(&[]).tls, TlsArg::Tofu);
        assert!(Cli::try_parse_from(["lpgw", "--tls", "nope"]).is_err());
    }

    #[test]
    fn blank_entries_are_dropped_and_the_policy_applies() {
        let s = parse(&[
            "--orch",
            "https://a:1, ,https://b:2",
            "--signer",
            " ",
            "--tls",
            "system",
        ])
        .apply(Settings::default())
        .unwrap();
        assert_eq!(s.orchestrators, ["https://a:1", "https://b:2"]);
        assert_eq!(s.signer_url, None);
        assert_eq!(s.tls, TlsMode::SystemRoots);
    }
}
