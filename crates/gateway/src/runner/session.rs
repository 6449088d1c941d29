//! A reserved persistent live-runner session: its URLs, its payment loop, and the stop that
//! always follows (spec §1.8, §1.11).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use url::Url;

use crate::budget::Wallet;
use crate::error::{Error, RejectReason};
use crate::gateway::Inner;
use crate::http::{describe, snippet};
use crate::payment::PaymentStats;
use crate::runner::call::{Funding, RunnerReply, RunnerRequest, funding_for, paid_request, reject};
use crate::runner::offer::{RunnerMode, RunnerOffer};
use crate::runner::pay::FundingEnd;

/// The reservation answer (ai_http.go:177-181): `{session_id, app_url, control_url}`.
pub(crate) fn parse_reservation(
    body: &[u8],
    base: &Url,
) -> Result<(String, String, String), String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("reservation is not JSON: {e}"))?;
    let field = |k: &str| -> Result<String, String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("reservation missing {k}"))
    };
    let url = |k: &str| -> Result<String, String> {
        let s = field(k)?;
        let u = base.join(&s).map_err(|e| format!("bad {k}: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("bad {k}: not http(s)"));
        }
        Ok(u.into())
    };
    Ok((field("session_id")?, url("app_url")?, url("control_url")?))
}

/// A reserved session on a persistent runner. Metered sessions are paid every
/// `payment_interval` while it lives. [`RunnerSession::close`] (or dropping it) stops
/// payments and stops the session at the orchestrator, retrying a failed stop.
#[must_use = "dropping a session stops it"]
pub struct RunnerSession {
    inner: Arc<Inner>,
    offer: RunnerOffer,
    session_id: String,
    app_url: String,
    control_url: String,
    funding: Option<Funding>,
    ended: CancellationToken,
    stopped: bool,
}

impl std::fmt::Debug for RunnerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerSession")
            .field("session_id", &self.session_id)
            .field("runner", &self.offer.url)
            .finish_non_exhaustive()
    }
}

impl RunnerSession {
    /// Reserves a session on `offer` (which must be persistent), paying if challenged.
    pub(crate) async fn reserve(
        inner: &Arc<Inner>,
        offer: &RunnerOffer,
        wallet: &Wallet,
    ) -> Result<Self, RejectReason> {
        if offer.mode != RunnerMode::Persistent {
            return Err(RejectReason::Unavailable(format!(
                "{} runners have no sessions",
                offer.mode
            )));
        }
        let url = RunnerRequest::get("").url(&offer.url)?;
        let req = RunnerRequest::json("", &serde_json::json!({}));
        let paid = paid_request(inner, offer, &url, &req, wallet).await?;
        let body = paid
            .resp
            .bytes()
            .await
            .map_err(|e| RejectReason::Unreachable(describe(&e.without_url())))?;
        let funding = funding_for(paid.payer);
        let (session_id, app_url, control_url) = match parse_reservation(&body, &url) {
            Ok(r) => r,
            Err(e) => {
                // Possibly paid, but without a control URL there is nothing to stop.
                warn!(runner = %offer.url, error = %e, body = %snippet(&body), "unusable reservation");
                return Err(RejectReason::InvalidResponse(e));
            }
        };
        debug!(runner = %offer.url, session = %session_id, paid = funding.is_some(), "session reserved");
        let ended = funding
            .as_ref()
            .map_or_else(CancellationToken::new, Funding::ended_token);
        Ok(Self {
            inner: inner.clone(),
            offer: offer.clone(),
            session_id,
            app_url,
            control_url,
            funding,
            ended,
            stopped: false,
        })
    }

    /// The session ID (the payment manifest ID when paid).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Base URL of the runner's app for this session.
    pub fn app_url(&self) -> &str {
        &self.app_url
    }

    /// The session's control URL (`…/stop`, `…/payment` hang off it).
    pub fn control_url(&self) -> &str {
        &self.control_url
    }

    /// The runner as discovered.
    pub fn runner(&self) -> &RunnerOffer {
        &self.offer
    }

    /// Payment counters (the reservation's payment included; zero offchain).
    pub fn payment_stats(&self) -> PaymentStats {
        self.funding
            .as_ref()
            .map(Funding::stats)
            .unwrap_or_default()
    }

    /// Why payments stopped on their own, if they did: [`FundingEnd::Released`] means the
    /// orchestrator no longer knows the session.
    pub fn funding_end(&self) -> Option<FundingEnd> {
        self.funding.as_ref().and_then(Funding::end)
    }

    /// Details of why payments ended, where there are any (a budget's figures).
    pub fn funding_detail(&self) -> Option<String> {
        self.funding.as_ref().and_then(Funding::end_detail)
    }

    /// Resolves when payments stop on their own (the session was released, or payment was
    /// refused). Never resolves for unpaid or fixed-price sessions.
    pub async fn ended(&self) {
        self.ended.cancelled().await;
    }

    pub(crate) fn ended_token(&self) -> CancellationToken {
        self.ended.clone()
    }

    /// Calls the session's app: `{app_url}/{path}`.
    pub async fn call(&self, req: &RunnerRequest) -> Result<RunnerReply, Error> {
        let url = req
            .url(&self.app_url)
            .map_err(|r| reject(&self.offer.url, r))?;
        let client = self
            .inner
            .clients
            .for_url(&url)
            .map_err(|e| reject(&self.offer.url, RejectReason::Unreachable(e.to_string())))?;
        let mut b = client
            .request(req.method.clone(), url)
            .header(http::header::ACCEPT, "*/*")
            .body(req.body.clone());
        if let Some(ct) = &req.content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let resp = b.send().await.map_err(|e| {
            reject(
                &self.offer.url,
                RejectReason::AppCallFailed {
                    status: 0,
                    body: describe(&e.without_url()),
                },
            )
        })?;
        Ok(RunnerReply::new(resp, None))
    }

    /// Stops payments, then stops the session at the orchestrator (retried; a final failure
    /// is logged).
    pub async fn close(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(f) = &mut self.funding {
            f.stop().await;
        }
        if !self.stopped {
            self.stopped = true;
            stop_session(&self.inner, &self.control_url).await;
        }
    }
}

impl Drop for RunnerSession {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.funding = None;
        self.stopped = true;
        let inner = self.inner.clone();
        let control = self.control_url.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move { stop_session(&inner, &control).await });
            }
            Err(_) => {
                warn!(session = %self.session_id, "session dropped outside a runtime; not stopped")
            }
        }
    }
}

/// `POST {control_url}/stop` → 204 (idempotent; 404 means the runner itself is gone).
/// Retried with backoff up to `stop_attempts`; a final failure is logged at warn.
pub(crate) async fn stop_session(inner: &Inner, control_url: &str) -> bool {
    let live = &inner.settings.live;
    let Ok(url) = RunnerRequest::get("stop").url(control_url) else {
        warn!("session control url unusable; cannot stop");
        return false;
    };
    let client = match inner.clients.for_url(&url) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot stop session");
            return false;
        }
    };
    let attempts = live.stop_attempts.max(1);
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=attempts {
        let r = client
            .post(url.clone())
            .timeout(live.call_timeout)
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 404 => {
                debug!(status = resp.status().as_u16(), "session stopped");
                return true;
            }
            Ok(resp) => {
                warn!(
                    attempt,
                    status = resp.status().as_u16(),
                    "stopping session failed"
                );
            }
            Err(e) => {
                warn!(attempt, error = %describe(&e.without_url()), "stopping session failed")
            }
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    warn!(
        attempts,
        "gave up stopping session; the orchestrator may keep it until it is unpaid"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_parses_and_resolves() {
        let base = Url::parse("https://o:8935/apps/r/session").unwrap();
        let (sid, app, control) = parse_reservation(
            br#"{"session_id":"s1","app_url":"/apps/r/session/s1/app","control_url":"https://o:8935/apps/r/session/s1"}"#,
            &base,
        )
        .unwrap();
        assert_eq!(sid, "s1");
        assert_eq!(app, "https://o:8935/apps/r/session/s1/app");
        assert_eq!(control, "https://o:8935/apps/r/session/s1");
        assert!(parse_reservation(br#"{"session_id":"s1","app_url":"/a"}"#, &base).is_err());
        assert!(parse_reservation(b"[]", &base).is_err());
    }
}
