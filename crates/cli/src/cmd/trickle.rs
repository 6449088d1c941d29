//! `lpgw trickle …`: a standalone trickle server and stdin/stdout clients.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use clap::{Args, Subcommand};
use lpgw_trickle::client::{Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lpgw_trickle::server::{ServerConfig, TrickleServer};
use lpgw_trickle::wire::SeqRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Trickle subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TrickleCmd {
    /// Run a standalone trickle server.
    Serve(ServeArgs),
    /// Publish stdin to a channel URL, cut into segments.
    Publish(PublishArgs),
    /// Write a channel's segments to stdout.
    Subscribe(SubscribeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7280")]
    listen: SocketAddr,
    /// Path prefix for channels (go-livepeer orchestrators use /ai/trickle).
    #[arg(long, default_value = "/")]
    base_path: String,
    /// Create channels on their first publish (and on `POST /{channel}`).
    #[arg(long)]
    autocreate: bool,
    /// Close channels with no write for this many seconds.
    #[arg(long, default_value_t = 300)]
    idle_timeout_secs: u64,
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Channel URL, e.g. http://127.0.0.1:7280/mychannel
    url: String,
    /// MIME type sent as Content-Type.
    #[arg(long, default_value = "application/octet-stream")]
    mime: String,
    /// Cut a new segment after this many bytes.
    #[arg(long, default_value_t = 1 << 20)]
    segment_bytes: usize,
    /// Publish each line of stdin as its own segment (for JSON messages).
    #[arg(long)]
    lines: bool,
    /// Delete the channel when stdin ends.
    #[arg(long)]
    delete: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SubscribeArgs {
    /// Channel URL.
    url: String,
    /// Where to start: -1 (next segment), -2 (current) or a segment number.
    #[arg(long, default_value_t = -2, allow_hyphen_values = true)]
    start: i64,
    /// Stop after this many segments.
    #[arg(long)]
    count: Option<u64>,
}

pub(crate) async fn run(cmd: TrickleCmd) -> anyhow::Result<()> {
    match cmd {
        TrickleCmd::Serve(a) => serve(a).await,
        TrickleCmd::Publish(a) => publish(a).await,
        TrickleCmd::Subscribe(a) => subscribe(a).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let server = TrickleServer::new(ServerConfig {
        autocreate: a.autocreate,
        idle_timeout: Duration::from_secs(a.idle_timeout_secs),
        ..ServerConfig::default()
    });
    let base = a.base_path.trim_end_matches('/');
    let app = if base.is_empty() {
        server.router()
    } else {
        axum::Router::new().nest(base, server.router())
    };
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    server.start_sweeper();
    println!("trickle server on http://{addr}{base}/{{channel}}");
    let stop = super::shutdown_signal();
    let srv = server.clone();
    let graceful = async move {
        stop.cancelled().await;
        // Closing every channel releases long-polling requests so shutdown completes.
        srv.shutdown();
    };
    axum::serve(lpgw_trickle::server::nodelay(listener), app)
        .with_graceful_shutdown(graceful)
        .await?;
    Ok(())
}

async fn publish(a: PublishArgs) -> anyhow::Result<()> {
    let mut publisher = Publisher::new(&a.url, &a.mime, PublisherConfig::default())?;
    let mut stdin = tokio::io::stdin();
    if a.lines {
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdin));
        while let Some(line) = lines.next_line().await? {
            publisher.write_segment(Bytes::from(line)).await?;
        }
    } else {
        let mut buf = BytesMut::with_capacity(64 << 10);
        loop {
            let mut seg = publisher.next_segment().await?;
            let mut in_seg = 0usize;
            let mut eof = false;
            while in_seg < a.segment_bytes {
                buf.reserve(64 << 10);
                let n = stdin.read_buf(&mut buf).await?;
                if n == 0 {
                    eof = true;
                    break;
                }
                in_seg += n;
                seg.write(buf.split().freeze()).await?;
            }
            seg.finish().await?;
            if eof {
                break;
            }
        }
    }
    let stats = publisher.stats();
    eprintln!("published: {stats:?}");
    if a.delete {
        publisher.close().await?;
    }
    Ok(())
}

async fn subscribe(a: SubscribeArgs) -> anyhow::Result<()> {
    let start = SeqRequest::from_i64(a.start).context("--start must be -1, -2 or >= 0")?;
    let mut sub = Subscriber::new(
        &a.url,
        SubscriberConfig {
            start,
            ..SubscriberConfig::default()
        },
    )?;
    let mut out = tokio::io::stdout();
    let mut n = 0u64;
    while a.count.is_none_or(|c| n < c) {
        let Some(mut seg) = sub.next_segment().await? else {
            break;
        };
        while let Some(chunk) = seg.chunk().await? {
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        n += 1;
    }
    eprintln!("subscribed: {:?}", sub.stats());
    Ok(())
}
