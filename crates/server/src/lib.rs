//! # lpgw-server
//!
//! The gateway service: an HTTP API over the gateway SDK for clients that send camera frames
//! and want processed frames back, plus the browser app that does exactly that.
//!
//! - One job registry serves two API families: the job API of the SDK-service web wrapper
//!   (`/start-job`, `/job/{id}`, `/ws/stream`, ...) and the Daydream stream API
//!   (`/stream/start`, `/stream/{id}/status|frame|publish|control|stop|events`, `/streams`).
//!   The contract is `http-api.md`; `/openapi.json`, derived from the routes' types,
//!   describes it.
//! - The WebSocket JPEG bridge moves frames between clients and the job's trickle channels
//!   through the media pipeline ([`lpgw_media`]) and the bridge ([`lpgw_bridge`]); every step
//!   is bounded and drops (counted) rather than queues.
//! - API keys (`X-API-Key`, `Authorization: Bearer`, or `?api_key=` for WebSocket and SSE)
//!   own jobs; another key sees 404. Per-key, per-client-address and total job limits are
//!   checked atomically; job starts are rate-limited per client address (a token bucket,
//!   429 with `Retry-After`). The client address is the TCP peer, or — only for peers listed
//!   as trusted proxies — the right-most untrusted `X-Forwarded-For` entry.
//! - `POST /stream/{id}/publish?seq=N` skips (200 `"status":"skipped"`, counted) frames
//!   numbered at or below the highest number already accepted for the stream.
//! - `/health`, `/metrics` (Prometheus text), CORS, idle-job reaping, graceful shutdown.
//!
//! The service never speaks trickle or gRPC itself: jobs start and stop through
//! [`lpgw_gateway`], media moves through [`lpgw_bridge`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use lpgw_server::{AppState, ServerConfig};
//! let gateway = lpgw_gateway::Gateway::new(lpgw_gateway::Settings::default()).unwrap();
//! let state = AppState::new(ServerConfig::default(), gateway);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! lpgw_server::run(listener, state, shutdown).await
//! # }
//! ```
#![warn(missing_docs)]

mod arbiter;
mod auth;
mod backend;
mod client_ip;
mod config;
mod error;
mod extract;
mod job;
mod media;
mod metrics;
mod phase;
mod ratelimit;
mod routes;
mod seq;
mod service;
mod spend;
mod sse;
mod web;
mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::{info, warn};

pub use config::ServerConfig;
pub use error::ConfigError;
pub use service::AppState;

/// The service's routes over `state`.
///
/// Per-client-address limits need the peer address: serve the router with
/// `into_make_service_with_connect_info::<SocketAddr>()`, as [`run`] does. Without it they
/// do not apply.
pub fn app(state: AppState) -> Router {
    let cfg = &state.0.config;
    let frame_limit = cfg.max_frame_bytes.max(cfg.max_json_bytes);
    Router::new()
        .merge(web::routes())
        .merge(routes::api())
        .fallback(|| async {
            error::ApiError::new(axum::http::StatusCode::NOT_FOUND, "no such route")
        })
        .layer(DefaultBodyLimit::max(frame_limit))
        .layer(cors(&cfg.cors_origins))
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers(Any);
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(Any);
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(list))
}

/// Serves until `shutdown` fires, then stops accepting, ends WebSocket and SSE streams,
/// waits (bounded) for requests in flight, and closes every job: payments stopped, sessions
/// stopped, channels deleted. Sockets get `TCP_NODELAY`.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "gateway service listening");
    }
    let reaper = tokio::spawn(state.clone().reap_idle());
    let inner = state.0.shutdown.clone();
    let sig = shutdown.clone();
    let trigger = inner.clone();
    tokio::spawn(async move {
        sig.cancelled().await;
        trigger.cancel();
    });
    // `TCP_NODELAY` set here rather than through `lpgw_trickle::server::nodelay`: the
    // concrete `TapIo` type is what gives handlers the peer address (`ConnectInfo`).
    let listener = {
        use axum::serve::ListenerExt as _;
        listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(%err, "could not set TCP_NODELAY");
            }
        })
    };
    let serve = axum::serve(
        listener,
        app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { inner.cancelled().await });
    let served = tokio::spawn(async move { serve.await });
    state.0.shutdown.cancelled().await;
    info!("shutting down: closing jobs");
    let budget = state.0.config.shutdown_timeout();
    let result = match tokio::time::timeout(budget, served).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(_) => {
            warn!("connections still open after the shutdown timeout");
            Ok(())
        }
    };
    state.close_all().await;
    reaper.abort();
    info!("shutdown complete");
    result
}
