//! Static (operator-configured) runners and their health checks
//! (ai/runner/live_runner.go:714-827, 1424-1493).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Live;
use super::advert::{self, Advert};
use super::config::StaticRunnerConfig;
use super::registry::Kind;
use crate::DevnetError;

/// A static entry validated into (route, health URL, healthy status, advert).
pub(crate) fn validate(
    e: &StaticRunnerConfig,
    priced: bool,
) -> Result<(Option<String>, String, u16, Advert), String> {
    let label = e.label.trim();
    if label.is_empty() {
        return Err("label is required".into());
    }
    let by_label = match e.routing.as_str() {
        "" | "runner-id" => false,
        "label" => true,
        _ => return Err(r#"routing must be "runner-id" or "label""#.into()),
    };
    if by_label && label.contains('/') {
        return Err("label must not contain / when routing by label".into());
    }
    let health_url = if e.health_url.starts_with('/') {
        format!("{}{}", e.runner_url.trim_end_matches('/'), e.health_url)
    } else {
        e.health_url.clone()
    };
    if !advert::valid_runner_url(&health_url) {
        return Err("invalid health_url".into());
    }
    let status = match e.healthy_status_code {
        0 => 200,
        s if (100..=599).contains(&s) => s,
        _ => return Err("healthy_status_code must be between 100 and 599".into()),
    };
    let mut req = serde_json::json!({
        "runner_url": e.runner_url, "version": e.version, "metadata": e.metadata,
        "mode": e.mode, "app": e.app, "capacity": e.capacity, "proxy": e.proxy, "label": label,
    });
    if let Some(p) = &e.price_info {
        req["price_info"] = p.clone();
    }
    let parsed = advert::parse_heartbeat(req.to_string().as_bytes())?;
    let a = advert::normalize(parsed, priced)?;
    Ok((by_label.then(|| label.to_string()), health_url, status, a))
}

/// Registers the configured static runners; a bad entry fails the start.
pub(crate) fn register_configured(live: &Arc<Live>) -> Result<(), DevnetError> {
    let mut entries = live.cfg.static_runners.clone();
    if let Some(path) = &live.cfg.static_config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DevnetError::Config(format!("{}: {e}", path.display())))?;
        #[derive(serde::Deserialize)]
        struct File {
            runners: Vec<StaticRunnerConfig>,
        }
        let f: File = serde_json::from_str(&text)
            .map_err(|e| DevnetError::Config(format!("{}: {e}", path.display())))?;
        entries.extend(f.runners);
    }
    let mut labels = std::collections::HashSet::new();
    for e in &entries {
        if !labels.insert(e.label.trim().to_string()) {
            return Err(DevnetError::Config(format!(
                "duplicate static runner label {:?}",
                e.label
            )));
        }
        let (route, health_url, healthy_status, advert) = validate(e, live.priced())
            .map_err(|m| DevnetError::Config(format!("static runner {:?}: {m}", e.label)))?;
        let route = route.unwrap_or_else(super::ids::runner_id);
        live.reg().upsert_fixed(
            route,
            Kind::Static {
                health_url,
                healthy_status,
                healthy: true,
            },
            advert,
        );
    }
    Ok(())
}

/// Checks every static runner's health each interval.
pub(crate) fn start(live: &Arc<Live>) {
    let live = live.clone();
    let shutdown = live.orch.shutdown.clone();
    let every = live.cfg.health_interval.max(Duration::from_millis(10));
    live.orch.tracker.clone().spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let checks = live.reg().statics();
            for (route, url, want) in checks {
                let got =
                    tokio::time::timeout(live.cfg.health_timeout, live.client.get(&url).send())
                        .await;
                let ok = matches!(got, Ok(Ok(r)) if r.status().as_u16() == want);
                let released = live.reg().set_health(&route, ok);
                if !ok {
                    tracing::debug!(runner = %route, "static runner unhealthy");
                }
                for r in released {
                    live.finish_release(r);
                }
            }
            let _ = Instant::now();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> StaticRunnerConfig {
        StaticRunnerConfig {
            label: "scope-a".into(),
            routing: String::new(),
            proxy: false,
            runner_url: "http://r:9000/base".into(),
            version: String::new(),
            metadata: String::new(),
            mode: String::new(),
            app: "live-video-to-video/scope".into(),
            capacity: 0,
            price_info: None,
            health_url: "/health".into(),
            healthy_status_code: 0,
        }
    }

    #[test]
    fn defaults_and_health_path() {
        let (route, url, status, a) = validate(&entry(), false).unwrap();
        assert_eq!(route, None);
        assert_eq!(url, "http://r:9000/base/health");
        assert_eq!(status, 200);
        assert_eq!(a.capacity, 1);
        let mut e = entry();
        e.routing = "label".into();
        assert_eq!(validate(&e, false).unwrap().0.as_deref(), Some("scope-a"));
        e.label = "a/b".into();
        assert!(validate(&e, false).is_err());
        let mut e = entry();
        e.healthy_status_code = 600;
        assert!(validate(&e, false).is_err());
        assert!(validate(&entry(), true).unwrap_err().contains("price"));
    }
}
