//! One job's payment session: drives [`PaymentState`] with the remote signer and the
//! orchestrator.

use std::sync::Arc;
use std::time::Instant;

use lpgw_proto::{Capabilities, OrchestratorInfo, PaymentResult, SegData};
use prost::Message as _;
use serde_json::Value;
use tracing::{debug, warn};

use crate::error::RejectReason;
use crate::gateway::Inner;
use crate::http::{describe, snippet};
use crate::payment::state::{
    Action, InitialFailure, PaymentState, PostOutcome, SignerOutcome, StopReason,
};
use crate::signer::{PaymentRequest, Signer, SignerReply};

/// The two payment headers of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PaymentHeaders {
    /// `Livepeer-Payment` (empty offchain).
    pub(crate) payment: String,
    /// `Livepeer-Segment`.
    pub(crate) seg_creds: String,
}

/// Payment counters of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PaymentStats {
    /// Payments accepted by the orchestrator, the opening one included.
    pub paid: u64,
    /// Payment cycles that ended without paying (nothing due, or a failure).
    pub skipped: u64,
    /// Orchestrator-info refreshes after a signer 480.
    pub refreshes: u64,
    /// Expected value in wei of the accepted payments: per payment, its tickets times
    /// `faceValue × winProb / 2^256` as the signer minted them. This is what the
    /// orchestrator credits to the job's balance (a winning ticket pays its full face value,
    /// on average this).
    pub value_wei: u128,
}

/// How a payment cycle ended.
#[derive(Debug)]
pub(crate) enum CycleEnd {
    /// Headers are ready to be posted.
    Post(PaymentHeaders),
    /// Nothing more to do until the next segment.
    Idle,
    /// Payments are over.
    Stop(StopReason, String),
}

/// A job's payment session.
pub(crate) struct PaymentSession {
    inner: Arc<Inner>,
    signer: Arc<Signer>,
    orch_url: String,
    info: OrchestratorInfo,
    caps: Capabilities,
    manifest_id: Option<String>,
    signer_state: Option<Value>,
    headers: Option<PaymentHeaders>,
    machine: PaymentState,
    last_error: String,
    /// Value of the headers last signed (credited once they are accepted).
    signed_value: u128,
    /// Value of the accepted payments.
    paid_value: u128,
}

impl std::fmt::Debug for PaymentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentSession")
            .field("orch_url", &self.orch_url)
            .field("manifest_id", &self.manifest_id)
            .finish_non_exhaustive()
    }
}

/// Offchain credentials: no payment, and segment credentials that carry the orchestrator's
/// auth token (spec §5.9).
pub(crate) fn offchain_headers(info: &OrchestratorInfo) -> PaymentHeaders {
    let seg = SegData {
        auth_token: info.auth_token.clone(),
        ..SegData::default()
    };
    PaymentHeaders {
        payment: String::new(),
        seg_creds: lpgw_proto::encode_seg_data(&seg),
    }
}

impl PaymentSession {
    pub(crate) fn new(
        inner: Arc<Inner>,
        signer: Arc<Signer>,
        orch_url: String,
        info: OrchestratorInfo,
        caps: Capabilities,
    ) -> Self {
        let s = &inner.settings;
        let machine = PaymentState::new(s.payment_interval, s.max_refreshes);
        Self {
            inner,
            signer,
            orch_url,
            info,
            caps,
            manifest_id: None,
            signer_state: None,
            headers: None,
            machine,
            last_error: String::new(),
            signed_value: 0,
            paid_value: 0,
        }
    }

    pub(crate) fn set_manifest_id(&mut self, id: &str) {
        self.manifest_id = Some(id.to_owned());
    }

    pub(crate) fn stats(&self) -> PaymentStats {
        let s = self.machine.stats();
        PaymentStats {
            paid: s.paid,
            skipped: s.skipped,
            refreshes: s.refreshes,
            value_wei: self.paid_value,
        }
    }

    /// Runs the opening cycle up to its `Post`: the headers for the job start.
    pub(crate) async fn opening(&mut self) -> Result<PaymentHeaders, RejectReason> {
        match self.run_cycle().await {
            CycleEnd::Post(h) => Ok(h),
            CycleEnd::Stop(reason, detail) => Err(opening_rejection(reason, detail, &self.inner)),
            CycleEnd::Idle => Err(RejectReason::Signer(
                "payment cycle ended unexpectedly".into(),
            )),
        }
    }

    /// Records how the job start went (the opening payment's `Post`).
    pub(crate) fn handle_start_result(&mut self, accepted: bool) {
        let outcome = if accepted {
            self.paid_value = self.paid_value.saturating_add(self.signed_value);
            PostOutcome::Ok
        } else {
            PostOutcome::Failed
        };
        self.machine.handle_posted(Instant::now(), outcome);
    }

    /// An output segment arrived: pay if due. Returns a stop reason when payments are over.
    pub(crate) async fn handle_segment(&mut self) -> Option<StopReason> {
        self.machine.handle_segment(Instant::now());
        loop {
            match self.run_cycle().await {
                CycleEnd::Idle => return None,
                CycleEnd::Stop(reason, detail) => {
                    warn!(?reason, %detail, "payments stopped");
                    return Some(reason);
                }
                CycleEnd::Post(h) => {
                    let outcome = self.post(&h).await;
                    if matches!(outcome, PostOutcome::Ok) {
                        self.paid_value = self.paid_value.saturating_add(self.signed_value);
                    }
                    self.machine.handle_posted(Instant::now(), outcome);
                }
            }
        }
    }

    /// Performs actions until the machine wants a `Post`, goes idle or stops.
    async fn run_cycle(&mut self) -> CycleEnd {
        loop {
            let Some(action) = self.machine.poll_action(Instant::now()) else {
                return CycleEnd::Idle;
            };
            match action {
                Action::Sign => {
                    let outcome = self.sign().await;
                    self.machine.handle_signer(Instant::now(), outcome);
                }
                Action::Refresh => {
                    let ok = self.refresh().await;
                    self.machine.handle_refreshed(Instant::now(), ok);
                }
                Action::Post => match self.headers.take() {
                    Some(h) => return CycleEnd::Post(h),
                    // Invariant: `Post` only follows a `Paid` reply, which stored headers.
                    None => return CycleEnd::Stop(StopReason::SessionGone, "no headers".into()),
                },
                Action::Stop(reason) => return CycleEnd::Stop(reason, self.last_error.clone()),
            }
        }
    }

    async fn sign(&mut self) -> SignerOutcome {
        let info = self.info.encode_to_vec();
        let caps = self.caps.encode_to_vec();
        let req = PaymentRequest {
            orchestrator: &info,
            capabilities: Some(&caps),
            manifest_id: self.manifest_id.as_deref(),
            kind: "lv2v",
            app: None,
            max_price: None,
            state: self.signer_state.as_ref(),
        };
        match self.signer.generate_live_payment(&req).await {
            SignerReply::Paid {
                payment,
                seg_creds,
                state,
            } => {
                self.signer_state = Some(state);
                self.signed_value = crate::payment::value::payment_value_wei(&payment);
                self.headers = Some(PaymentHeaders { payment, seg_creds });
                SignerOutcome::Paid
            }
            SignerReply::RefreshSession => {
                debug!(orchestrator = %self.orch_url, "signer asks for fresh orchestrator info");
                SignerOutcome::RefreshSession
            }
            SignerReply::PriceExceeded(msg) => {
                self.last_error = msg;
                SignerOutcome::PriceExceeded
            }
            SignerReply::NoTickets => {
                debug!("signer: nothing to pay this cycle");
                SignerOutcome::NoTickets
            }
            SignerReply::Failed(msg) => {
                warn!(error = %msg, "remote signer failed");
                self.last_error = msg;
                SignerOutcome::Failed
            }
        }
    }

    async fn refresh(&mut self) -> bool {
        let url = if self.info.transcoder.is_empty() {
            &self.orch_url
        } else {
            &self.info.transcoder
        };
        let url = url.clone();
        match self.inner.fetch_info(&url, Some(&self.caps), true).await {
            Ok(info) => {
                self.info = info;
                true
            }
            Err(reason) => {
                warn!(orchestrator = %url, %reason, "refreshing orchestrator info failed");
                self.last_error = reason.to_string();
                false
            }
        }
    }

    /// `POST {transcoder}/payment`; a decodable reply updates the orchestrator info.
    async fn post(&mut self, h: &PaymentHeaders) -> PostOutcome {
        let url = match crate::discovery::parse_http_url(&self.info.transcoder) {
            Ok(u) => {
                let mut u = crate::discovery::origin(&u);
                u.set_path("/payment");
                u
            }
            Err(_) => return PostOutcome::Failed,
        };
        let Ok(client) = self.inner.clients.for_url(&url) else {
            return PostOutcome::Failed;
        };
        let resp = client
            .post(url.clone())
            .header(lpgw_proto::LIVEPEER_PAYMENT, &h.payment)
            .header(lpgw_proto::LIVEPEER_SEGMENT, &h.seg_creds)
            .timeout(self.inner.settings.payment_timeout)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %describe(&e), "payment post failed");
                return PostOutcome::Failed;
            }
        };
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        match status {
            200 => {
                if let Ok(PaymentResult { info: Some(info) }) = PaymentResult::decode(body.as_ref())
                {
                    self.info = info;
                }
                debug!("payment accepted");
                PostOutcome::Ok
            }
            404 => PostOutcome::Gone,
            _ => {
                warn!(status, body = %snippet(&body), "orchestrator refused payment");
                PostOutcome::Failed
            }
        }
    }
}

fn opening_rejection(reason: StopReason, detail: String, inner: &Inner) -> RejectReason {
    match reason {
        StopReason::PriceExceeded => RejectReason::SignerPriceExceeded(detail),
        StopReason::InitialFailed(InitialFailure::RefreshLimit) => {
            RejectReason::RefreshLimit(inner.settings.max_refreshes)
        }
        StopReason::InitialFailed(InitialFailure::NoTickets) => {
            RejectReason::Signer("no tickets for the opening payment (482)".into())
        }
        StopReason::InitialFailed(InitialFailure::RefreshFailed) => {
            RejectReason::Signer(format!("refresh after 480 failed: {detail}"))
        }
        StopReason::InitialFailed(InitialFailure::Signer)
        | StopReason::SessionGone
        | StopReason::Refused => RejectReason::Signer(detail),
    }
}
