//! API errors: one JSON shape, `{"error": ..., "rejections"?: [{url, reason}]}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lpgw_gateway::{Error as GwError, RejectReason};
use serde_json::json;

use crate::routes::types::{ErrorBody, RejectionBody};

/// A configuration file or value is invalid.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// An error answered to an API caller.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// Each orchestrator or runner tried, in order; `None` when not a start failure.
    pub(crate) rejections: Option<Vec<RejectionBody>>,
    /// Seconds for a `Retry-After` header, for 429 answers of a rate limit.
    pub(crate) retry_after: Option<u64>,
    /// The figures of a budget that ran out (402 answers), as `"budget"`.
    pub(crate) budget: Option<serde_json::Value>,
    /// For start failures: whether trying again later may succeed (capacity, network)
    /// rather than fail the same way (a refusal, a ceiling, bad input).
    pub(crate) retryable: Option<bool>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            rejections: None,
            retry_after: None,
            budget: None,
            retryable: None,
        }
    }

    /// 402: a budget the caller's jobs draw on has nothing left; the body gives the figures.
    pub(crate) fn budget_exhausted(e: &lpgw_gateway::BudgetExhausted) -> Self {
        Self {
            budget: Some(json!({
                "name": e.name,
                "spent_wei": e.spent_wei.to_string(),
                "limit_wei": e.limit_wei.to_string(),
                "needed_wei": e.needed_wei.to_string(),
                "spent_usd": e.spent_usd,
                "limit_usd": e.limit_usd,
                "window_secs": e.window_secs,
            })),
            ..Self::new(StatusCode::PAYMENT_REQUIRED, e.to_string())
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Job not found")
    }

    /// 429 from a rate limit: retry after `wait`, rounded up to whole seconds (at least 1,
    /// the header's smallest useful value).
    pub(crate) fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Invalid or missing API key")
    }

    /// Maps a start failure: 400 for a malformed request, 503 when every candidate was out
    /// of capacity or unavailable, 502 for other upstream failures, 500 for local ones.
    pub(crate) fn from_start(err: &GwError) -> Self {
        let rejections: Vec<RejectionBody> = err
            .rejections()
            .iter()
            .map(|r| RejectionBody {
                url: r.url.clone(),
                reason: r.reason.to_string(),
            })
            .collect();
        let status = match err {
            GwError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            GwError::Config(_) | GwError::Token(_) | GwError::Tls(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ if !err.rejections().is_empty()
                && err.rejections().iter().all(|r| is_availability(&r.reason)) =>
            {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ if !err.rejections().is_empty()
                && err
                    .rejections()
                    .iter()
                    .any(|r| matches!(r.reason, RejectReason::BudgetExhausted(_))) =>
            {
                // A budget ran out during the start: the caller's, not the upstream's.
                StatusCode::PAYMENT_REQUIRED
            }
            GwError::NoOrchestrators | GwError::NoDiscoverySource => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_GATEWAY,
        };
        Self {
            status,
            message: err.to_string(),
            rejections: Some(rejections),
            retry_after: None,
            budget: None,
            retryable: Some(err.is_retryable()),
        }
    }
}

/// Capacity or reachability trouble, as opposed to a refusal or a broken answer.
/// go-livepeer reports a full orchestrator to `GetOrchestrator` as `OrchestratorCapped`.
pub(crate) fn is_availability(reason: &RejectReason) -> bool {
    match reason {
        RejectReason::InsufficientCapacity
        | RejectReason::RunnerFull
        | RejectReason::CoolingDown(_)
        | RejectReason::Unavailable(_)
        | RejectReason::Unreachable(_)
        | RejectReason::Timeout(_) => true,
        RejectReason::Rpc { message, .. } => message.contains("OrchestratorCapped"),
        _ => false,
    }
}

/// A short label for the rejection-reason metric.
pub(crate) fn reason_label(reason: &RejectReason) -> &'static str {
    match reason {
        RejectReason::InvalidUrl(_) => "invalid_url",
        RejectReason::Unreachable(_) => "unreachable",
        RejectReason::Timeout(_) => "timeout",
        RejectReason::Rpc { .. } => "rpc",
        RejectReason::InvalidResponse(_) => "invalid_response",
        RejectReason::OverPriceCeiling(_) => "over_price_ceiling",
        RejectReason::AuthTokenExpired => "auth_token_expired",
        RejectReason::InsufficientCapacity => "insufficient_capacity",
        RejectReason::PaymentRefused { .. } => "payment_refused",
        RejectReason::CredentialsRefused(_) => "credentials_refused",
        RejectReason::StartFailed { .. } => "start_failed",
        RejectReason::SignerPriceExceeded(_) => "signer_price_exceeded",
        RejectReason::RefreshLimit(_) => "refresh_limit",
        RejectReason::Signer(_) => "signer",
        RejectReason::OverRunnerCeiling(_) => "over_runner_ceiling",
        RejectReason::RunnerFull => "runner_full",
        RejectReason::RunnerRefused { .. } => "runner_refused",
        RejectReason::CoolingDown(_) => "cooling_down",
        RejectReason::AppCallFailed { .. } => "app_call_failed",
        RejectReason::PaymentRequired => "payment_required",
        RejectReason::ChallengeRetries(_) => "challenge_retries",
        RejectReason::ScopeStart(_) => "scope_start",
        RejectReason::Unavailable(_) => "unavailable",
        RejectReason::BudgetExhausted(_) => "budget_exhausted",
        _ => "other",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            rejections: self.rejections,
            budget: self.budget,
            retry_after_secs: self.retry_after,
            retryable: self.retryable,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lpgw_gateway::Rejection;

    fn rej(reason: RejectReason) -> Rejection {
        Rejection {
            url: "https://o:1".into(),
            reason,
        }
    }

    #[test]
    fn rate_limited_answers_carry_retry_after_in_whole_seconds() {
        use std::time::Duration;
        let e = ApiError::rate_limited("slow down", Duration::from_millis(1));
        assert_eq!(e.retry_after, Some(1));
        let e = ApiError::rate_limited("slow down", Duration::from_millis(2500));
        assert_eq!(e.retry_after, Some(3));
        let r = ApiError::rate_limited("slow down", Duration::from_secs(4)).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "4");
    }

    #[test]
    fn all_capacity_rejections_are_503_and_others_502() {
        let capacity = GwError::NoOrchestratorAvailable {
            rejections: vec![rej(RejectReason::InsufficientCapacity)],
        };
        let e = ApiError::from_start(&capacity);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.rejections.as_ref().map(Vec::len), Some(1));

        let mixed = GwError::NoOrchestratorAvailable {
            rejections: vec![
                rej(RejectReason::InsufficientCapacity),
                rej(RejectReason::StartFailed {
                    status: 500,
                    body: "boom".into(),
                }),
            ],
        };
        assert_eq!(ApiError::from_start(&mixed).status, StatusCode::BAD_GATEWAY);
        // Capacity may free up; a 500 from one orchestrator may not recur on the next try.
        assert_eq!(ApiError::from_start(&mixed).retryable, Some(true));
        let refused = GwError::StartFailed {
            model: "scope".into(),
            rejections: vec![rej(RejectReason::PipelineRefused("nope".into()))],
        };
        assert_eq!(ApiError::from_start(&refused).retryable, Some(false));
        // The caller's own mistake is not an upstream failure.
        let bad = GwError::InvalidRequest("bad scope parameters: graph must be an object".into());
        assert_eq!(ApiError::from_start(&bad).status, StatusCode::BAD_REQUEST);

        let capped = GwError::StartFailed {
            model: "noop".into(),
            rejections: vec![
                rej(RejectReason::Rpc {
                    code: "Unknown".into(),
                    message: "Invalid orchestrator request: OrchestratorCapped".into(),
                }),
                rej(RejectReason::Unavailable(
                    "no live runner offers this app".into(),
                )),
            ],
        };
        assert_eq!(
            ApiError::from_start(&capped).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
