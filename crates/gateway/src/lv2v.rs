//! Starting a live video-to-video job on the legacy AI-worker path
//! (`POST {transcoder}/live-video-to-video`, spec §2).

use serde_json::{Value, json};
use tracing::{debug, instrument};
use url::Url;

use crate::budget::Wallet;
use crate::discovery::{lv2v_cap, origin, parse_http_url};
use crate::error::{Error, RejectReason};
use crate::gateway::Gateway;
use crate::http::{describe, snippet};
use crate::job::{JobUrls, Lv2vJob};
use crate::orchestrator::lv2v_capabilities;
use crate::payment::driver::{Payer, offchain_headers};
use lpgw_proto::{Capabilities, OrchestratorInfo};

/// Go-livepeer's AI worker authorization header value (server/ai_worker.go:38); O ignores it.
const AI_WORKER_AUTH: &str = "Livepeer-AI-Worker-1.0";

/// What to start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartRequest {
    /// Pipeline model, e.g. `noop` or `streamdiffusion`. Required.
    pub model_id: String,
    /// Initial pipeline parameters, passed to the runner.
    pub params: Option<Value>,
    /// Caller's request ID, for the orchestrator's logs.
    pub request_id: Option<String>,
    /// Caller's stream ID, for the orchestrator's logs.
    pub stream_id: Option<String>,
    /// What the job's payments draw on (budgets, and an observer of accepted payments).
    /// Default: no budget.
    pub wallet: Wallet,
}

impl StartRequest {
    /// A request for `model_id` with no parameters.
    pub fn new(model_id: impl Into<String>) -> Self {
        Self {
            model_id: model_id.into(),
            ..Self::default()
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut body = json!({ "model_id": self.model_id });
        if let Some(p) = &self.params {
            body["params"] = p.clone();
        }
        if let Some(r) = &self.request_id {
            body["gateway_request_id"] = r.clone().into();
        }
        if let Some(s) = &self.stream_id {
            body["stream_id"] = s.clone().into();
        }
        body
    }
}

/// Interprets the orchestrator's answer to `POST /live-video-to-video`.
///
/// Host-less URLs are resolved against the transcoder URL, as go-livepeer does
/// (common/util.go:503-525).
pub(crate) fn start_reply(
    status: u16,
    body: &[u8],
    transcoder: &Url,
) -> Result<JobUrls, RejectReason> {
    let text = snippet(body);
    match status {
        200 => {}
        503 if text.contains("insufficient capacity") => {
            return Err(RejectReason::InsufficientCapacity);
        }
        402 => return Err(RejectReason::PaymentRefused { status, body: text }),
        403 => return Err(RejectReason::CredentialsRefused(text)),
        400 if ["ticket", "balance", "payment", "price"]
            .iter()
            .any(|k| text.to_ascii_lowercase().contains(k)) =>
        {
            return Err(RejectReason::PaymentRefused { status, body: text });
        }
        _ => return Err(RejectReason::StartFailed { status, body: text }),
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| RejectReason::InvalidResponse(format!("start reply is not JSON: {e}")))?;
    let field = |name: &str| -> Option<String> {
        let s = v.get(name)?.as_str()?.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    let url = |name: &str| -> Result<Option<String>, RejectReason> {
        let Some(s) = field(name) else {
            return Ok(None);
        };
        let resolved = match Url::parse(&s) {
            Ok(u) => u,
            Err(_) => transcoder
                .join(&s)
                .map_err(|e| RejectReason::InvalidResponse(format!("bad {name} {s:?}: {e}")))?,
        };
        Ok(Some(resolved.into()))
    };
    let required = |name: &str| -> Result<String, RejectReason> {
        url(name)?
            .ok_or_else(|| RejectReason::InvalidResponse(format!("start reply missing {name}")))
    };
    Ok(JobUrls {
        manifest_id: field("manifest_id").ok_or_else(|| {
            RejectReason::InvalidResponse("start reply missing manifest_id".into())
        })?,
        control_url: required("control_url")?,
        publish_url: required("publish_url")?,
        subscribe_url: required("subscribe_url")?,
        events_url: url("events_url")?,
    })
}

impl Gateway {
    /// Starts an LV2V job: discovers orchestrators, probes them concurrently, and tries the
    /// usable ones fastest first (paying through the signer, or offchain) until one accepts.
    /// Every orchestrator that failed or was skipped is listed in the error.
    #[instrument(skip_all, fields(model = %req.model_id))]
    pub async fn start_lv2v(&self, req: &StartRequest) -> Result<Lv2vJob, Error> {
        if req.model_id.trim().is_empty() {
            return Err(Error::Config("model_id is required".into()));
        }
        let caps = lv2v_capabilities(&req.model_id);
        let urls = self.discover(&[lv2v_cap(&req.model_id)]).await?;
        if urls.is_empty() {
            return Err(Error::NoOrchestrators);
        }
        let mut candidates = self.candidates(urls, Some(caps.clone()));
        while let Some((url, info)) = candidates.next().await {
            match self.try_start(&url, info, &caps, req).await {
                Ok(job) => return Ok(job),
                Err(reason) => {
                    debug!(orchestrator = %url, %reason, "start failed; trying the next one");
                    candidates.reject(url, reason);
                }
            }
        }
        Err(Error::NoOrchestratorAvailable {
            rejections: candidates.into_rejections(),
        })
    }

    async fn try_start(
        &self,
        orch_url: &str,
        info: OrchestratorInfo,
        caps: &Capabilities,
        req: &StartRequest,
    ) -> Result<Lv2vJob, RejectReason> {
        let inner = &self.inner;
        let transcoder = parse_http_url(&info.transcoder)
            .map_err(|e| RejectReason::InvalidResponse(format!("bad transcoder url: {e}")))?;
        let (headers, mut session) = match &inner.signer {
            Some(signer) => {
                let mut s = Payer::lv2v(
                    inner.clone(),
                    signer.clone(),
                    orch_url.to_owned(),
                    info.clone(),
                    caps.clone(),
                    req.wallet.clone(),
                )?;
                (s.opening().await?, Some(s))
            }
            None => (offchain_headers(&info), None),
        };
        let mut url = origin(&transcoder);
        url.set_path("/live-video-to-video");
        let client = inner
            .clients
            .for_url(&url)
            .map_err(|e| RejectReason::Unreachable(e.to_string()))?;
        let timeout = inner.settings.start_timeout;
        let sent = client
            .post(url.clone())
            .header(lpgw_proto::LIVEPEER_PAYMENT, &headers.payment)
            .header(lpgw_proto::LIVEPEER_SEGMENT, &headers.seg_creds)
            .header(http::header::AUTHORIZATION, AI_WORKER_AUTH)
            .json(&req.to_json())
            .timeout(timeout)
            .send()
            .await;
        let reply = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(body) => start_reply(status, &body, &transcoder),
                    Err(e) => Err(transport_reason(&e, timeout)),
                }
            }
            Err(e) => Err(transport_reason(&e, timeout)),
        };
        if let Some(s) = &mut session {
            if let Ok(urls) = &reply {
                s.set_manifest_id(&urls.manifest_id);
            }
            // The job start is the opening payment's post: only a job that started took it.
            s.handle_start_result(reply.is_ok());
        }
        let urls = reply?;
        debug!(orchestrator = %orch_url, manifest = %urls.manifest_id, "job started");
        Ok(Lv2vJob::spawn(
            inner.clone(),
            orch_url.to_owned(),
            info,
            urls,
            session,
        ))
    }
}

fn transport_reason(e: &reqwest::Error, timeout: std::time::Duration) -> RejectReason {
    if e.is_timeout() {
        RejectReason::Timeout(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
    } else {
        RejectReason::Unreachable(describe(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://o.example:8935").unwrap()
    }

    #[test]
    fn ok_reply_gives_urls_and_resolves_relative_ones() {
        let body = br#"{"publish_url":"https://o.example:8935/ai/trickle/ab12cd34",
            "subscribe_url":"/ai/trickle/ab12cd34-out",
            "control_url":"https://o.example:8935/ai/trickle/ab12cd34-control",
            "events_url":"https://o.example:8935/ai/trickle/ab12cd34-events",
            "manifest_id":"ab12cd34"}"#;
        let urls = start_reply(200, body, &base()).unwrap();
        assert_eq!(urls.manifest_id, "ab12cd34");
        assert_eq!(
            urls.subscribe_url,
            "https://o.example:8935/ai/trickle/ab12cd34-out"
        );
        assert_eq!(
            urls.events_url.as_deref(),
            Some("https://o.example:8935/ai/trickle/ab12cd34-events")
        );
    }

    #[test]
    fn missing_fields_are_invalid() {
        let no_control = br#"{"publish_url":"/a","subscribe_url":"/b","manifest_id":"m"}"#;
        assert!(matches!(
            start_reply(200, no_control, &base()),
            Err(RejectReason::InvalidResponse(_))
        ));
        let no_manifest = br#"{"publish_url":"/a","subscribe_url":"/b","control_url":"/c"}"#;
        assert!(matches!(
            start_reply(200, no_manifest, &base()),
            Err(RejectReason::InvalidResponse(_))
        ));
        assert!(matches!(
            start_reply(200, b"", &base()),
            Err(RejectReason::InvalidResponse(_))
        ));
    }

    #[test]
    fn errors_map_to_reasons() {
        assert_eq!(
            start_reply(503, b"insufficient capacity\n", &base()),
            Err(RejectReason::InsufficientCapacity)
        );
        assert_eq!(
            start_reply(403, b"auth token expired\n", &base()),
            Err(RejectReason::CredentialsRefused(
                "auth token expired".into()
            ))
        );
        assert_eq!(
            start_reply(400, b"ticketparams expired\n", &base()),
            Err(RejectReason::PaymentRefused {
                status: 400,
                body: "ticketparams expired".into()
            })
        );
        assert_eq!(
            start_reply(500, b"boom\n", &base()),
            Err(RejectReason::StartFailed {
                status: 500,
                body: "boom".into()
            })
        );
    }

    #[test]
    fn request_body_omits_unset_fields() {
        let mut r = StartRequest::new("noop");
        assert_eq!(r.to_json(), json!({"model_id":"noop"}));
        r.params = Some(json!({"prompt":"x"}));
        r.stream_id = Some("s".into());
        assert_eq!(
            r.to_json(),
            json!({"model_id":"noop","params":{"prompt":"x"},"stream_id":"s"})
        );
    }
}
