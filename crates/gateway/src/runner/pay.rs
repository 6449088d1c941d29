//! Paying a live runner: the 402 challenge (spec §1.8), what a reservation's answer means,
//! and the funding loop that keeps a metered session paid (spec §5.10). The payments
//! themselves go through the one payment driver ([`Payer`]).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use lpgw_proto::OrchestratorInfo;
use prost::Message as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::error::RejectReason;
use crate::http::snippet;
use crate::payment::PaymentStats;
use crate::payment::driver::Payer;
use crate::payment::state::StopReason;

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
    /// How often the orchestrator wants to be paid, when the challenge says
    /// (`payment_interval_ms`, go-livepeer PR #4001's field).
    pub(crate) payment_interval: Option<std::time::Duration>,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("manifest_id", &self.manifest_id)
            .finish_non_exhaustive()
    }
}

impl Challenge {
    /// Parses a 402 body; `base` (the reserved URL) resolves a relative `payment_url`. A
    /// challenge without `payment_url` (orchestrators before go-livepeer PR #4008, such as
    /// v0.9.0) pays `{base}/{manifest_id}/payment` when `base` is a reservation
    /// (`…/apps/{runner}/session`), and is refused otherwise.
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
        let payment_params = field("payment_params")?;
        let manifest_id = field("manifest_id")?;
        let payment_url = match field("payment_url") {
            Ok(u) => base.join(&u).map_err(|e| format!("bad payment_url: {e}"))?,
            Err(missing) => {
                let path = base.path().trim_end_matches('/');
                if !path.ends_with("/session") || manifest_id.contains(['/', '?', '#']) {
                    return Err(missing);
                }
                let mut u = base.clone();
                u.set_query(None);
                u.set_path(&format!("{path}/{manifest_id}/payment"));
                u
            }
        };
        if !matches!(payment_url.scheme(), "http" | "https") {
            return Err("payment_url must be http(s)".into());
        }
        let payment_interval = v
            .get("payment_interval_ms")
            .and_then(Value::as_u64)
            .filter(|ms| (100..=3_600_000).contains(ms))
            .map(std::time::Duration::from_millis);
        Ok(Self {
            payment_params,
            manifest_id,
            payment_url: payment_url.into(),
            payment_interval,
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
}

/// What the answer to a reservation (or a single-shot runner call) means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReserveReply {
    /// 2xx: reserved (or called).
    Accepted,
    /// 402 to an unpaid attempt: pay this and try again.
    Challenge(Challenge),
    /// Refused; when the attempt was paid, the runner delivered nothing for the payment.
    Rejected(RejectReason),
}

impl ReserveReply {
    /// Judges one answer. `paid` says whether the attempt carried a payment, `can_pay`
    /// whether a signer is configured; `url` is the reserved URL.
    pub(crate) fn from_response(
        status: u16,
        body: &[u8],
        url: &url::Url,
        paid: bool,
        can_pay: bool,
    ) -> Self {
        let text = snippet(body);
        match status {
            200..=299 => Self::Accepted,
            503 if text.contains("no capacity") => Self::Rejected(RejectReason::RunnerFull),
            402 if paid => Self::Rejected(RejectReason::PaymentRefused { status, body: text }),
            402 if !can_pay => Self::Rejected(RejectReason::PaymentRequired),
            402 => match Challenge::parse(body, url) {
                Ok(c) => Self::Challenge(c),
                Err(e) => Self::Rejected(RejectReason::InvalidResponse(e)),
            },
            _ => Self::Rejected(RejectReason::RunnerRefused { status, body: text }),
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
    /// The signer refused the price (481), or the orchestrator raised it above the ceiling.
    PriceExceeded,
    /// The orchestrator refused payments for good (another 4xx).
    Refused,
    /// A budget the job draws on ran out; the payment was not sent.
    BudgetExhausted,
    /// The signer kept answering 482 (no tickets) with no state: payments are wedged and
    /// the orchestrator will release the session for want of balance (go-livepeer #4077).
    Wedged,
}

/// Shared view of a funding loop.
#[derive(Debug, Default)]
pub(crate) struct FundingStatus {
    pub(crate) stats: PaymentStats,
    pub(crate) end: Option<FundingEnd>,
    /// The budget refusal, in words, when `end` is `BudgetExhausted`.
    pub(crate) detail: Option<String>,
}

/// Keeps a metered session paid every `payment_interval` until `token` is cancelled or
/// payments must stop; then records why and cancels `ended`. A fixed-price answer (409)
/// stops the loop and leaves the session running.
pub(crate) async fn fund(
    mut payer: Payer,
    status: Arc<Mutex<FundingStatus>>,
    token: CancellationToken,
    ended: CancellationToken,
) {
    let interval = payer.interval();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let stop = tokio::select! {
            () = token.cancelled() => return,
            s = payer.pay_due() => s,
        };
        let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
        st.stats = payer.stats();
        let Some(reason) = stop else { continue };
        let end = match reason {
            StopReason::Settled => return,
            StopReason::PriceExceeded => FundingEnd::PriceExceeded,
            StopReason::SessionGone => FundingEnd::Released,
            StopReason::BudgetExhausted => FundingEnd::BudgetExhausted,
            StopReason::Wedged => FundingEnd::Wedged,
            StopReason::Refused | StopReason::InitialFailed(_) => FundingEnd::Refused,
        };
        warn!(?end, "runner payments stopped");
        st.end = Some(end);
        st.detail = payer.exhausted().map(ToString::to_string);
        drop(st);
        ended.cancel();
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> url::Url {
        url::Url::parse("https://o:8935/apps/r/session").unwrap()
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
            br#"{"payment_params":"","manifest_id":"m","payment_url":"/p"}"#,
            br#"{"payment_params":"x","manifest_id":"m","payment_url":"ftp://o/p"}"#,
            b"garbage",
        ] {
            assert!(Challenge::parse(bad, &base()).is_err());
        }
    }

    /// v0.9.0 orchestrators send no `payment_url`: pay the session's own payment path.
    #[test]
    fn challenge_without_payment_url_pays_the_session_path() {
        let body = br#"{"payment_params":"CgA=","manifest_id":"ab12cd34"}"#;
        let c = Challenge::parse(body, &base()).unwrap();
        assert_eq!(c.payment_interval, None);
        assert_eq!(
            c.payment_url,
            "https://o:8935/apps/r/session/ab12cd34/payment"
        );
        let trailing = url::Url::parse("https://o:8935/apps/r/session/?x=1").unwrap();
        assert_eq!(
            Challenge::parse(body, &trailing).unwrap().payment_url,
            "https://o:8935/apps/r/session/ab12cd34/payment"
        );
        // Not a reservation: nowhere to pay.
        let call = url::Url::parse("https://o:8935/apps/r/run").unwrap();
        assert!(Challenge::parse(body, &call).is_err());
        let sneaky = br#"{"payment_params":"CgA=","manifest_id":"../../x"}"#;
        assert!(Challenge::parse(sneaky, &base()).is_err());
    }

    #[test]
    fn a_challenge_may_name_its_payment_interval() {
        let at = |ms: &str| {
            let body = format!(
                r#"{{"payment_params":"CgA=","manifest_id":"m","payment_url":"/p","payment_interval_ms":{ms}}}"#
            );
            Challenge::parse(body.as_bytes(), &base())
                .unwrap()
                .payment_interval
        };
        assert_eq!(at("5000"), Some(std::time::Duration::from_secs(5)));
        // Nonsense is ignored, not obeyed.
        assert_eq!(at("0"), None);
        assert_eq!(at("-5"), None);
        assert_eq!(at("\"x\""), None);
        assert_eq!(at("99999999999"), None);
    }

    #[test]
    fn reservation_answers_are_judged_alike_for_every_caller() {
        let challenge = br#"{"payment_params":"CgA=","manifest_id":"m1","payment_url":"/p"}"#;
        let judge = |status, body: &[u8], paid, can_pay| {
            ReserveReply::from_response(status, body, &base(), paid, can_pay)
        };
        assert_eq!(judge(200, b"{}", false, true), ReserveReply::Accepted);
        assert_eq!(judge(201, b"", true, true), ReserveReply::Accepted);
        assert!(matches!(
            judge(402, challenge, false, true),
            ReserveReply::Challenge(c) if c.manifest_id == "m1"
        ));
        assert_eq!(
            judge(402, challenge, false, false),
            ReserveReply::Rejected(RejectReason::PaymentRequired)
        );
        assert!(matches!(
            judge(402, challenge, true, true),
            ReserveReply::Rejected(RejectReason::PaymentRefused { status: 402, .. })
        ));
        assert!(matches!(
            judge(402, b"not json", false, true),
            ReserveReply::Rejected(RejectReason::InvalidResponse(_))
        ));
        for paid in [false, true] {
            assert_eq!(
                judge(503, b"no capacity available for runner", paid, true),
                ReserveReply::Rejected(RejectReason::RunnerFull)
            );
            assert!(matches!(
                judge(409, b"runner already has an active session", paid, true),
                ReserveReply::Rejected(RejectReason::RunnerRefused { status: 409, .. })
            ));
            assert!(matches!(
                judge(503, b"busy", paid, true),
                ReserveReply::Rejected(RejectReason::RunnerRefused { status: 503, .. })
            ));
        }
    }
}
