//! Discovered live runners and the parsing of discovery answers (spec §1.6), which treats
//! every answer as hostile: wrong types, negative prices, missing fields and huge arrays
//! become skipped entries with a reason, never a failure of the whole answer.

use std::time::Duration;

use serde_json::Value;

use crate::error::RejectReason;
use crate::error::Rejection;
use crate::runner::price::RunnerPrice;

/// How a runner is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunnerMode {
    /// Reserve a session (`POST {url}` → `{session_id, app_url, control_url}`), then call
    /// its app, pay while it runs, stop it at the end.
    Persistent,
    /// Every request to `{url}/{path}` is one paid job.
    SingleShot,
    /// A serverless entry: `POST {url}` (go-livepeer's `/scope`) answers the job directly.
    Serverless,
}

impl RunnerMode {
    /// The name printed by tools.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Persistent => "persistent",
            Self::SingleShot => "single-shot",
            Self::Serverless => "serverless",
        }
    }
}

impl std::fmt::Display for RunnerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One live runner as discovery described it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerOffer {
    /// Where to reserve or call it (never the runner's own URL).
    pub url: String,
    /// The orchestrator that listed it (`address` of the discovery entry).
    pub orchestrator: String,
    /// App name, e.g. `live-video-to-video/scope`.
    pub app: String,
    /// How it is used.
    pub mode: RunnerMode,
    /// GPU name, if reported.
    pub gpu: Option<String>,
    /// Runner version, if reported.
    pub version: Option<String>,
    /// Total sessions it can hold.
    pub capacity: u32,
    /// Sessions in use.
    pub capacity_used: u32,
    /// Sessions free.
    pub capacity_available: u32,
    /// Price in wei per unit; `None` offchain.
    pub price: Option<RunnerPrice>,
    /// How long the orchestrator took to answer discovery, when measured.
    pub latency: Option<Duration>,
}

/// Limits applied to one discovery answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParseLimits {
    /// Runner entries read in total; the rest are dropped with one rejection.
    pub(crate) max_runners: usize,
    /// ETH price for USD-priced entries.
    pub(crate) eth_usd: f64,
}

/// What filters discovery results: app names and GPU names (OR within, AND across; empty
/// means any), as the reference SDK does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerFilter {
    /// Accepted apps.
    pub apps: Vec<String>,
    /// Accepted GPU names.
    pub gpus: Vec<String>,
}

impl RunnerFilter {
    /// A filter on one app.
    pub fn app(app: impl Into<String>) -> Self {
        Self {
            apps: vec![app.into()],
            gpus: Vec::new(),
        }
    }

    pub(crate) fn matches(&self, offer: &RunnerOffer) -> bool {
        (self.apps.is_empty() || self.apps.iter().any(|a| a.trim() == offer.app))
            && (self.gpus.is_empty()
                || offer
                    .gpu
                    .as_deref()
                    .is_some_and(|g| self.gpus.iter().any(|f| f.trim() == g)))
    }
}

/// Runners and skipped entries of one discovery answer.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) offers: Vec<RunnerOffer>,
    pub(crate) skipped: Vec<Rejection>,
    /// Entries that name an orchestrator but carry no runner data (a signer's list after a
    /// refresh failure, go-livepeer #4087): ask each of them.
    pub(crate) without_runners: Vec<String>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    let s = v.get(key)?.as_str()?.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn count(v: &Value, key: &str) -> Result<u32, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("invalid {key}")),
    }
}

fn skip(url: &str, why: impl Into<String>) -> Rejection {
    Rejection {
        url: url.to_owned(),
        reason: RejectReason::InvalidResponse(why.into()),
    }
}

/// Parses a discovery answer: a JSON list of `{address, runners: [...]}` (go-livepeer's
/// `/discovery` and the signer's `/discover-orchestrators`). `source` names the endpoint
/// in rejections for entries without a usable URL.
pub(crate) fn parse_discovery(
    body: &[u8],
    source: &str,
    filter: &RunnerFilter,
    limits: ParseLimits,
    latency: Option<Duration>,
) -> Result<Parsed, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Array(entries) = value else {
        return Err("discovery answer must be a JSON list".into());
    };
    let mut out = Parsed::default();
    let mut dropped = 0usize;
    let mut seen = 0usize;
    for entry in &entries {
        let Some(obj) = entry.as_object() else {
            out.skipped
                .push(skip(source, "discovery entry is not an object"));
            continue;
        };
        let address = text(entry, "address").unwrap_or_else(|| source.to_owned());
        let runners = match obj.get("runners") {
            None | Some(Value::Null) => {
                if let Some(a) = text(entry, "address") {
                    out.without_runners.push(a);
                }
                continue;
            }
            Some(Value::Array(r)) => r,
            Some(_) => {
                out.skipped.push(skip(&address, "runners is not a list"));
                continue;
            }
        };
        for r in runners {
            if seen >= limits.max_runners {
                dropped += 1;
                continue;
            }
            seen += 1;
            match parse_runner(r, &address, limits.eth_usd, latency) {
                Ok(offer) if filter.matches(&offer) => out.offers.push(offer),
                Ok(_) => {}
                Err((url, why)) => out.skipped.push(skip(&url, why)),
            }
        }
    }
    if dropped > 0 {
        out.skipped.push(skip(
            source,
            format!(
                "{dropped} more runners ignored (limit {})",
                limits.max_runners
            ),
        ));
    }
    Ok(out)
}

fn parse_runner(
    r: &Value,
    orchestrator: &str,
    eth_usd: f64,
    latency: Option<Duration>,
) -> Result<RunnerOffer, (String, String)> {
    if !r.is_object() {
        return Err((
            orchestrator.to_owned(),
            "runner entry is not an object".into(),
        ));
    }
    let Some(url) = text(r, "url") else {
        return Err((orchestrator.to_owned(), "runner entry without url".into()));
    };
    let bad = |why: String| (url.clone(), why);
    let parsed = url::Url::parse(&url).map_err(|e| bad(format!("invalid runner url: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad("runner url must be http(s)".into()));
    }
    let app = text(r, "app").ok_or_else(|| bad("runner entry without app".into()))?;
    let version = text(r, "version");
    let mode = match text(r, "mode").as_deref() {
        Some("persistent") => RunnerMode::Persistent,
        Some("single-shot" | "single_shot") => RunnerMode::SingleShot,
        Some(other) => {
            return Err(bad(format!(
                "unknown runner mode {:?}",
                crate::http::snippet(other.as_bytes())
            )));
        }
        // go-livepeer's serverless entries have no mode and point at `/scope`
        // (ai_http.go:898-952); the reference SDK also keys on a `serverless` version.
        None if parsed.path().trim_end_matches('/').ends_with("/scope")
            || version
                .as_deref()
                .is_some_and(|v| v.starts_with("serverless")) =>
        {
            RunnerMode::Serverless
        }
        None if parsed.path().trim_end_matches('/').ends_with("/session") => RunnerMode::Persistent,
        None => RunnerMode::SingleShot,
    };
    let gpu = r
        .get("gpu")
        .and_then(|g| g.get("name"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned);
    let capacity = count(r, "capacity").map_err(bad)?;
    let capacity_used = count(r, "capacity_used").map_err(bad)?;
    let capacity_available = match r.get("capacity_available") {
        None | Some(Value::Null) => capacity.saturating_sub(capacity_used),
        Some(_) => count(r, "capacity_available").map_err(bad)?,
    };
    let price = match r.get("price_info") {
        None | Some(Value::Null) => None,
        Some(p) if p.is_object() => {
            let amount = match p.get("price") {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => return Err(bad("price_info without a numeric price".into())),
            };
            let currency = p.get("currency").and_then(Value::as_str).unwrap_or("");
            let unit = p.get("unit").and_then(Value::as_str).unwrap_or("");
            Some(RunnerPrice::from_parts(&amount, currency, unit, eth_usd).map_err(bad)?)
        }
        Some(_) => return Err(bad("price_info is not an object".into())),
    };
    Ok(RunnerOffer {
        url,
        orchestrator: orchestrator.to_owned(),
        app,
        mode,
        gpu,
        version,
        capacity,
        capacity_used,
        capacity_available,
        price,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::price::PriceUnit;

    const LIMITS: ParseLimits = ParseLimits {
        max_runners: 256,
        eth_usd: 2000.0,
    };

    fn parse(body: &str, filter: &RunnerFilter) -> Parsed {
        parse_discovery(body.as_bytes(), "http://d/discovery", filter, LIMITS, None).unwrap()
    }

    #[test]
    fn spec_shape_parses() {
        let body = r#"[{"address":"https://o:8935","runners":[
            {"url":"https://o:8935/apps/runner_abcd2345/session",
             "gpu":{"id":"0","name":"NVIDIA L40S","vram_mb":46068},
             "app":"live-video-to-video/scope","version":"1.4.0","mode":"persistent",
             "capacity":2,"capacity_used":1,"capacity_available":1,
             "price_info":{"price":1388888888888,"currency":"wei","unit":"seconds"}},
            {"url":"https://o:8935/scope","gpu":{"name":"H100"},
             "app":"live-video-to-video/scope","capacity":3,"capacity_used":0,
             "capacity_available":3,
             "price_info":{"price":10,"currency":"wei","unit":"720p-pixel-seconds"}}]}]"#;
        let p = parse(body, &RunnerFilter::default());
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        assert_eq!(p.offers.len(), 2);
        let a = &p.offers[0];
        assert_eq!(a.mode, RunnerMode::Persistent);
        assert_eq!(a.orchestrator, "https://o:8935");
        assert_eq!(a.gpu.as_deref(), Some("NVIDIA L40S"));
        assert_eq!(
            (a.capacity, a.capacity_used, a.capacity_available),
            (2, 1, 1)
        );
        assert_eq!(
            a.price,
            Some(RunnerPrice {
                wei: 1_388_888_888_888,
                unit: PriceUnit::Seconds
            })
        );
        assert_eq!(p.offers[1].mode, RunnerMode::Serverless);
    }

    #[test]
    fn filters_by_app_and_gpu() {
        let body = r#"[{"address":"a","runners":[
            {"url":"http://o/apps/r1/session","app":"x","gpu":{"name":"H100"}},
            {"url":"http://o/apps/r2/session","app":"y","gpu":{"name":"H100"}},
            {"url":"http://o/apps/r3/session","app":"x"}]}]"#;
        let f = RunnerFilter {
            apps: vec!["x".into()],
            gpus: vec!["H100".into(), "L40S".into()],
        };
        let p = parse(body, &f);
        let urls: Vec<_> = p.offers.iter().map(|o| o.url.as_str()).collect();
        assert_eq!(urls, ["http://o/apps/r1/session"]);
        assert_eq!(parse(body, &RunnerFilter::app("x")).offers.len(), 2);
    }

    #[test]
    fn hostile_entries_are_skipped_with_reasons() {
        let body = r#"[5, "x", null, {"runners":{}}, {"address":"o","runners":[
            7,
            {"app":"a"},
            {"url":"ftp://o/x","app":"a"},
            {"url":"http://o/apps/r/session"},
            {"url":"http://o/apps/r/session","app":"a","price_info":{"price":-1,"currency":"wei","unit":"seconds"}},
            {"url":"http://o/apps/r/session","app":"a","price_info":{"price":"1","currency":"wei","unit":"parsec"}},
            {"url":"http://o/apps/r/session","app":"a","price_info":{"currency":"wei"}},
            {"url":"http://o/apps/r/session","app":"a","price_info":[1]},
            {"url":"http://o/apps/r/session","app":"a","capacity":-3},
            {"url":"http://o/apps/r/session","app":"a","mode":"forever"},
            {"url":"http://o/apps/ok/session","app":"a","capacity":1}
        ]}]"#;
        let p = parse(body, &RunnerFilter::default());
        assert_eq!(p.offers.len(), 1);
        assert_eq!(p.offers[0].url, "http://o/apps/ok/session");
        assert_eq!(p.offers[0].capacity_available, 1);
        let reasons: Vec<String> = p.skipped.iter().map(|r| r.reason.to_string()).collect();
        assert_eq!(reasons.len(), 14, "{reasons:#?}");
        assert!(reasons.iter().any(|r| r.contains("negative price")));
        assert!(reasons.iter().any(|r| r.contains("unknown price unit")));
        assert!(reasons.iter().any(|r| r.contains("without app")));
        assert!(reasons.iter().any(|r| r.contains("invalid capacity")));
        assert!(parse_discovery(b"{}", "d", &RunnerFilter::default(), LIMITS, None).is_err());
        assert!(parse_discovery(b"[", "d", &RunnerFilter::default(), LIMITS, None).is_err());
    }

    #[test]
    fn huge_arrays_are_capped() {
        let runner = r#"{"url":"http://o/apps/r/session","app":"a"}"#;
        let body = format!(
            r#"[{{"address":"o","runners":[{}]}}]"#,
            vec![runner; 1000].join(",")
        );
        let limits = ParseLimits {
            max_runners: 10,
            eth_usd: 2000.0,
        };
        let p =
            parse_discovery(body.as_bytes(), "d", &RunnerFilter::default(), limits, None).unwrap();
        assert_eq!(p.offers.len(), 10);
        assert_eq!(p.skipped.len(), 1);
        assert!(
            p.skipped[0]
                .reason
                .to_string()
                .contains("990 more runners ignored")
        );
    }
}
