//! The one payment driver, for both flows: it drives [`PaymentState`] with the remote
//! signer and the orchestrator, holds each payment's value in the job's [`Wallet`] before
//! sending it, checks every price the orchestrator hands back against the [`Ceiling`], and
//! logs every accepted payment with its amount and unit.
//!
//! What differs between flows is where a payment goes and how fresh orchestrator info is
//! fetched ([`Venue`]); what a status code means does not ([`PostOutcome::from_status`]).
//!
//! [`Ceiling`]: crate::Ceiling

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use lpgw_proto::{Capabilities, OrchestratorInfo, PaymentResult, SegData};
use prost::Message as _;
use serde_json::{Value, json};
use tracing::{debug, info, warn};
use url::Url;

use crate::budget::{BudgetExhausted, Hold, PaymentRecord, Wallet};
use crate::ceiling::Ceiling;
use crate::discovery::{origin, parse_http_url};
use crate::error::RejectReason;
use crate::gateway::Inner;
use crate::http::{describe, snippet};
use crate::payment::state::{
    Action, InitialFailure, PaymentState, PostOutcome, SignerOutcome, StopReason,
};
use crate::payment::value::payment_value_wei;
use crate::runner::price::{PriceUnit, RunnerPrice};
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

/// Where a flow's payments go and how it refreshes orchestrator info.
#[derive(Debug, Clone)]
pub(crate) enum Venue {
    /// Legacy: `POST {transcoder}/payment`; refresh with GetOrchestrator
    /// (`ignoreCapacityCheck`).
    Lv2v {
        /// The orchestrator as configured or discovered.
        orch_url: String,
        /// The job's capabilities, sent to the signer and on refresh.
        caps: Capabilities,
    },
    /// Live runner: `POST {payment_url}`; refresh with `POST /refresh-payment` (spec §5.7).
    Runner {
        /// Session-scoped payment URL from the challenge.
        payment_url: String,
        /// `Livepeer-Payer-Address` / refresh `sender`.
        payer_address: String,
        /// The signer's `app`.
        app: String,
    },
}

impl Venue {
    fn flow(&self) -> &'static str {
        match self {
            Self::Lv2v { .. } => "lv2v",
            Self::Runner { .. } => "live-runner",
        }
    }
}

/// How a payment cycle ended.
#[derive(Debug)]
enum CycleEnd {
    /// Headers are ready to be posted (their value is held in the wallet).
    Post(PaymentHeaders),
    /// Nothing more to do until the next trigger.
    Idle,
    /// Payments are over.
    Stop(StopReason, String),
}

/// Pays one job or session through the remote signer.
pub(crate) struct Payer {
    inner: Arc<Inner>,
    signer: Arc<Signer>,
    venue: Venue,
    info: OrchestratorInfo,
    manifest_id: Option<String>,
    unit: PriceUnit,
    max_price: Option<RunnerPrice>,
    wallet: Wallet,
    machine: PaymentState,
    state: Option<Value>,
    headers: Option<PaymentHeaders>,
    signed_value: u128,
    hold: Option<Hold>,
    paid_value: u128,
    /// Set when a price the orchestrator handed back is above the ceiling.
    over_ceiling: Option<String>,
    /// Set when a budget refused a payment.
    exhausted: Option<BudgetExhausted>,
    /// A runner asked for fresh parameters before its first payment: only a new challenge
    /// gives them.
    needs_fresh_challenge: bool,
    has_paid: bool,
    last_error: String,
    /// Cycles in a row the signer answered 482, and when the streak began.
    no_tickets: u32,
    no_tickets_since: Option<Instant>,
    /// The period of the funding loop, when the orchestrator named one.
    interval_override: Option<Duration>,
}

/// Cycles in a row of signer 482 (lasting `Settings::wedge_after`) after which payments
/// count as wedged (go-livepeer #4077: the signer keeps answering 482 until the orchestrator
/// releases the session for want of balance).
pub(crate) const MAX_NO_TICKETS: u32 = 3;

impl std::fmt::Debug for Payer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payer")
            .field("flow", &self.venue.flow())
            .field("manifest_id", &self.manifest_id)
            .finish_non_exhaustive()
    }
}

/// A price's wei and the units it covers, as non-negative integers (a negative price is 0,
/// a non-positive unit count 1).
fn price_parts(p: &lpgw_proto::PriceInfo) -> (u128, u128) {
    (
        u128::try_from(p.price_per_unit.max(0)).unwrap_or(0),
        u128::try_from(p.pixels_per_unit.max(1)).unwrap_or(1),
    )
}

/// `Err(reason)` when `info`'s price is above the ceiling for `unit` (legacy prices are
/// per pixel, runner prices per `unit`).
pub(crate) fn check_info_price(
    ceiling: &Ceiling,
    venue: &Venue,
    unit: PriceUnit,
    info: &OrchestratorInfo,
) -> Result<(), String> {
    let Some(p) = &info.price_info else {
        return Ok(());
    };
    match venue {
        Venue::Lv2v { .. } => ceiling.check_lv2v(p.price_per_unit, p.pixels_per_unit),
        Venue::Runner { .. } => {
            let max = ceiling.max_wei(unit);
            let (ppu, px) = price_parts(p);
            if ppu > max.saturating_mul(px) {
                let offered = RunnerPrice {
                    wei: ppu.div_ceil(px),
                    unit,
                };
                return Err(format!(
                    "price {} is above the ceiling {}",
                    offered.describe(ceiling.eth_usd),
                    ceiling.max_price(unit).describe(ceiling.eth_usd)
                ));
            }
            Ok(())
        }
    }
}

/// The orchestrator info in a 2xx payment answer: a binary `PaymentResult`, or (go-livepeer
/// PR #4029) JSON `{payment_params: <base64 OrchestratorInfo>, ...}`. `None` when the body
/// carries neither.
pub(crate) fn payment_reply_info(content_type: &str, body: &[u8]) -> Option<OrchestratorInfo> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let looks_json = mime == "application/json" || body.first() == Some(&b'{');
    if looks_json && let Ok(v) = serde_json::from_slice::<Value>(body) {
        let params = v.get("payment_params")?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(params.trim())
            .ok()?;
        return OrchestratorInfo::decode(bytes.as_slice()).ok();
    }
    match PaymentResult::decode(body) {
        Ok(PaymentResult { info: Some(info) }) => Some(info),
        _ => None,
    }
}

impl Payer {
    /// A payer for a legacy job on `orch_url`, whose opening payment is armed. Refuses an
    /// orchestrator priced above the ceiling.
    pub(crate) fn lv2v(
        inner: Arc<Inner>,
        signer: Arc<Signer>,
        orch_url: String,
        info: OrchestratorInfo,
        caps: Capabilities,
        wallet: Wallet,
    ) -> Result<Self, RejectReason> {
        let venue = Venue::Lv2v { orch_url, caps };
        let unit = PriceUnit::PixelSeconds720p;
        check_info_price(&inner.settings.ceiling, &venue, unit, &info)
            .map_err(RejectReason::OverPriceCeiling)?;
        let max_price = info.price_info.as_ref().and_then(|p| {
            inner
                .settings
                .ceiling
                .lv2v_signer_max(p.price_per_unit, p.pixels_per_unit)
        });
        Ok(Self::new(
            inner, signer, venue, info, None, unit, max_price, wallet,
        ))
    }

    /// A payer for a live-runner session answering a 402 challenge, whose opening payment is
    /// armed. Refuses a challenge priced above the ceiling, whatever discovery said: the
    /// challenge is what the signer will pay.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn runner(
        inner: Arc<Inner>,
        signer: Arc<Signer>,
        challenge: &crate::runner::pay::Challenge,
        unit: PriceUnit,
        max_price: Option<RunnerPrice>,
        app: String,
        payer_address: String,
        wallet: Wallet,
    ) -> Result<Self, RejectReason> {
        let info = challenge.info().map_err(RejectReason::InvalidResponse)?;
        let venue = Venue::Runner {
            payment_url: challenge.payment_url.clone(),
            payer_address,
            app,
        };
        check_info_price(&inner.settings.ceiling, &venue, unit, &info)
            .map_err(RejectReason::OverRunnerCeiling)?;
        // The signer is never handed more than the ceiling, discovery price or not.
        let cap = inner.settings.ceiling.max_price(unit);
        let max_price = Some(max_price.map_or(cap, |m| RunnerPrice {
            wei: m.wei.min(cap.wei),
            unit,
        }));
        let mut payer = Self::new(
            inner,
            signer,
            venue,
            info,
            Some(challenge.manifest_id.clone()),
            unit,
            max_price,
            wallet,
        );
        payer.interval_override = challenge
            .payment_interval
            .map(|d| d.mul_f64(0.6).max(Duration::from_millis(100)));
        Ok(payer)
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        inner: Arc<Inner>,
        signer: Arc<Signer>,
        venue: Venue,
        info: OrchestratorInfo,
        manifest_id: Option<String>,
        unit: PriceUnit,
        max_price: Option<RunnerPrice>,
        wallet: Wallet,
    ) -> Self {
        let s = &inner.settings;
        let interval = match venue {
            Venue::Lv2v { .. } => s.payment_interval,
            Venue::Runner { .. } => s.live.payment_interval,
        };
        let machine = PaymentState::new(interval, s.max_refreshes);
        Self {
            inner,
            signer,
            venue,
            info,
            manifest_id,
            unit,
            max_price,
            wallet,
            machine,
            state: None,
            headers: None,
            signed_value: 0,
            hold: None,
            paid_value: 0,
            over_ceiling: None,
            exhausted: None,
            needs_fresh_challenge: false,
            has_paid: false,
            last_error: String::new(),
            no_tickets: 0,
            no_tickets_since: None,
            interval_override: None,
        }
    }

    /// The manifest (session) ID payments are for, once known.
    pub(crate) fn set_manifest_id(&mut self, id: &str) {
        self.manifest_id = Some(id.to_owned());
    }

    /// The period of this flow's payment cycles: for a live runner whose challenge named a
    /// `payment_interval_ms`, 60 % of it (so each payment lands well before the next
    /// billing); else the configured one.
    pub(crate) fn interval(&self) -> Duration {
        if let Some(d) = self.interval_override {
            return d;
        }
        let s = &self.inner.settings;
        match self.venue {
            Venue::Lv2v { .. } => s.payment_interval,
            Venue::Runner { .. } => s.live.payment_interval,
        }
    }

    /// The price unit the signer bills.
    pub(crate) fn unit(&self) -> PriceUnit {
        self.unit
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> PaymentStats {
        let s = self.machine.stats();
        PaymentStats {
            paid: s.paid,
            skipped: s.skipped,
            refreshes: s.refreshes,
            value_wei: self.paid_value,
        }
    }

    /// The budget refusal that stopped payments, if any.
    pub(crate) fn exhausted(&self) -> Option<&BudgetExhausted> {
        self.exhausted.as_ref()
    }

    /// Whether the opening payment failed only because a runner wants a fresh challenge.
    pub(crate) fn needs_fresh_challenge(&self) -> bool {
        self.needs_fresh_challenge
    }

    /// Runs the opening cycle up to its `Post`: the headers for the job start or the paid
    /// reservation. Their value is held in the wallet until [`Self::handle_start_result`].
    pub(crate) async fn opening(&mut self) -> Result<PaymentHeaders, RejectReason> {
        match self.run_cycle().await {
            CycleEnd::Post(h) => Ok(h),
            CycleEnd::Stop(reason, detail) => Err(self.opening_rejection(reason, detail)),
            CycleEnd::Idle => Err(RejectReason::Signer(
                "payment cycle ended unexpectedly".into(),
            )),
        }
    }

    /// Records how the paid start or reservation went (the opening payment's `Post`): only
    /// an accepted one took the payment.
    pub(crate) fn handle_start_result(&mut self, accepted: bool) {
        let outcome = if accepted {
            PostOutcome::Ok
        } else {
            PostOutcome::Failed
        };
        self.finish_post(outcome);
    }

    /// A trigger (an output segment, or the funding timer): pays if a cycle is due.
    /// Returns why payments stopped, when they did.
    pub(crate) async fn pay_due(&mut self) -> Option<StopReason> {
        self.machine.handle_segment(Instant::now());
        loop {
            match self.run_cycle().await {
                CycleEnd::Idle if self.is_wedged() => {
                    warn!(
                        flow = self.venue.flow(),
                        cycles = self.no_tickets,
                        "signer answers 482 cycle after cycle: payments are wedged"
                    );
                    return Some(StopReason::Wedged);
                }
                CycleEnd::Idle => return None,
                CycleEnd::Stop(reason, detail) => {
                    warn!(?reason, %detail, flow = self.venue.flow(), "payments stopped");
                    return Some(reason);
                }
                CycleEnd::Post(h) => {
                    let outcome = self.post(&h).await;
                    self.finish_post(outcome);
                }
            }
        }
    }

    /// Whether the signer has answered 482 for too many cycles and too long.
    fn is_wedged(&self) -> bool {
        self.has_paid
            && self.no_tickets >= MAX_NO_TICKETS
            && self
                .no_tickets_since
                .is_some_and(|t| t.elapsed() >= self.inner.settings.wedge_after)
    }

    fn finish_post(&mut self, outcome: PostOutcome) {
        let hold = self.hold.take();
        if outcome == PostOutcome::Ok {
            if let Some(h) = hold {
                h.commit();
            }
            self.has_paid = true;
            self.paid_value = self.paid_value.saturating_add(self.signed_value);
            self.log_payment();
        }
        self.machine.handle_posted(Instant::now(), outcome);
    }

    fn log_payment(&self) {
        let ceiling = &self.inner.settings.ceiling;
        let price = match &self.info.price_info {
            None => "unpriced".to_owned(),
            Some(p) => match self.venue {
                Venue::Lv2v { .. } => ceiling.describe_lv2v(p.price_per_unit, p.pixels_per_unit),
                Venue::Runner { .. } => {
                    let (ppu, px) = price_parts(p);
                    RunnerPrice {
                        wei: ppu / px,
                        unit: self.unit,
                    }
                    .describe(ceiling.eth_usd)
                }
            },
        };
        let record = PaymentRecord {
            flow: self.venue.flow(),
            orchestrator: self.target(),
            manifest_id: self.manifest_id.clone().unwrap_or_default(),
            value_wei: self.signed_value,
            usd: ceiling.usd(self.signed_value),
            unit: self.unit.as_str(),
            price,
        };
        info!(
            flow = record.flow,
            orchestrator = %record.orchestrator,
            manifest = %record.manifest_id,
            value_wei = %record.value_wei,
            usd = format!("{:.6}", record.usd),
            unit = record.unit,
            price = %record.price,
            "payment accepted"
        );
        self.wallet.record(&record);
    }

    /// The orchestrator origin payments go to, for logs (never a capability URL).
    fn target(&self) -> String {
        let url = match &self.venue {
            Venue::Lv2v { orch_url, .. } => orch_url.as_str(),
            Venue::Runner { payment_url, .. } => payment_url.as_str(),
        };
        parse_http_url(url)
            .map(|u| origin(&u).as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default()
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
                Action::Post => {
                    let Some(h) = self.headers.take() else {
                        // Invariant: `Post` only follows a `Paid` reply, which stored headers.
                        return CycleEnd::Stop(StopReason::SessionGone, "no headers".into());
                    };
                    match self.wallet.hold(self.signed_value) {
                        Ok(hold) => {
                            self.hold = Some(hold);
                            return CycleEnd::Post(h);
                        }
                        Err(e) => {
                            warn!(flow = self.venue.flow(), error = %e, "payment withheld");
                            self.last_error = e.to_string();
                            self.exhausted = Some(e);
                            self.machine.handle_budget_exhausted(Instant::now());
                        }
                    }
                }
                Action::Stop(reason) => return CycleEnd::Stop(reason, self.last_error.clone()),
            }
        }
    }

    async fn sign(&mut self) -> SignerOutcome {
        if let Some(why) = &self.over_ceiling {
            // Never ask the signer to pay a price above the ceiling.
            self.last_error.clone_from(why);
            return SignerOutcome::PriceExceeded;
        }
        let info = self.info.encode_to_vec();
        let caps = match &self.venue {
            Venue::Lv2v { caps, .. } => Some(caps.encode_to_vec()),
            Venue::Runner { .. } => None,
        };
        let app = match &self.venue {
            Venue::Runner { app, .. } if !app.is_empty() => Some(app.as_str()),
            _ => None,
        };
        let max_price = self.max_price.map(|p| {
            // A JSON integer keeps every wei; a ceiling past u64 is capped below itself.
            json!({"price": u64::try_from(p.wei).unwrap_or(u64::MAX), "currency": "wei", "unit": p.unit.as_str()})
        });
        let req = PaymentRequest {
            orchestrator: &info,
            capabilities: caps.as_deref(),
            manifest_id: self.manifest_id.as_deref(),
            kind: self.unit.payment_type(),
            app,
            max_price,
            state: self.state.as_ref(),
        };
        let reply = self.signer.generate_live_payment(&req).await;
        match reply {
            SignerReply::Paid {
                payment,
                seg_creds,
                state,
            } => {
                self.no_tickets = 0;
                self.no_tickets_since = None;
                self.state = Some(state);
                self.signed_value = payment_value_wei(&payment);
                self.headers = Some(PaymentHeaders { payment, seg_creds });
                debug!(flow = self.venue.flow(), value_wei = %self.signed_value, "payment signed");
                SignerOutcome::Paid
            }
            SignerReply::RefreshSession => {
                debug!(
                    flow = self.venue.flow(),
                    "signer asks for fresh orchestrator info"
                );
                SignerOutcome::RefreshSession
            }
            SignerReply::PriceExceeded(msg) => {
                self.last_error = msg;
                SignerOutcome::PriceExceeded
            }
            SignerReply::NoTickets => {
                self.no_tickets += 1;
                self.no_tickets_since.get_or_insert_with(Instant::now);
                debug!(
                    in_a_row = self.no_tickets,
                    "signer: nothing to pay this cycle"
                );
                SignerOutcome::NoTickets
            }
            SignerReply::Failed(msg) => {
                warn!(error = %msg, "remote signer failed");
                self.last_error = msg;
                SignerOutcome::Failed
            }
        }
    }

    /// Takes fresh orchestrator info, refusing (for the next cycle) a price above the
    /// ceiling.
    fn update_info(&mut self, info: OrchestratorInfo) {
        if let Err(why) =
            check_info_price(&self.inner.settings.ceiling, &self.venue, self.unit, &info)
        {
            warn!(flow = self.venue.flow(), %why, "orchestrator raised its price above the ceiling");
            self.over_ceiling = Some(why);
        }
        self.info = info;
    }

    async fn refresh(&mut self) -> bool {
        let fresh = match &self.venue {
            Venue::Lv2v { orch_url, caps } => {
                let url = if self.info.transcoder.is_empty() {
                    orch_url.clone()
                } else {
                    self.info.transcoder.clone()
                };
                self.inner
                    .fetch_info(&url, Some(caps), true)
                    .await
                    .map_err(|r| r.to_string())
            }
            Venue::Runner { .. } if !self.has_paid => {
                // No price is pinned before the first payment, so `/refresh-payment` has
                // nothing to refresh (409): a new challenge is the only way.
                self.needs_fresh_challenge = true;
                Err("payment parameters went stale before the first payment".into())
            }
            Venue::Runner {
                payment_url,
                payer_address,
                ..
            } => {
                let (url, sender) = (payment_url.clone(), payer_address.clone());
                self.refresh_runner(&url, &sender).await
            }
        };
        match fresh {
            Ok(info) => {
                self.update_info(info);
                true
            }
            Err(e) => {
                warn!(flow = self.venue.flow(), error = %e, "refreshing payment parameters failed");
                self.last_error = e;
                false
            }
        }
    }

    /// `POST {orchestrator}/refresh-payment` for the session: fresh payment parameters with
    /// the pinned price (spec §5.7).
    async fn refresh_runner(
        &self,
        payment_url: &str,
        sender: &str,
    ) -> Result<OrchestratorInfo, String> {
        let base = parse_http_url(payment_url).map_err(|e| e.to_string())?;
        let mut url = origin(&base);
        url.set_path("/refresh-payment");
        let client = self
            .inner
            .clients
            .for_url(&url)
            .map_err(|e| e.to_string())?;
        let manifest = self.manifest_id.clone().unwrap_or_default();
        let resp = client
            .post(url)
            .json(&json!({"sender": sender, "manifest_id": manifest}))
            .timeout(self.inner.settings.live.call_timeout)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| describe(&e))?;
        if status != 200 {
            return Err(format!("refresh-payment HTTP {status}: {}", snippet(&body)));
        }
        payment_reply_info("application/json", &body)
            .ok_or_else(|| "refresh-payment answer without payment_params".into())
    }

    fn post_url(&self) -> Option<(Url, Duration)> {
        let s = &self.inner.settings;
        match &self.venue {
            Venue::Lv2v { .. } => {
                let mut u = origin(&parse_http_url(&self.info.transcoder).ok()?);
                u.set_path("/payment");
                Some((u, s.payment_timeout))
            }
            Venue::Runner { payment_url, .. } => {
                Some((parse_http_url(payment_url).ok()?, s.live.call_timeout))
            }
        }
    }

    /// Posts the signed headers; a 2xx answer's orchestrator info becomes the next one.
    async fn post(&mut self, h: &PaymentHeaders) -> PostOutcome {
        let Some((url, timeout)) = self.post_url() else {
            return PostOutcome::Failed;
        };
        let Ok(client) = self.inner.clients.for_url(&url) else {
            return PostOutcome::Failed;
        };
        let resp = client
            .post(url)
            .header(lpgw_proto::LIVEPEER_PAYMENT, &h.payment)
            .header(lpgw_proto::LIVEPEER_SEGMENT, &h.seg_creds)
            .timeout(timeout)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                // Payment URLs can be capabilities: keep them out of logs.
                warn!(error = %describe(&e.without_url()), "payment post failed");
                return PostOutcome::Failed;
            }
        };
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.bytes().await.unwrap_or_default();
        let outcome = PostOutcome::from_status(status);
        match outcome {
            PostOutcome::Ok => {
                if let Some(info) = payment_reply_info(&content_type, &body) {
                    self.update_info(info);
                }
            }
            PostOutcome::Gone | PostOutcome::Settled => {
                debug!(status, "orchestrator has no more payments for this session");
            }
            PostOutcome::Refused | PostOutcome::Failed => {
                warn!(status, body = %snippet(&body), "orchestrator did not take the payment");
            }
        }
        outcome
    }

    fn opening_rejection(&self, reason: StopReason, detail: String) -> RejectReason {
        let inner = &self.inner;
        match reason {
            StopReason::PriceExceeded => RejectReason::SignerPriceExceeded(detail),
            StopReason::BudgetExhausted => RejectReason::BudgetExhausted(detail),
            StopReason::Wedged => RejectReason::Signer("payments wedged (482)".into()),
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
            | StopReason::Settled
            | StopReason::Refused => RejectReason::Signer(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lpgw_proto::PriceInfo;

    fn info(ppu: i64) -> OrchestratorInfo {
        OrchestratorInfo {
            transcoder: "https://o:8935".into(),
            price_info: Some(PriceInfo {
                price_per_unit: ppu,
                pixels_per_unit: 1,
                ..PriceInfo::default()
            }),
            ..OrchestratorInfo::default()
        }
    }

    #[test]
    fn prices_are_checked_per_flow() {
        let c = Ceiling::default();
        let lv2v = Venue::Lv2v {
            orch_url: "https://o".into(),
            caps: Capabilities::default(),
        };
        let runner = Venue::Runner {
            payment_url: "https://o/p".into(),
            payer_address: "0x".into(),
            app: String::new(),
        };
        let px = PriceUnit::PixelSeconds720p;
        assert!(check_info_price(&c, &lv2v, px, &info(25_117)).is_ok());
        let err = check_info_price(&c, &lv2v, px, &info(1_000_000_000)).unwrap_err();
        assert!(err.contains("wei/pixel"), "{err}");
        assert!(check_info_price(&c, &runner, px, &info(25_117)).is_ok());
        assert!(check_info_price(&c, &runner, px, &info(25_118)).is_err());
        let secs = PriceUnit::Seconds;
        assert!(check_info_price(&c, &runner, secs, &info(694_444_444_444)).is_ok());
        let err = check_info_price(&c, &runner, secs, &info(694_444_444_445)).unwrap_err();
        assert!(
            err.contains("wei/seconds") && err.contains("ceiling"),
            "{err}"
        );
        let unpriced = OrchestratorInfo::default();
        assert!(check_info_price(&c, &runner, secs, &unpriced).is_ok());
    }

    /// One table for every flow: the status of a payment post, a paid reservation and a paid
    /// start all mean the same thing.
    #[test]
    fn status_codes_mean_one_thing() {
        let table: &[(u16, PostOutcome)] = &[
            (200, PostOutcome::Ok),
            (201, PostOutcome::Ok),
            (204, PostOutcome::Ok),
            (299, PostOutcome::Ok),
            (100, PostOutcome::Failed),
            (301, PostOutcome::Failed),
            (304, PostOutcome::Failed),
            (400, PostOutcome::Refused),
            (401, PostOutcome::Refused),
            (402, PostOutcome::Refused),
            (403, PostOutcome::Refused),
            (404, PostOutcome::Gone),
            (408, PostOutcome::Failed),
            (409, PostOutcome::Settled),
            (413, PostOutcome::Refused),
            (429, PostOutcome::Failed),
            (499, PostOutcome::Refused),
            (500, PostOutcome::Failed),
            (502, PostOutcome::Failed),
            (503, PostOutcome::Failed),
            (599, PostOutcome::Failed),
        ];
        for &(status, want) in table {
            assert_eq!(PostOutcome::from_status(status), want, "status {status}");
        }
    }

    /// Both flows' real payment posts, against one server answering each status in turn:
    /// the same status gives the same outcome whichever flow sent the payment.
    #[tokio::test]
    async fn both_flows_read_every_status_alike() {
        use std::sync::atomic::{AtomicU16, Ordering};

        let status = Arc::new(AtomicU16::new(200));
        let s2 = status.clone();
        let answer = move || {
            let code = s2.load(Ordering::SeqCst);
            async move {
                let code = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
                (code, "answer")
            }
        };
        let app = axum::Router::new()
            .route("/payment", axum::routing::post(answer.clone()))
            .route("/apps/r/session/m1/payment", axum::routing::post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let gw = crate::Gateway::new(crate::Settings {
            signer_url: Some("http://127.0.0.1:9".into()),
            ..crate::Settings::default()
        })
        .unwrap();
        let inner = gw.inner.clone();
        let signer = inner.signer.clone().unwrap();
        let mut lv2v = Payer::lv2v(
            inner.clone(),
            signer.clone(),
            base.clone(),
            OrchestratorInfo {
                transcoder: base.clone(),
                ..OrchestratorInfo::default()
            },
            Capabilities::default(),
            Wallet::default(),
        )
        .unwrap();
        let challenge = crate::runner::pay::Challenge {
            payment_params: String::new(),
            manifest_id: "m1".into(),
            payment_url: format!("{base}/apps/r/session/m1/payment"),
            payment_interval: None,
        };
        let mut runner = Payer::runner(
            inner,
            signer,
            &challenge,
            PriceUnit::Seconds,
            None,
            String::new(),
            "0x00".into(),
            Wallet::default(),
        )
        .unwrap();
        let h = PaymentHeaders::default();
        for code in [
            200, 201, 204, 400, 402, 403, 404, 408, 409, 422, 429, 500, 502, 503,
        ] {
            status.store(code, Ordering::SeqCst);
            let a = lv2v.post(&h).await;
            let b = runner.post(&h).await;
            assert_eq!(a, b, "status {code}");
            assert_eq!(a, PostOutcome::from_status(code), "status {code}");
        }
    }

    #[test]
    fn payment_answers_in_protobuf_or_json_carry_the_next_info() {
        let pb = PaymentResult {
            info: Some(info(7)),
        }
        .encode_to_vec();
        assert_eq!(
            payment_reply_info("application/octet-stream", &pb),
            Some(info(7))
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(info(9).encode_to_vec());
        let js = format!(
            r#"{{"payment_params":"{b64}","orchestrator":"https://o","manifest_id":"m","payment_url":"/p"}}"#
        );
        assert_eq!(
            payment_reply_info("application/json; charset=utf-8", js.as_bytes()),
            Some(info(9))
        );
        // Untyped JSON is recognised by its first byte.
        assert_eq!(payment_reply_info("", js.as_bytes()), Some(info(9)));
        for junk in [
            &b""[..],
            b"{}",
            b"{\"payment_params\":\"!!\"}",
            b"\xff\x00garbage",
        ] {
            assert_eq!(payment_reply_info("", junk), None, "{junk:?}");
        }
    }
}
