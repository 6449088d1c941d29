//! `lpgw orch-info`, `lpgw discover` and `lpgw start`: the gateway SDK from the command line.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use lpgw_gateway::{
    Error, Gateway, OrchestratorSummary, Settings, StartRequest, Wallet, lv2v_cap,
    lv2v_capabilities,
};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

/// Where orchestrators are and how to pay them; shared by the gateway subcommands.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    #[command(flatten)]
    pub(crate) upstream: super::upstream::UpstreamArgs,
    /// Timeout of one GetOrchestrator call, in milliseconds.
    #[arg(long, default_value_t = 8000)]
    probe_timeout_ms: u64,
    /// Timeout of `POST /live-video-to-video`, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    start_timeout_ms: u64,
    #[command(flatten)]
    pub(crate) pay: super::pay::PayArgs,
}

impl GatewayArgs {
    /// Settings from the options, with the token folded in last so it wins.
    pub(crate) fn settings(&self) -> anyhow::Result<Settings> {
        self.upstream.apply(Settings {
            ceiling: self.pay.resolve()?.0,
            probe_timeout: Duration::from_millis(self.probe_timeout_ms),
            start_timeout: Duration::from_millis(self.start_timeout_ms),
            ..Settings::default()
        })
    }

    fn gateway(&self) -> anyhow::Result<Gateway> {
        Ok(Gateway::new(self.settings()?)?)
    }

    /// What one command's payments draw on: the `--budget-*` budget, if any.
    pub(crate) fn wallet(&self) -> anyhow::Result<Wallet> {
        Ok(self.pay.resolve()?.1)
    }
}

/// Options of `lpgw orch-info`.
#[derive(Debug, Args)]
pub(crate) struct OrchInfoArgs {
    /// Orchestrators to ask (in addition to --orch / the token's list).
    orchs: Vec<String>,
    /// Ask for an LV2V model's capabilities (fills in its capacity and price).
    #[arg(long)]
    model: Option<String>,
    /// Print one JSON document (a list, one entry per orchestrator).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    gateway: GatewayArgs,
}

/// Options of `lpgw discover`.
#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// Only orchestrators serving this LV2V model (a discovery filter).
    #[arg(long)]
    model: Option<String>,
    /// Also probe each orchestrator and print the usable ones fastest first.
    #[arg(long)]
    probe: bool,
    /// Print JSON instead of one URL per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    gateway: GatewayArgs,
}

/// Options of `lpgw start`.
#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// Pipeline model, e.g. `noop`.
    #[arg(long)]
    model: String,
    /// Initial pipeline parameters (a JSON object).
    #[arg(long)]
    params: Option<String>,
    /// Read control messages from stdin, one JSON document per line; end of input closes
    /// the job. For Scope runners this is also the raw `api` passthrough:
    /// `{"type":"api","request_id":"r1","method":"GET","path":"/api/v1/pipeline/status"}`
    /// is answered by an `api_response` event.
    #[arg(long)]
    control_stdin: bool,
    #[command(flatten)]
    scope: super::scope_args::ScopeArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
}

fn print_line(v: &Value) {
    // One JSON document per line, flushed at once so pipes see it immediately.
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) async fn orch_info(args: OrchInfoArgs) -> anyhow::Result<()> {
    let gateway = args.gateway.gateway()?;
    let mut seen = std::collections::HashSet::new();
    let urls: Vec<String> = args
        .orchs
        .iter()
        .chain(&gateway.settings().orchestrators)
        .filter(|u| seen.insert(u.as_str()))
        .cloned()
        .collect();
    anyhow::ensure!(!urls.is_empty(), "name at least one orchestrator");
    let caps = args.model.as_deref().map(lv2v_capabilities);
    let results = futures::future::join_all(urls.iter().map(|url| {
        let gateway = &gateway;
        let caps = caps.as_ref();
        async move {
            let started = Instant::now();
            let r = gateway.orchestrator_info(url, caps).await;
            (url.clone(), started.elapsed(), r)
        }
    }))
    .await;
    let mut failed = 0;
    let mut docs = Vec::new();
    for (url, elapsed, r) in results {
        match r {
            Ok(info) => {
                let summary = OrchestratorSummary::from(&info);
                if !args.json {
                    print_summary(&url, elapsed, &summary);
                }
                docs.push(
                    json!({"url": url, "ok": true, "elapsed_ms": millis(elapsed),
                    "info": summary}),
                );
            }
            Err(e) => {
                failed += 1;
                if !args.json {
                    println!("{url}: error: {e}");
                }
                docs.push(
                    json!({"url": url, "ok": false, "elapsed_ms": millis(elapsed),
                    "error": e.to_string()}),
                );
            }
        }
    }
    if args.json {
        print_line(&Value::Array(docs));
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} orchestrators failed",
        urls.len()
    );
    Ok(())
}

fn print_summary(url: &str, elapsed: Duration, s: &OrchestratorSummary) {
    println!("{url} ({} ms)", millis(elapsed));
    println!("  transcoder: {}", s.transcoder);
    if !s.address.is_empty() {
        println!("  address:    {}", s.address);
    }
    match &s.price {
        Some(p) => println!(
            "  price:      {} wei / {} pixels{}",
            p.price_per_unit,
            p.pixels_per_unit,
            if s.onchain { " (tickets)" } else { "" }
        ),
        None => println!("  price:      none (offchain)"),
    }
    if !s.version.is_empty() {
        println!("  version:    {}", s.version);
    }
    for m in &s.lv2v_models {
        println!(
            "  lv2v model: {} capacity {} in use {}{}",
            m.model,
            m.capacity,
            m.in_use,
            if m.warm { " (warm)" } else { "" }
        );
    }
}

pub(crate) async fn discover(args: DiscoverArgs) -> anyhow::Result<()> {
    let gateway = args.gateway.gateway()?;
    let caps: Vec<String> = args.model.iter().map(|m| lv2v_cap(m)).collect();
    let urls = gateway.discover(&caps).await?;
    if !args.probe {
        if args.json {
            print_line(&json!(urls));
        } else {
            for u in &urls {
                println!("{u}");
            }
        }
        return Ok(());
    }
    let probe_caps = args.model.as_deref().map(lv2v_capabilities);
    let (usable, rejected) = gateway.probe_all(&urls, probe_caps.as_ref()).await;
    if args.json {
        let usable: Vec<Value> = usable
            .iter()
            .map(|(u, info)| json!({"url": u, "info": OrchestratorSummary::from(info)}))
            .collect();
        let rejected: Vec<Value> = rejected
            .iter()
            .map(|r| json!({"url": r.url, "reason": r.reason.to_string()}))
            .collect();
        print_line(&json!({"usable": usable, "rejected": rejected}));
    } else {
        for (u, _) in &usable {
            println!("{u}");
        }
        for r in &rejected {
            eprintln!("rejected {r}");
        }
    }
    Ok(())
}

fn rejections_doc(e: &Error) -> Value {
    let list: Vec<Value> = e
        .rejections()
        .iter()
        .map(|r| json!({"url": r.url, "reason": r.reason.to_string()}))
        .collect();
    json!({"type": "failed", "error": e.to_string(), "rejections": list})
}

pub(crate) async fn start(args: StartArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let gateway = args.gateway.gateway()?;
    let mut req = StartRequest::new(args.model.clone());
    req.wallet = args.gateway.wallet()?;
    let mut params = match &args.params {
        Some(p) => match serde_json::from_str(p).context("--params is not JSON")? {
            Value::Object(m) => m,
            _ => anyhow::bail!("--params must be a JSON object"),
        },
        None => serde_json::Map::new(),
    };
    args.scope.merge_into(&mut params)?;
    if !params.is_empty() {
        req.params = Some(Value::Object(params));
    }
    let started = Instant::now();
    let job = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        r = gateway.start(&req) => r,
    };
    let mut job = match job {
        Ok(j) => j,
        Err(e) => {
            print_line(&rejections_doc(&e));
            return Err(e.into());
        }
    };
    print_line(&super::job::started_doc(&job, started.elapsed()));
    let mut events = job.events();
    let ended = job.ended();
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<Option<Value>>(4);
    // Without stdin control the sender stays here, so the receiver never reports the end.
    let _idle_sender = if args.control_stdin {
        tokio::spawn(read_control(control_tx));
        None
    } else {
        Some(control_tx)
    };
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_stats = job.payments();
    let reason = loop {
        tokio::select! {
            () = shutdown.cancelled() => break "signal",
            () = ended.cancelled() => break "ended",
            ev = recv_event(&mut events) => match ev {
                Some(ev) => print_line(&json!({"type": "event", "event": ev})),
                None => events = None,
            },
            msg = control_rx.recv() => match msg.flatten() {
                Some(m) => {
                    if job.control(&m).await.is_err() {
                        break "ended";
                    }
                    print_line(&json!({"type": "control_sent", "message": m}));
                }
                None => break "end of input",
            },
            _ = stats_tick.tick() => {
                let s = job.payments();
                if s != last_stats {
                    last_stats = s;
                    print_line(&json!({"type": "payments", "paid": s.paid,
                        "skipped": s.skipped, "refreshes": s.refreshes}));
                }
            }
        }
    };
    let end = super::job::end_reason(&job);
    let manifest = job.manifest_id().to_owned();
    job.close().await;
    print_line(
        &json!({"type": "closed", "manifest_id": manifest, "why": reason,
        "end_reason": end}),
    );
    Ok(())
}

async fn recv_event(events: &mut Option<tokio::sync::mpsc::Receiver<Value>>) -> Option<Value> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Forwards stdin lines as control messages; `None` marks the end of input.
async fn read_control(tx: tokio::sync::mpsc::Sender<Option<Value>>) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => match serde_json::from_str::<Value>(&line) {
                Ok(v) => {
                    if tx.send(Some(v)).await.is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("ignoring control line that is not JSON: {e}"),
            },
            Ok(None) | Err(_) => {
                let _ = tx.send(None).await;
                return;
            }
        }
    }
}
