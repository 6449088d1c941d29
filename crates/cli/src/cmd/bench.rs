//! `lpgw bench …`: measurements reported as figures, never asserted.

use clap::Subcommand;

/// Benchmark subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCmd {
    /// Trickle relay throughput and first-byte latency on loopback.
    Trickle(crate::cmd::bench_trickle::TrickleBenchArgs),
    /// Media pipeline throughput, and JPEG round trips through a relay runner on a local devnet.
    Media(crate::cmd::bench_media::MediaBenchArgs),
    /// LV2V job-start latency with 10 candidates of which 7 are dead or slow.
    Start(crate::cmd::bench_start::StartBenchArgs),
}

pub(crate) async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Trickle(a) => crate::cmd::bench_trickle::run(a).await,
        BenchCmd::Media(a) => crate::cmd::bench_media::run(a).await,
        BenchCmd::Start(a) => crate::cmd::bench_start::run(a).await,
    }
}
