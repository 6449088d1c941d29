//! A devnet for benchmarks on a tokio runtime of its own, whose threads carry their own
//! name, so the benchmark can tell the devnet's CPU (orchestrator, trickle server, relay
//! runner) apart from the gateway's: a deployed gateway does not pay for the orchestrator.

use std::sync::mpsc as std_mpsc;

use anyhow::Context as _;
use tokio::sync::oneshot;

use crate::cmd::stream::local_devnet;

/// Thread name of the devnet's runtime (at most 15 bytes: Linux truncates `comm`).
const THREAD_NAME: &str = "lpgw-devnet-rt";

/// A running devnet on its own runtime and thread.
pub(crate) struct IsolatedDevnet {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IsolatedDevnet {
    /// Starts a plain-HTTP devnet serving `models` (plus the built-in ones) on two worker
    /// threads of its own. Blocks until it listens.
    pub(crate) fn start(models: &[&str]) -> anyhow::Result<Self> {
        let models: Vec<String> = models.iter().map(|m| (*m).to_owned()).collect();
        let (ready_tx, ready_rx) = std_mpsc::channel::<anyhow::Result<String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lpgw-devnet".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(THREAD_NAME)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let refs: Vec<&str> = models.iter().map(String::as_str).collect();
                    match local_devnet(&refs).await {
                        Ok(devnet) => {
                            let _ = ready_tx.send(Ok(devnet.orchestrator_url().to_owned()));
                            let _ = stop_rx.await;
                            devnet.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        let url = ready_rx
            .recv()
            .context("devnet thread ended before listening")??;
        Ok(Self {
            url,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The orchestrator's URL.
    pub(crate) fn orchestrator_url(&self) -> &str {
        &self.url
    }

    /// CPU seconds used so far by the devnet's runtime threads (`/proc/self/task`).
    pub(crate) fn cpu_secs(&self) -> Option<f64> {
        threads_cpu_secs(THREAD_NAME)
    }

    /// Stops the devnet and waits for its thread (call from a blocking context).
    pub(crate) fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for IsolatedDevnet {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Sum of user + system CPU seconds of this process's threads named `name`.
fn threads_cpu_secs(name: &str) -> Option<f64> {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if stat.get(open + 1..close) != Some(name) {
            continue;
        }
        ticks += stat_cpu_ticks(&stat)?;
    }
    Some(ticks as f64 / 100.0)
}

/// User + system CPU of a `/proc/.../stat` line, in clock ticks (USER_HZ, 100 on Linux).
pub(crate) fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut it = rest.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_threads_with_the_name() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let busy = std::thread::Builder::new()
            .name("lpgw-test-busy".into())
            .spawn(move || {
                let mut x = 0u64;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
            .expect("spawn");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = 0.0;
        while seen < 0.05 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            seen = threads_cpu_secs("lpgw-test-busy").expect("proc");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        busy.join().expect("join");
        assert!(seen >= 0.05, "busy thread's CPU not seen: {seen}");
        assert_eq!(threads_cpu_secs("no-such-thread"), Some(0.0));
    }
}
