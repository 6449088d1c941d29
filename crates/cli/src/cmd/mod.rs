//! One module per subcommand family.

pub(crate) mod bench;
pub(crate) mod bench_devnet;
pub(crate) mod bench_media;
pub(crate) mod bench_scope;
pub(crate) mod bench_service;
pub(crate) mod bench_start;
pub(crate) mod bench_trickle;
pub(crate) mod demo;
pub(crate) mod devnet;
pub(crate) mod job;
pub(crate) mod orch;
pub(crate) mod pay;
pub(crate) mod runners;
pub(crate) mod scope_args;
pub(crate) mod serve;
pub(crate) mod stream;
pub(crate) mod trickle;
pub(crate) mod upstream;

use tokio_util::sync::CancellationToken;

/// A token cancelled on Ctrl-C or SIGTERM.
pub(crate) fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler cannot fail on unix");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        t.cancel();
    });
    token
}
