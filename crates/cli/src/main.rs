//! `lpgw`: the command-line entry point. Argument parsing and wiring only; the work lives in
//! the library crates.

mod cmd;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc keeps freed pages for reuse: trickle relays allocate and free megabytes of chunk
/// buffers per second, and with the system allocator a large share of the CPU went to the
/// kernel zeroing pages handed back and forth.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Livepeer gateway: service, SDK tools and a local devnet.
#[derive(Debug, Parser)]
#[command(name = "lpgw", version, about)]
struct Cli {
    /// Log line format on stderr: `text` for people (coloured on a terminal), `json` for log
    /// collectors (one object per line, with the fields of the enclosing spans such as
    /// `job_id`). The level filter is `LPGW_LOG` (e.g. `info`, `lpgw_server=debug`).
    #[arg(long, global = true, value_enum, env = "LPGW_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Trickle tools: a standalone server, and stdin/stdout publish and subscribe.
    #[command(subcommand)]
    Trickle(cmd::trickle::TrickleCmd),
    /// Benchmarks (measure, not tests).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCmd),
    /// Run a local orchestrator (and remote-signer emulator) and print its URLs.
    Devnet(cmd::devnet::DevnetArgs),
    /// Ask orchestrators about themselves (GetOrchestrator).
    OrchInfo(cmd::orch::OrchInfoArgs),
    /// List orchestrators from the token, --orch, a discovery URL or the signer.
    Discover(cmd::orch::DiscoverArgs),
    /// Lists live runners (price in wei and USD, capacity, mode).
    Runners(cmd::runners::RunnersArgs),
    /// Start a live video-to-video job and keep it alive until Ctrl-C.
    Start(cmd::orch::StartArgs),
    /// Publish a test pattern or a video file through a live video-to-video job and record
    /// the processed output as MPEG-TS.
    Stream(cmd::stream::StreamArgs),
    /// Run the gateway service: HTTP APIs, WebSocket bridge and the browser app.
    Serve(cmd::serve::ServeArgs),
    /// Start a devnet and the gateway service in one process, and print the URL to open.
    Demo(cmd::demo::DemoArgs),
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LPGW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Redirected to a file or a collector, escape codes would only be noise.
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        // Every span up to the root is listed, so a line logged deep inside a job task
        // still carries the job's `job_id`.
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Trickle(c) => cmd::trickle::run(c).await,
            Command::Bench(c) => cmd::bench::run(c).await,
            Command::Devnet(a) => cmd::devnet::run(a).await,
            Command::OrchInfo(a) => cmd::orch::orch_info(a).await,
            Command::Discover(a) => cmd::orch::discover(a).await,
            Command::Runners(a) => cmd::runners::run(a).await,
            Command::Start(a) => cmd::orch::start(a).await,
            Command::Stream(a) => cmd::stream::run(a).await,
            Command::Serve(a) => cmd::serve::run(a).await,
            Command::Demo(a) => cmd::demo::run(a).await,
        }
    })
}
