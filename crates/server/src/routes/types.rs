//! The request and response bodies of both API families. Handlers build these types and
//! `/openapi.json` is derived from them, so the document and the answers cannot drift.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::backend::Flow;
use crate::phase::Phase;

/// An empty or blank string counts as absent, as the SDK's wrapper treats it.
fn non_blank<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.filter(|s| !s.trim().is_empty()))
}

/// The body of `POST /start-job` and `POST /stream/start` (optional: an empty body starts
/// the default model). Unknown fields are ignored, as the existing clients send some.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct StartRequest {
    /// The model (or app) to run; the service's default model when absent.
    #[serde(default, deserialize_with = "non_blank")]
    pub(crate) model_id: Option<String>,
    /// Parameters for the runner (for Scope: `pipeline_ids`, `graph`, `input_mode`, prompts).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) params: Option<Map<String, Value>>,
    /// The caller's request id, passed to the orchestrator.
    #[serde(default, deserialize_with = "non_blank")]
    pub(crate) request_id: Option<String>,
    /// The caller's stream id, passed to the orchestrator.
    #[serde(default, deserialize_with = "non_blank")]
    pub(crate) stream_id: Option<String>,
    /// An orchestrator to use; honoured only for hosts on the operator's allow-list (any
    /// other value is answered 400).
    #[serde(default, deserialize_with = "non_blank")]
    pub(crate) orchestrator_url: Option<String>,
}

/// `POST /job/{id}/control`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ControlRequest {
    /// The message, written as it is on the job's control channel.
    #[schema(value_type = Object)]
    pub(crate) message: Map<String, Value>,
}

/// The methods `POST /stream/{id}/api` passes to a runner's API.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum ApiMethod {
    /// `GET`, the default.
    #[default]
    Get,
    /// `POST`.
    Post,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl ApiMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// `POST /stream/{id}/api`: one request to a Scope runner's own API.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ApiRequest {
    /// The HTTP method.
    #[serde(default)]
    pub(crate) method: ApiMethod,
    /// A runner API path, `/api/...`, without control characters.
    #[schema(pattern = "^/api/[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub(crate) path: String,
    /// The request body, if any.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) body: Option<Value>,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` while the service answers.
    pub(crate) status: &'static str,
    /// Live jobs.
    pub(crate) active_jobs: usize,
    /// The service's version.
    pub(crate) version: &'static str,
}

/// A job started through `POST /start-job`, with this service's URLs for it (never the
/// orchestrator's channel URLs: those are bearer capabilities).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobStarted {
    pub(crate) job_id: String,
    pub(crate) model_id: String,
    pub(crate) flow: Flow,
    #[serde(flatten)]
    pub(crate) urls: JobUrls,
}

/// A job's URLs on this service (Family A).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobUrls {
    /// `POST` JPEG frames here.
    pub(crate) publish_url: String,
    /// The WebSocket of processed frames.
    pub(crate) subscribe_url: String,
    /// `POST {"message": {...}}` here.
    pub(crate) control_url: String,
    /// The job's events (SSE).
    pub(crate) events_url: String,
}

impl JobUrls {
    pub(crate) fn of(id: &str) -> Self {
        Self {
            publish_url: format!("/stream/{id}/publish"),
            subscribe_url: format!("/ws/stream?job_id={id}"),
            control_url: format!("/job/{id}/control"),
            events_url: format!("/job/{id}/events"),
        }
    }
}

/// A stream started through `POST /stream/start`, with this service's URLs for it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamStarted {
    pub(crate) stream_id: String,
    pub(crate) model_id: String,
    pub(crate) flow: Flow,
    #[serde(flatten)]
    pub(crate) urls: StreamUrls,
}

/// A stream's URLs on this service (Family B).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamUrls {
    /// `POST` JPEG frames here.
    pub(crate) publish_url: String,
    /// The WebSocket of processed frames.
    pub(crate) subscribe_url: String,
    /// `POST` parameter updates here.
    pub(crate) control_url: String,
    /// The stream's events (SSE).
    pub(crate) events_url: String,
    /// The newest processed frame.
    pub(crate) frame_url: String,
}

impl StreamUrls {
    pub(crate) fn of(id: &str) -> Self {
        Self {
            publish_url: format!("/stream/{id}/publish"),
            subscribe_url: format!("/ws/stream?job_id={id}"),
            control_url: format!("/stream/{id}/control"),
            events_url: format!("/stream/{id}/events"),
            frame_url: format!("/stream/{id}/frame"),
        }
    }
}

/// One of the caller's jobs (`GET /jobs`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobSummary {
    pub(crate) job_id: String,
    pub(crate) model_id: String,
    pub(crate) flow: Flow,
    /// Seconds since the Unix epoch.
    pub(crate) created_at: f64,
    /// The orchestrator (or runner) serving the job.
    pub(crate) orchestrator_url: String,
    pub(crate) media_started: bool,
    pub(crate) phase: Phase,
    /// Wei paid for the job, a decimal string (wei outgrow JSON's safe integers).
    pub(crate) spent_wei: String,
    /// The same in USD at the configured ETH price.
    pub(crate) spent_usd: f64,
}

/// `GET /job/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobDetail {
    #[serde(flatten)]
    pub(crate) summary: JobSummary,
    #[serde(flatten)]
    pub(crate) urls: JobUrls,
    pub(crate) has_payment_session: bool,
    #[serde(flatten)]
    pub(crate) progress: Progress,
}

/// A live job's error, spending and media counters (in both families' status answers).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Progress {
    /// Why the job failed, once it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) spend: Spend,
    /// The caller's key's spending over the budget window (live jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) key_spend: Option<Value>,
    /// A Scope runner's state (pipelines, restarts), for Scope jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) scope: Option<Value>,
    /// The payment session's figures, for paid jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) payments: Option<Value>,
    /// Frame counters, once media has started (absent before).
    #[serde(flatten)]
    pub(crate) media: MediaProgress,
}

/// A job's frame counters, present once media has started.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct MediaProgress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frames_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frames_out: Option<u64>,
    /// Frames dropped for any reason (lag, invalid, stale `seq`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frames_dropped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frames_dropped_stale_seq: Option<u64>,
    /// Who holds the input: `http` or `websocket`; `null` when nobody does.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) input_source: Option<Option<&'static str>>,
    /// The highest `seq` accepted, once one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_seq: Option<u64>,
}

/// What a job has paid.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Spend {
    /// Payments accepted.
    pub(crate) payments: u64,
    /// Their value in wei, a decimal string.
    pub(crate) spent_wei: String,
    /// The same in USD at the configured ETH price.
    pub(crate) spent_usd: f64,
}

/// `GET /stream/{id}/status`: a live stream, or one that ended recently (then without the
/// live fields).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamStatus {
    pub(crate) stream_id: String,
    pub(crate) phase: Phase,
    pub(crate) model_id: String,
    pub(crate) flow: Flow,
    /// Seconds since the Unix epoch.
    pub(crate) created_at: f64,
    /// Live streams only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) orchestrator_url: Option<String>,
    /// Live streams only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) media_started: Option<bool>,
    /// Live streams: their progress; ended ones: the error and the spend.
    #[serde(flatten)]
    pub(crate) progress: Progress,
}

/// `GET /streams`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamList {
    pub(crate) streams: Vec<StreamSummary>,
}

/// One of the caller's streams.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamSummary {
    pub(crate) stream_id: String,
    pub(crate) model_id: String,
    pub(crate) flow: Flow,
    pub(crate) phase: Phase,
    /// Seconds since the Unix epoch.
    pub(crate) created_at: f64,
    /// Wei paid, a decimal string.
    pub(crate) spent_wei: String,
    pub(crate) spent_usd: f64,
}

impl From<JobSummary> for StreamSummary {
    fn from(j: JobSummary) -> Self {
        Self {
            stream_id: j.job_id,
            model_id: j.model_id,
            flow: j.flow,
            phase: j.phase,
            created_at: j.created_at,
            spent_wei: j.spent_wei,
            spent_usd: j.spent_usd,
        }
    }
}

/// What an acknowledgement says happened.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Done {
    /// The message went onto the control channel.
    Sent,
    /// The job was stopped.
    Stopped,
}

/// The answer of a Family A control or stop.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobAck {
    pub(crate) status: Done,
    pub(crate) job_id: String,
}

/// The answer of a Family B control or stop.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamAck {
    pub(crate) status: Done,
    pub(crate) stream_id: String,
}

/// Whether a published frame was fed.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PublishStatus {
    /// Fed to the encoder.
    Ok,
    /// Not fed: see `reason`.
    Skipped,
}

/// Why a frame was skipped.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SkipReason {
    /// Its `seq` was not above the highest already accepted: it would go back in time.
    StaleSeq,
}

/// `POST /stream/{id}/publish`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Published {
    pub(crate) status: PublishStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<SkipReason>,
    /// The frame's `seq`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seq: Option<u64>,
    /// With `skipped`: the highest `seq` accepted so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_seq: Option<u64>,
}

/// One orchestrator or runner a start tried, and why it did not serve.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct RejectionBody {
    /// The orchestrator's or runner's URL.
    pub(crate) url: String,
    pub(crate) reason: String,
}

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: String,
    /// Start failures: each candidate tried, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rejections: Option<Vec<RejectionBody>>,
    /// 402: the budget that ran out.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) budget: Option<Value>,
    /// 429 from a rate limit: the `Retry-After` value, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_secs: Option<u64>,
    /// Start failures: whether trying again later may succeed (capacity, network) rather
    /// than fail the same way (a refusal, a price ceiling, bad input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retryable: Option<bool>,
}

/// One server-sent event of `/job/{id}/events` and `/stream/{id}/events`: `data` is a JSON
/// object (the job's progress, a runner event, or its end). Only documents the stream.
#[allow(dead_code)] // Built by `sse`, which frames the events itself; this type describes them.
#[derive(Debug, ToSchema)]
pub(crate) struct SseEvent {
    /// The event type, when not `message`.
    pub(crate) event: Option<String>,
    /// A JSON object, serialized.
    pub(crate) data: String,
    pub(crate) id: Option<String>,
    pub(crate) retry: Option<u64>,
}
