//! `lpgw`: the command-line entry point. Argument parsing and wiring only; the work lives in
//! the library crates.

mod cmd;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse: trickle relays allocate and free megabytes of chunk
/// buffers per second, and with the system allocator a large share of the CPU went to the
/// kernel zeroing pages handed back and forth.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Livepeer gateway: service, SDK tools and a local devnet.
#[derive(Debug, Parser)]
#[command(name = "lpgw", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Trickle tools: a standalone server, and stdin/stdout publish and subscribe.
    #[command(subcommand)]
    Trickle(cmd::trickle::TrickleCmd),
    /// Benchmarks (measure, not tests).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCmd),
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LPGW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Trickle(c) => cmd::trickle::run(c).await,
            Command::Bench(c) => cmd::bench::run(c).await,
        }
    })
}
