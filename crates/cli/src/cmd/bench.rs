//! `lpgw bench …`: measurements reported as figures, never asserted.

use clap::Subcommand;

/// Benchmark subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCmd {
    /// Trickle relay throughput and first-byte latency on loopback.
    Trickle(crate::cmd::bench_trickle::TrickleBenchArgs),
}

pub(crate) async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Trickle(a) => crate::cmd::bench_trickle::run(a).await,
    }
}
