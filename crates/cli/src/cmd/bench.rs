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
    /// The gateway service end to end: WebSocket JPEG clients through a relay runner.
    Service(crate::cmd::bench_service::ServiceBenchArgs),
    /// Scope start to first processed frame: our gateway against the Python SDK.
    Scope(crate::cmd::bench_scope::ScopeBenchArgs),
}

pub(crate) async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Trickle(a) => crate::cmd::bench_trickle::run(a).await,
        BenchCmd::Media(a) => crate::cmd::bench_media::run(a).await,
        BenchCmd::Start(a) => crate::cmd::bench_start::run(a).await,
        BenchCmd::Service(a) => crate::cmd::bench_service::run(a).await,
        BenchCmd::Scope(a) => crate::cmd::bench_scope::run(a).await,
    }
}
