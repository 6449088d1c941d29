//! Paying a live runner: the 402 challenge (spec §1.8), the signer call, `/refresh-payment`,
//! and the funding loop that keeps a metered session paid (spec §5.10).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use lpgw_proto::{OrchestratorInfo, PaymentResult};
use prost::Message as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::discovery::{origin, parse_http_url};
use crate::error::RejectReason;
use crate::gateway::Inner;
use crate::http::{describe, snippet};
use crate::payment::PaymentStats;
use crate::payment::state::{Action, PaymentState, PostOutcome, SignerOutcome, StopReason};
use crate::runner::price::{PriceUnit, RunnerPrice, RunnerPriceCeiling};
use crate::signer::{PaymentRequest, Signer, SignerReply};

/// Header carrying the payer address on reservations (ai_http.go:395-415).
pub(crate) const PAYER_ADDRESS_HEADER: &str = "Livepeer-Payer-Address";

/// A 402 payment challenge (spec §1.8 step 4).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// Base64 `OrchestratorInfo` for the signer.
    pub(crate) payment_params: String,
    /// Session ID the payment is for; the reservation's session ID.
    pub(crate) manifest_id: String,
    /// Where follow-up payments go.
    pub(crate) payment_url: String,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("manifest_id", &self.manifest_id)
            .finish_non_exhaustive()
    }
}

impl Challenge {
    /// Parses a 402 body; `base` resolves a relative `payment_url`.
    pub(crate) fn parse(body: &[u8], base: &url::Url) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|_| format!("402 without a payment challenge: {}", snippet(body)))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("payment challenge missing {k}: {}", snippet(body)))
        };
        let payment_url = field("payment_url")?;
        let payment_url = base
            .join(&payment_url)
            .map_err(|e| format!("bad payment_url: {e}"))?;
        if !matches!(payment_url.scheme(), "http" | "https") {
            return Err("payment_url must be http(s)".into());
        }
        Ok(Self {
            payment_params: field("payment_params")?,
            manifest_id: field("manifest_id")?,
            payment_url: payment_url.into(),
        })
    }

    /// The orchestrator info inside the challenge.
    pub(crate) fn info(&self) -> Result<OrchestratorInfo, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.payment_params.trim())
            .map_err(|e| format!("payment_params is not base64: {e}"))?;
        OrchestratorInfo::decode(bytes.as_slice())
            .map_err(|e| format!("payment_params is not an OrchestratorInfo: {e}"))
    }

    /// Refuses a challenge whose price is above the ceiling for `unit`, whatever discovery
    /// said: the challenge is what the signer will pay.
    pub(crate) fn check_price(
        &self,
        unit: PriceUnit,
        ceiling: &RunnerPriceCeiling,
    ) -> Result<(), RejectReason> {
        let info = self.info().map_err(RejectReason::InvalidResponse)?;
        let Some(p) = info.price_info else {
            return Ok(());
        };
        let max = ceiling.max_wei(unit);
        let ppu = u128::try_from(p.price_per_unit.max(0)).unwrap_or(0);
        let px = u128::try_from(p.pixels_per_unit.max(1)).unwrap_or(1);
        if ppu > max.saturating_mul(px) {
            let offered = RunnerPrice {
                wei: ppu.div_ceil(px),
                unit,
            };
            return Err(RejectReason::OverRunnerCeiling(format!(
                "challenge price {} is above the ceiling {}",
                offered.describe(ceiling.eth_usd),
                ceiling.max_price(unit).describe(ceiling.eth_usd)
            )));
        }
        Ok(())
    }
}

/// How a paid request's `Livepeer-Payment` and `Livepeer-Segment` headers were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PaymentKind {
    /// The price unit (decides the signer `type`).
    pub(crate) unit: PriceUnit,
    /// `maxPrice` for the signer, if the runner's price is known.
    pub(crate) max_price: Option<RunnerPrice>,
}

/// Pays one live-runner session through the remote signer, keeping the signer's state.
pub(crate) struct RunnerPayer {
    inner: Arc<Inner>,
    signer: Arc<Signer>,
    challenge: Challenge,
    kind: PaymentKind,
    app: String,
    payer_address: String,
    state: Option<Value>,
    headers: Option<(String, String)>,
    last_error: String,
    /// Value in wei of the headers last signed.
    signed_value: u128,
}

impl std::fmt::Debug for RunnerPayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerPayer")
            .field("challenge", &self.challenge)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl RunnerPayer {
    pub(crate) fn new(
        inner: Arc<Inner>,
        signer: Arc<Signer>,
        challenge: Challenge,
        kind: PaymentKind,
        app: String,
        payer_address: String,
    ) -> Self {
        Self {
            inner,
            signer,
            challenge,
            kind,
            app,
            payer_address,
            state: None,
            headers: None,
            signed_value: 0,
            last_error: String::new(),
        }
    }

    pub(crate) fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    pub(crate) fn kind(&self) -> PaymentKind {
        self.kind
    }

    /// One `generate-live-payment`; on success the headers are kept for [`Self::take_headers`].
    pub(crate) async fn sign(&mut self) -> SignerReply {
        let info = base64::engine::general_purpose::STANDARD
            .decode(self.challenge.payment_params.trim())
            .unwrap_or_default();
        let max_price = self.kind.max_price.map(|p| {
            // A JSON integer keeps every wei; the signer wants a positive decimal.
            json!({"price": u64::try_from(p.wei).unwrap_or(u64::MAX), "currency": "wei", "unit": p.unit.as_str()})
        });
        let prev_state = self.state.clone();
        let req = PaymentRequest {
            orchestrator: &info,
            capabilities: None,
            manifest_id: Some(&self.challenge.manifest_id),
            kind: self.kind.unit.payment_type(),
            app: (!self.app.is_empty()).then_some(self.app.as_str()),
            max_price,
            state: prev_state.as_ref(),
        };
        let kind = req.kind;
        let reply = self.signer.generate_live_payment(&req).await;
        drop(req);
        match &reply {
            SignerReply::Paid {
                payment,
                seg_creds,
                state,
            } => {
                self.state = Some(state.clone());
                self.signed_value = crate::payment::value::payment_value_wei(payment);
                self.headers = Some((payment.clone(), seg_creds.clone()));
                debug!(manifest = %self.challenge.manifest_id, kind, "runner payment signed");
            }
            SignerReply::PriceExceeded(m) | SignerReply::Failed(m) => self.last_error.clone_from(m),
            SignerReply::RefreshSession | SignerReply::NoTickets => {}
        }
        reply
    }

    /// Value in wei of the last successful [`Self::sign`] (see [`PaymentStats::value_wei`]).
    pub(crate) fn signed_value(&self) -> u128 {
        self.signed_value
    }

    /// The headers of the last successful [`Self::sign`].
    pub(crate) fn take_headers(&mut self) -> Option<(String, String)> {
        self.headers.take()
    }

    /// `POST {orchestrator}/refresh-payment` for the session: fresh payment parameters with
    /// the pinned price (spec §5.7). The session-scoped `payment_url` stays.
    pub(crate) async fn refresh(&mut self) -> Result<(), String> {
        let base = parse_http_url(&self.challenge.payment_url).map_err(|e| e.to_string())?;
        let mut url = origin(&base);
        url.set_path("/refresh-payment");
        let client = self
            .inner
            .clients
            .for_url(&url)
            .map_err(|e| e.to_string())?;
        let resp = client
            .post(url)
            .json(&json!({"sender": self.payer_address, "manifest_id": self.challenge.manifest_id}))
            .timeout(self.inner.settings.live.call_timeout)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| describe(&e))?;
        if status != 200 {
            return Err(format!("refresh-payment HTTP {status}: {}", snippet(&body)));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let params = v
            .get("payment_params")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("refresh-payment answer without payment_params")?;
        self.challenge.payment_params = params.to_owned();
        debug!(manifest = %self.challenge.manifest_id, "payment parameters refreshed");
        Ok(())
    }

    /// `POST {payment_url}` with the signed headers; a decodable `PaymentResult` becomes the
    /// next orchestrator info.
    pub(crate) async fn post(&mut self, payment: &str, seg_creds: &str) -> PostOutcome {
        let Ok(url) = parse_http_url(&self.challenge.payment_url) else {
            return PostOutcome::Failed;
        };
        let Ok(client) = self.inner.clients.for_url(&url) else {
            return PostOutcome::Failed;
        };
        let resp = client
            .post(url)
            .header(lpgw_proto::LIVEPEER_PAYMENT, payment)
            .header(lpgw_proto::LIVEPEER_SEGMENT, seg_creds)
            .timeout(self.inner.settings.live.call_timeout)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %describe(&e.without_url()), "runner payment post failed");
                return PostOutcome::Failed;
            }
        };
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        match status {
            200..=299 => {
                if let Ok(PaymentResult { info: Some(info) }) = PaymentResult::decode(body.as_ref())
                {
                    self.challenge.payment_params =
                        base64::engine::general_purpose::STANDARD.encode(info.encode_to_vec());
                }
                debug!(manifest = %self.challenge.manifest_id, "runner payment accepted");
                PostOutcome::Ok
            }
            404 => PostOutcome::Gone,
            408 | 429 => PostOutcome::Failed,
            400..=499 => {
                warn!(status, body = %snippet(&body), "orchestrator refused runner payment");
                PostOutcome::Refused
            }
            _ => {
                warn!(status, body = %snippet(&body), "runner payment failed");
                PostOutcome::Failed
            }
        }
    }
}

/// How a funded session's payments ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FundingEnd {
    /// The orchestrator no longer knows the session (payment answered 404): it was
    /// released (expired runner, balance ran out, runner stopped it).
    Released,
    /// The signer refused the price (481).
    PriceExceeded,
    /// The orchestrator refused payments for good (another 4xx).
    Refused,
}

/// Shared view of a funding loop.
#[derive(Debug, Default)]
pub(crate) struct FundingStatus {
    pub(crate) stats: PaymentStats,
    pub(crate) end: Option<FundingEnd>,
}

/// Keeps a metered session paid every `payment_interval` until `token` is cancelled or
/// payments must stop; then records why and cancels `ended`.
pub(crate) async fn fund(
    mut payer: RunnerPayer,
    status: Arc<Mutex<FundingStatus>>,
    token: CancellationToken,
    ended: CancellationToken,
) {
    let interval = payer.inner.settings.live.payment_interval;
    let max_refreshes = payer.inner.settings.max_refreshes;
    let mut machine = PaymentState::funded(interval, max_refreshes, Instant::now());
    // The opening payment (made before the loop) is already credited.
    let mut value = payer.signed_value();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        machine.handle_segment(Instant::now());
        while let Some(action) = machine.poll_action(Instant::now()) {
            let step = async {
                match action {
                    Action::Sign => {
                        let outcome = match payer.sign().await {
                            SignerReply::Paid { .. } => SignerOutcome::Paid,
                            SignerReply::RefreshSession => SignerOutcome::RefreshSession,
                            SignerReply::PriceExceeded(_) => SignerOutcome::PriceExceeded,
                            SignerReply::NoTickets => SignerOutcome::NoTickets,
                            SignerReply::Failed(m) => {
                                warn!(error = %m, "remote signer failed; skipping a payment");
                                SignerOutcome::Failed
                            }
                        };
                        machine.handle_signer(Instant::now(), outcome);
                        None
                    }
                    Action::Refresh => {
                        let ok = match payer.refresh().await {
                            Ok(()) => true,
                            Err(e) => {
                                warn!(error = %e, "refreshing payment parameters failed");
                                false
                            }
                        };
                        machine.handle_refreshed(Instant::now(), ok);
                        None
                    }
                    Action::Post => {
                        let outcome = match payer.take_headers() {
                            Some((p, s)) => payer.post(&p, &s).await,
                            None => PostOutcome::Failed,
                        };
                        if matches!(outcome, PostOutcome::Ok) {
                            value = value.saturating_add(payer.signed_value());
                        }
                        machine.handle_posted(Instant::now(), outcome);
                        None
                    }
                    Action::Stop(reason) => Some(reason),
                }
            };
            let stop = tokio::select! {
                () = token.cancelled() => return,
                s = step => s,
            };
            let stats = machine.stats();
            {
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                st.stats = PaymentStats {
                    paid: stats.paid,
                    skipped: stats.skipped,
                    refreshes: stats.refreshes,
                    value_wei: value,
                };
                if let Some(reason) = stop {
                    let end = match reason {
                        StopReason::PriceExceeded => FundingEnd::PriceExceeded,
                        StopReason::SessionGone => FundingEnd::Released,
                        StopReason::Refused | StopReason::InitialFailed(_) => FundingEnd::Refused,
                    };
                    warn!(?end, manifest = %payer.challenge.manifest_id, "runner payments stopped");
                    st.end = Some(end);
                }
            }
            if stop.is_some() {
                ended.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lpgw_proto::PriceInfo;

    fn base() -> url::Url {
        url::Url::parse("https://o:8935/apps/r/session").unwrap()
    }

    fn challenge_with_price(ppu: i64, px: i64) -> Challenge {
        let info = OrchestratorInfo {
            price_info: Some(PriceInfo {
                price_per_unit: ppu,
                pixels_per_unit: px,
                ..PriceInfo::default()
            }),
            ..OrchestratorInfo::default()
        };
        Challenge {
            payment_params: base64::engine::general_purpose::STANDARD.encode(info.encode_to_vec()),
            manifest_id: "ab12cd34".into(),
            payment_url: "https://o:8935/apps/r/session/ab12cd34/payment".into(),
        }
    }

    #[test]
    fn challenge_parses_and_resolves() {
        let body = br#"{"payment_params":"CgA=","orchestrator":"https://o:8935",
            "manifest_id":"ab12cd34","payment_url":"/apps/r/session/ab12cd34/payment"}"#;
        let c = Challenge::parse(body, &base()).unwrap();
        assert_eq!(c.manifest_id, "ab12cd34");
        assert_eq!(
            c.payment_url,
            "https://o:8935/apps/r/session/ab12cd34/payment"
        );
        for bad in [
            &br#"{"error":{"message":"invalid live runner payment signer address"}}"#[..],
            br#"{"payment_params":"x","manifest_id":"m"}"#,
            br#"{"payment_params":"","manifest_id":"m","payment_url":"/p"}"#,
            b"garbage",
        ] {
            assert!(Challenge::parse(bad, &base()).is_err());
        }
    }

    #[test]
    fn challenge_price_is_checked_against_the_ceiling() {
        let c = RunnerPriceCeiling {
            wei_per_second: Some(100),
            ..RunnerPriceCeiling::default()
        };
        assert!(
            challenge_with_price(100, 1)
                .check_price(PriceUnit::Seconds, &c)
                .is_ok()
        );
        assert!(
            challenge_with_price(200, 2)
                .check_price(PriceUnit::Seconds, &c)
                .is_ok()
        );
        let err = challenge_with_price(101, 1)
            .check_price(PriceUnit::Seconds, &c)
            .unwrap_err();
        assert!(matches!(err, RejectReason::OverRunnerCeiling(_)), "{err}");
        let garbage = Challenge {
            payment_params: "!!".into(),
            ..challenge_with_price(1, 1)
        };
        assert!(garbage.check_price(PriceUnit::Seconds, &c).is_err());
    }
}
