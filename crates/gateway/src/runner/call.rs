//! One HTTP call to a live runner with the payment dance (402 → signer → retry), and what
//! comes back: JSON, bytes, or a stream read chunk by chunk.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, debug_span, warn};
use url::Url;

use crate::budget::Wallet;
use crate::error::{Error, RejectReason, Rejection};
use crate::gateway::Inner;
use crate::http::describe;
use crate::payment::PaymentStats;
use crate::payment::driver::Payer;
use crate::runner::offer::RunnerOffer;
use crate::runner::pay::{
    Challenge, FundingEnd, FundingStatus, PAYER_ADDRESS_HEADER, ReserveReply, fund,
};
use crate::runner::price::{PriceUnit, RunnerPrice};

/// Largest body [`RunnerReply::bytes`] and [`RunnerReply::json`] accept. 64 MiB.
const MAX_BODY: usize = 64 << 20;

/// A request to a runner or its app.
#[derive(Debug, Clone)]
pub struct RunnerRequest {
    /// HTTP method. Default `POST`.
    pub method: http::Method,
    /// Path appended to the runner or app URL (`"scope"`, `"v1/foo?x=1"`); empty for none.
    pub path: String,
    /// Request body.
    pub body: Bytes,
    /// Body media type, if any.
    pub content_type: Option<String>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl RunnerRequest {
    /// `POST {path}` with a JSON body.
    pub fn json(path: impl Into<String>, body: &Value) -> Self {
        Self {
            method: http::Method::POST,
            path: path.into(),
            body: Bytes::from(body.to_string()),
            content_type: Some("application/json".into()),
            headers: Vec::new(),
        }
    }

    /// `GET {path}`.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: http::Method::GET,
            path: path.into(),
            body: Bytes::new(),
            content_type: None,
            headers: Vec::new(),
        }
    }

    /// `base` with `path` appended as one more path segment (query kept).
    pub(crate) fn url(&self, base: &str) -> Result<Url, RejectReason> {
        let full = if self.path.is_empty() {
            base.to_owned()
        } else {
            format!(
                "{}/{}",
                base.trim_end_matches('/'),
                self.path.trim_start_matches('/')
            )
        };
        let u = Url::parse(&full).map_err(|e| RejectReason::InvalidUrl(format!("{full}: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(RejectReason::InvalidUrl(full));
        }
        Ok(u)
    }
}

/// A runner's answer. The body is not read yet: use [`Self::json`], [`Self::bytes`] or
/// [`Self::chunk`]. For a metered single-shot call the payment loop runs until the reply is
/// dropped.
pub struct RunnerReply {
    status: u16,
    content_type: String,
    resp: reqwest::Response,
    funding: Option<Funding>,
}

impl std::fmt::Debug for RunnerReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerReply")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl RunnerReply {
    pub(crate) fn new(resp: reqwest::Response, funding: Option<Funding>) -> Self {
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Self {
            status: resp.status().as_u16(),
            content_type,
            resp,
            funding,
        }
    }

    /// HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// `Content-Type`, or empty.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// Whether the body is JSON (`application/json` or `+json`).
    pub fn is_json(&self) -> bool {
        let mime = self
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        mime == "application/json" || mime.ends_with("+json")
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.resp.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The next chunk of a streamed body (SSE, chunked); `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        self.resp.chunk().await.map_err(|e| Error::Runner {
            reason: describe(&e.without_url()),
        })
    }

    /// The whole body (at most 64 MiB).
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await? {
            if out.len() + c.len() > MAX_BODY {
                return Err(Error::Runner {
                    reason: "runner answer too large".into(),
                });
            }
            out.extend_from_slice(&c);
        }
        Ok(out.into())
    }

    /// The body as JSON.
    pub async fn json(self) -> Result<Value, Error> {
        let body = self.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| Error::Runner {
            reason: format!("runner answer is not JSON: {e}"),
        })
    }

    /// Payment counters of the call's own payment loop (metered single-shot calls).
    pub fn payment_stats(&self) -> Option<PaymentStats> {
        self.funding.as_ref().map(Funding::stats)
    }
}

impl crate::gateway::Gateway {
    /// One call to a single-shot runner or serverless entry (`{offer.url}/{req.path}`),
    /// paying when challenged. Any status comes back as a [`RunnerReply`] except 402, 503
    /// "no capacity" and refusals before the app ran, which are errors. For metered prices
    /// the payment loop runs until the reply is dropped.
    pub async fn call_runner(
        &self,
        offer: &RunnerOffer,
        req: &RunnerRequest,
    ) -> Result<RunnerReply, Error> {
        let url = req.url(&offer.url).map_err(|r| reject(&offer.url, r))?;
        let paid = paid_request(&self.inner, offer, &url, req, &Wallet::default())
            .await
            .map_err(|r| reject(&offer.url, r))?;
        Ok(RunnerReply::new(paid.resp, funding_for(paid.payer)))
    }

    /// Reserves a session on a persistent runner, paying when challenged; metered sessions
    /// are then paid every `live.payment_interval` until closed.
    pub async fn reserve_session(
        &self,
        offer: &RunnerOffer,
    ) -> Result<crate::runner::RunnerSession, Error> {
        crate::runner::RunnerSession::reserve(&self.inner, offer, &Wallet::default())
            .await
            .map_err(|r| reject(&offer.url, r))
    }
}

/// A running payment loop; dropping it stops payments.
#[derive(Debug)]
pub(crate) struct Funding {
    token: CancellationToken,
    ended: CancellationToken,
    status: Arc<Mutex<FundingStatus>>,
    task: Option<JoinHandle<()>>,
}

impl Funding {
    pub(crate) fn start(payer: Payer, manifest_id: &str) -> Self {
        let token = CancellationToken::new();
        let ended = CancellationToken::new();
        let status = Arc::new(Mutex::new(FundingStatus {
            stats: payer.stats(),
            end: None,
            detail: None,
        }));
        let span = debug_span!("runner_funding", manifest = %manifest_id);
        let task = tokio::spawn(
            fund(payer, status.clone(), token.clone(), ended.clone()).instrument(span),
        );
        Self {
            token,
            ended,
            status,
            task: Some(task),
        }
    }

    /// Cancelled when payments stop on their own (released, refused, price).
    pub(crate) fn ended_token(&self) -> CancellationToken {
        self.ended.clone()
    }

    pub(crate) fn end(&self) -> Option<FundingEnd> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).end
    }

    pub(crate) fn stats(&self) -> PaymentStats {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).stats
    }

    /// The budget refusal, in words, when payments ended for want of budget.
    pub(crate) fn end_detail(&self) -> Option<String> {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .detail
            .clone()
    }

    /// Stops payments and waits for the loop to finish its current step.
    pub(crate) async fn stop(&mut self) {
        self.token.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Funding {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The payment unit for an offer and the signer's `maxPrice`: its price's unit (padded by
/// 1.2 %, capped at the ceiling), else Scope bills per 720p pixel and other apps per second
/// (the reference SDK's fallback) with the ceiling itself as `maxPrice`.
pub(crate) fn payment_kind(inner: &Inner, offer: &RunnerOffer) -> (PriceUnit, RunnerPrice) {
    let ceiling = &inner.settings.ceiling;
    match offer.price {
        Some(p) => (p.unit, ceiling.signer_max(&p)),
        None => {
            let unit = if offer.app.ends_with("/scope") {
                PriceUnit::PixelSeconds720p
            } else {
                PriceUnit::Seconds
            };
            (unit, ceiling.max_price(unit))
        }
    }
}

/// What a successful paid request gives.
pub(crate) struct Paid {
    pub(crate) resp: reqwest::Response,
    pub(crate) payer: Option<(Payer, String)>,
}

/// Sends `req` to `url`; answers each 402 challenge through the payment driver and retries,
/// at most `challenge_retries` fresh challenges (a signer 480 before the first payment asks
/// for one). Only a 2xx is returned. A paid attempt is never repeated: if the orchestrator
/// answers it with anything but a 2xx, the runner goes on cool-down and the attempt is a
/// rejection. Payments draw on `wallet`.
pub(crate) async fn paid_request(
    inner: &Arc<Inner>,
    offer: &RunnerOffer,
    url: &Url,
    req: &RunnerRequest,
    wallet: &Wallet,
) -> Result<Paid, RejectReason> {
    let live = &inner.settings.live;
    let client = inner
        .clients
        .for_url(url)
        .map_err(|e| RejectReason::Unreachable(e.to_string()))?;
    let payer_address = match &inner.signer {
        Some(s) => Some(
            s.payer_address()
                .await
                .map_err(|e| RejectReason::Signer(e.to_string()))?,
        ),
        None => None,
    };
    let (unit, max_price) = payment_kind(inner, offer);
    let max_attempts = (live.challenge_retries + 1) * 2;
    let mut challenge: Option<Challenge> = None;
    let mut challenges = 0u32;
    for attempt in 0..max_attempts {
        let mut builder = client
            .request(req.method.clone(), url.clone())
            .header(http::header::ACCEPT, "*/*")
            .timeout(live.call_timeout)
            .body(req.body.clone());
        if let Some(ct) = &req.content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        if let Some(a) = &payer_address {
            builder = builder.header(PAYER_ADDRESS_HEADER, a);
        }
        let mut payer = None;
        if let (Some(ch), Some(signer), Some(addr)) =
            (challenge.take(), &inner.signer, &payer_address)
        {
            let mut p = Payer::runner(
                inner.clone(),
                signer.clone(),
                &ch,
                unit,
                Some(max_price),
                offer.app.clone(),
                addr.clone(),
                wallet.clone(),
            )?;
            let headers = match p.opening().await {
                Ok(h) => h,
                Err(_) if p.needs_fresh_challenge() => {
                    // The challenge's parameters went stale: ask for a fresh one.
                    debug!(attempt, "signer wants fresh payment parameters");
                    continue;
                }
                Err(reason) => return Err(reason),
            };
            builder = builder
                .header(lpgw_proto::LIVEPEER_PAYMENT, headers.payment)
                .header(lpgw_proto::LIVEPEER_SEGMENT, headers.seg_creds);
            payer = Some((p, ch.manifest_id));
        }
        let resp = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                RejectReason::Timeout(u64::try_from(live.call_timeout.as_millis()).unwrap_or(0))
            } else {
                RejectReason::Unreachable(describe(&e.without_url()))
            }
        });
        let status = resp.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
        if let Some((p, _)) = &mut payer {
            p.handle_start_result(resp.is_ok() && (200..300).contains(&status));
        }
        let resp = resp?;
        if resp.status().is_success() {
            return Ok(Paid { resp, payer });
        }
        let body = resp.bytes().await.unwrap_or_default();
        let paid = payer.is_some();
        match ReserveReply::from_response(status, &body, url, paid, inner.signer.is_some()) {
            // 2xx answers were returned above; nothing else is accepted.
            ReserveReply::Accepted => {
                return Err(RejectReason::InvalidResponse(format!("HTTP {status}")));
            }
            ReserveReply::Rejected(reason) => {
                if paid {
                    // Tickets went out and nothing was delivered: never pay this runner in a
                    // loop.
                    cool_down(inner, &offer.url);
                }
                return Err(reason);
            }
            ReserveReply::Challenge(c) => {
                challenges += 1;
                challenge = Some(c);
            }
        }
    }
    Err(RejectReason::ChallengeRetries(challenges))
}

/// Puts a runner that took a payment and delivered nothing on cool-down
/// (`live.cooldown`): starts skip it instead of paying it again.
pub(crate) fn cool_down(inner: &Inner, url: &str) {
    warn!(
        runner = %url,
        secs = inner.settings.live.cooldown.as_secs(),
        "runner failed a paid attempt; cooling down"
    );
    inner
        .cooldowns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .put(url, std::time::Instant::now(), inner.settings.live.cooldown);
}

/// Starts the payment loop when the payment is metered.
pub(crate) fn funding_for(payer: Option<(Payer, String)>) -> Option<Funding> {
    let (payer, manifest) = payer?;
    payer
        .unit()
        .is_metered()
        .then(|| Funding::start(payer, &manifest))
}

pub(crate) fn reject(url: &str, reason: RejectReason) -> Error {
    Error::Orchestrator(Rejection {
        url: url.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_join_once() {
        let r = RunnerRequest::get("/v1/foo?x=1");
        assert_eq!(
            r.url("https://o/apps/r/session/s/app/").unwrap().as_str(),
            "https://o/apps/r/session/s/app/v1/foo?x=1"
        );
        assert_eq!(
            RunnerRequest::get("")
                .url("http://o/scope")
                .unwrap()
                .as_str(),
            "http://o/scope"
        );
        assert!(RunnerRequest::get("x").url("ftp://o").is_err());
    }
}
