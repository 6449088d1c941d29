//! Finding live runners: each orchestrator's `GET /discovery`, a discovery URL, or the
//! signer's `GET /discover-orchestrators` (the reference SDK's precedence).

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tracing::debug;
use url::Url;

use crate::discovery::{origin, parse_http_url};
use crate::error::{Error, RejectReason, Rejection};
use crate::gateway::Gateway;
use crate::http::{describe, snippet};
use crate::runner::offer::{ParseLimits, RunnerFilter, RunnerOffer, parse_discovery};
use crate::runner::select::order_candidates;

/// Largest discovery answer read. 4 MiB.
const MAX_DISCOVERY_BYTES: usize = 4 << 20;

/// Runners found, best first, and the entries or endpoints that could not be used.
#[derive(Debug, Clone, Default)]
pub struct RunnerDiscovery {
    /// Usable runners matching the filter, in candidate order (capacity, price, latency).
    pub offers: Vec<RunnerOffer>,
    /// Discovery endpoints that failed and entries that were skipped, with reasons.
    pub rejections: Vec<Rejection>,
    /// The sources that answered (orchestrator URLs, or the discovery endpoint): where a
    /// start that finds no runner for its app says it looked.
    pub answered: Vec<String>,
}

/// `{orch}/discovery` for an orchestrator URL (its path kept, as the reference SDK does).
pub(crate) fn orchestrator_discovery_url(orch: &str) -> Result<Url, Error> {
    let mut u = parse_http_url(orch)?;
    let path = format!("{}/discovery", u.path().trim_end_matches('/'));
    u.set_path(&path);
    u.set_query(None);
    u.set_fragment(None);
    Ok(u)
}

/// Appends `app=` and `gpu=` filters (the reference SDK's query for discovery endpoints).
pub(crate) fn with_filters(mut url: Url, filter: &RunnerFilter) -> Url {
    {
        let mut q = url.query_pairs_mut();
        for a in filter.apps.iter().filter(|a| !a.trim().is_empty()) {
            q.append_pair("app", a.trim());
        }
        for g in filter.gpus.iter().filter(|g| !g.trim().is_empty()) {
            q.append_pair("gpu", g.trim());
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

/// Orchestrators without runner data in one discovery answer that are asked for their
/// own `/discovery`; the rest are ignored.
const MAX_FALLBACK_ORCHESTRATORS: usize = 32;

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(|e| describe(&e.without_url()))? {
        if out.len() + c.len() > MAX_DISCOVERY_BYTES {
            return Err(format!("answer larger than {MAX_DISCOVERY_BYTES} bytes"));
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}

impl Gateway {
    /// Discovers live runners matching `filter` (apps, GPUs), best candidates first.
    ///
    /// Sources, in order of precedence: the configured orchestrators (each one's
    /// `/discovery`, concurrently; each failure is a rejection), the discovery URL, the
    /// signer's `/discover-orchestrators`. Hostile answers are tolerated: unusable entries
    /// are skipped with a reason and at most `live.max_runners` runners are kept per answer.
    pub async fn discover_runners(&self, filter: &RunnerFilter) -> Result<RunnerDiscovery, Error> {
        let s = &self.inner.settings;
        let limits = ParseLimits {
            max_runners: s.live.max_runners.max(1),
            eth_usd: s.ceiling.eth_usd,
        };
        let orchs: Vec<String> = s
            .orchestrators
            .iter()
            .filter(|o| !o.trim().is_empty())
            .cloned()
            .collect();
        let mut found = RunnerDiscovery::default();
        if !orchs.is_empty() {
            self.fetch_each(orchs, filter, limits, &mut found).await;
        } else {
            let (url, headers) = if let Some(d) = s
                .discovery_url
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
            {
                (parse_http_url(d)?, &s.discovery_headers)
            } else if let Some(sig) = s
                .signer_url
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
            {
                let mut u = origin(&parse_http_url(sig)?);
                u.set_path("/discover-orchestrators");
                (u, &s.signer_headers)
            } else {
                return Err(Error::NoDiscoverySource);
            };
            let url = with_filters(url, filter);
            let fail = |reason: String| Error::Discovery {
                url: url.to_string(),
                reason,
            };
            let client = reqwest::Client::builder()
                .timeout(s.signer_timeout)
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let mut req = client.get(url.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| fail(describe(&e.without_url())))?;
            let status = resp.status().as_u16();
            let body = read_limited(resp).await.map_err(fail)?;
            if status != 200 {
                return Err(fail(format!("HTTP {status}: {}", snippet(&body))));
            }
            let parsed =
                parse_discovery(&body, url.as_str(), filter, limits, None).map_err(fail)?;
            found.offers = parsed.offers;
            found.rejections = parsed.skipped;
            found.answered.push(url.to_string());
            // Orchestrators listed without runner data are asked themselves.
            let asked: Vec<String> = parsed
                .without_runners
                .into_iter()
                .take(MAX_FALLBACK_ORCHESTRATORS)
                .collect();
            self.fetch_each(asked, filter, limits, &mut found).await;
        }
        order_candidates(&mut found.offers);
        debug!(
            runners = found.offers.len(),
            skipped = found.rejections.len(),
            "discovered runners"
        );
        Ok(found)
    }

    /// Asks each orchestrator's `/discovery` concurrently, adding its runners and
    /// rejections to `found`.
    async fn fetch_each(
        &self,
        orchs: Vec<String>,
        filter: &RunnerFilter,
        limits: ParseLimits,
        found: &mut RunnerDiscovery,
    ) {
        let n = self.inner.settings.probe_concurrency.max(1);
        // Owned futures: a closure over borrowed strings would make the whole future
        // lifetime-generic, which `Send` bounds (axum handlers) cannot express.
        let fetches = orchs.into_iter().map(|o| {
            let gw = self.clone();
            let filter = filter.clone();
            async move {
                let (offers, skipped) = gw.fetch_orchestrator_runners(&o, &filter, limits).await?;
                Ok::<_, Rejection>((o, offers, skipped))
            }
        });
        let results: Vec<_> = futures::stream::iter(fetches).buffered(n).collect().await;
        for r in results {
            match r {
                Ok((orch, offers, skipped)) => {
                    found.offers.extend(offers);
                    found.rejections.extend(skipped);
                    found.answered.push(orch);
                }
                Err(rej) => found.rejections.push(rej),
            }
        }
    }

    async fn fetch_orchestrator_runners(
        &self,
        orch: &str,
        filter: &RunnerFilter,
        limits: ParseLimits,
    ) -> Result<(Vec<RunnerOffer>, Vec<Rejection>), Rejection> {
        let rej = |reason: RejectReason| Rejection {
            url: orch.to_owned(),
            reason,
        };
        let url = orchestrator_discovery_url(orch)
            .map_err(|e| rej(RejectReason::InvalidUrl(e.to_string())))?;
        let client = self
            .inner
            .clients
            .for_url(&url)
            .map_err(|e| rej(RejectReason::Unreachable(e.to_string())))?;
        let timeout = self.inner.settings.probe_timeout;
        let started = Instant::now();
        let resp = client
            .get(url.clone())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                rej(if e.is_timeout() {
                    RejectReason::Timeout(u64::try_from(timeout.as_millis()).unwrap_or(0))
                } else {
                    RejectReason::Unreachable(describe(&e.without_url()))
                })
            })?;
        let latency: Duration = started.elapsed();
        let status = resp.status().as_u16();
        let body = read_limited(resp)
            .await
            .map_err(|e| rej(RejectReason::InvalidResponse(e)))?;
        if status != 200 {
            return Err(rej(RejectReason::RunnerRefused {
                status,
                body: snippet(&body),
            }));
        }
        let parsed = parse_discovery(&body, orch, filter, limits, Some(latency))
            .map_err(|e| rej(RejectReason::InvalidResponse(format!("discovery: {e}"))))?;
        Ok((parsed.offers, parsed.skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls() {
        assert_eq!(
            orchestrator_discovery_url("o:8935").unwrap().as_str(),
            "https://o:8935/discovery"
        );
        assert_eq!(
            orchestrator_discovery_url("http://o/base/?x=1")
                .unwrap()
                .as_str(),
            "http://o/base/discovery"
        );
        let f = RunnerFilter {
            apps: vec!["live-video-to-video/scope".into()],
            gpus: vec!["H100".into()],
        };
        assert_eq!(
            with_filters(Url::parse("http://s/discover-orchestrators").unwrap(), &f).as_str(),
            "http://s/discover-orchestrators?app=live-video-to-video%2Fscope&gpu=H100"
        );
        assert_eq!(
            with_filters(Url::parse("http://s/d").unwrap(), &RunnerFilter::default()).as_str(),
            "http://s/d"
        );
    }
}
