//! Service counters and histograms, rendered in the Prometheus text format (0.0.4).
//!
//! Written here rather than with `prometheus-client`, for two reasons of correctness:
//! - the money series (`lpgw_payment_value_wei_total`, `lpgw_key_spend_wei_total`,
//!   `lpgw_job_spend_wei`) are exact wei amounts held as `u128`; that crate's counter and
//!   gauge values encode only as `u64` (which overflows past about 18.4 ETH of expected
//!   value over a service's life) or `f64` (which rounds wei away), and a spend figure that
//!   an operator reconciles against a ledger must not do either;
//! - it writes OpenMetrics (`# TYPE lpgw_jobs_started counter` for the sample
//!   `lpgw_jobs_started_total`, floats such as `le="1.0"`, a closing `# EOF`), while the
//!   exposition documented for this service, and scraped by its operators, is the classic
//!   text format with the names and labels as they are.
//!
//! Everything else is a handful of atomics and small maps read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A fixed-bucket histogram of seconds.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    total: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if s <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.sum_us
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
        self.total.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(out, name, "");
    }

    /// The samples of one labelled series (`labels` like `direction="in"`, or empty), after
    /// the family's `HELP`/`TYPE` lines.
    fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                c.load(Relaxed)
            );
        }
        let total = self.total.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braced} {sum}\n{name}_count{braced} {total}"
        );
    }
}

/// Renders a histogram family whose series differ by label.
fn render_family(out: &mut String, name: &str, help: &str, series: &[(&str, &Histogram)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, h) in series {
        h.render_series(out, name, labels);
    }
}

const FRAME_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const START_BOUNDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Trickle segment timings: from a millisecond (a loopback acknowledgement) to ten seconds
/// (a long segment, or a runner slow to produce).
const SEGMENT_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why frames were dropped.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Drop {
    /// The encoder fell behind; the oldest input frame went.
    EncoderLag,
    /// A viewer read too slowly; output frames for it were skipped.
    SlowReader,
    /// Larger than the frame limit.
    Oversized,
    /// Not a decodable image.
    Invalid,
    /// Published with a `seq` not above the highest already accepted for its stream.
    StaleSeq,
}

/// Labels of [`Drop`], in order.
const DROP_LABELS: [&str; 5] = [
    "encoder_lag",
    "slow_reader",
    "oversized",
    "invalid",
    "stale_seq",
];

/// Labels of the client-side limits a request can run into; always rendered, zero or not.
pub(crate) const LIMIT_LABELS: [&str; 5] = [
    "budget",
    "start_rate_per_ip",
    "jobs_per_ip",
    "jobs_per_key",
    "jobs_total",
];

/// Every service-wide counter.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    dropped: [AtomicU64; 5],
    pub(crate) jobs_started: AtomicU64,
    pub(crate) start_failures: AtomicU64,
    /// Payments of closed jobs by flow: count and value in wei.
    payments: Mutex<PaymentTotals>,
    pub(crate) frame_latency: Histogram,
    pub(crate) start_latency: Histogram,
    /// Input segments: last byte sent to the orchestrator's answer.
    pub(crate) segment_ack_in: Histogram,
    /// Output segments: response to first body byte.
    pub(crate) segment_first_byte_out: Histogram,
    /// Input segments: open to answer.
    pub(crate) segment_duration_in: Histogram,
    /// Output segments: first byte to end.
    pub(crate) segment_duration_out: Histogram,
    rejections: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests refused by a client-side limit, by limit.
    limited: Mutex<BTreeMap<&'static str, u64>>,
    /// Payments and their value in wei by key label, since start-up.
    key_spend: Mutex<BTreeMap<String, (u64, u128)>>,
    /// Jobs ended because a budget ran out.
    pub(crate) budget_stops: AtomicU64,
    /// Job faults by code (`no_output`, `runner_error`, `media_failed`, ...).
    faults: Mutex<BTreeMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            dropped: Default::default(),
            jobs_started: AtomicU64::new(0),
            start_failures: AtomicU64::new(0),
            payments: Mutex::default(),
            frame_latency: Histogram::new(FRAME_BOUNDS),
            start_latency: Histogram::new(START_BOUNDS),
            segment_ack_in: Histogram::new(SEGMENT_BOUNDS),
            segment_first_byte_out: Histogram::new(SEGMENT_BOUNDS),
            segment_duration_in: Histogram::new(SEGMENT_BOUNDS),
            segment_duration_out: Histogram::new(SEGMENT_BOUNDS),
            rejections: Mutex::default(),
            limited: Mutex::new(LIMIT_LABELS.iter().map(|l| (*l, 0)).collect()),
            key_spend: Mutex::default(),
            budget_stops: AtomicU64::new(0),
            faults: Mutex::default(),
        }
    }
}

/// One running job's spend and, for Scope jobs, its runner's keepalive figures, for the
/// per-job gauges.
#[derive(Debug, Clone)]
pub(crate) struct JobSpendRow {
    pub(crate) job_id: String,
    pub(crate) key: String,
    pub(crate) wei: u128,
    /// Round trip of the last answered `ping`, seconds.
    pub(crate) pong_secs: Option<f64>,
    /// Pings in a row with no `pong`.
    pub(crate) missed_pongs: Option<u32>,
}

/// Job counts by flow and phase, taken from the registry at scrape time.
pub(crate) type JobCounts = BTreeMap<(&'static str, &'static str), u64>;

/// Payments by flow: how many were accepted and their expected value in wei.
pub(crate) type PaymentTotals = BTreeMap<&'static str, (u64, u128)>;

impl Metrics {
    pub(crate) fn dropped(&self, why: Drop, n: u64) {
        self.dropped[why as usize].fetch_add(n, Relaxed);
    }

    /// Adds a closed job's payments to the totals.
    pub(crate) fn job_paid(&self, flow: &'static str, count: u64, value_wei: u128) {
        let mut p = self.payments.lock().unwrap_or_else(|p| p.into_inner());
        let e = p.entry(flow).or_default();
        e.0 = e.0.saturating_add(count);
        e.1 = e.1.saturating_add(value_wei);
    }

    /// Payments of closed jobs, the base the running jobs' payments are added to.
    pub(crate) fn closed_payments(&self) -> PaymentTotals {
        self.payments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn rejection(&self, reason: &'static str) {
        *self
            .rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// A job ended by a fault with `code`.
    pub(crate) fn fault(&self, code: &str) {
        *self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code.to_owned())
            .or_default() += 1;
    }

    /// One accepted payment of a job started with the key labelled `key`.
    pub(crate) fn key_paid(&self, key: String, wei: u128) {
        let mut g = self.key_spend.lock().unwrap_or_else(|p| p.into_inner());
        let e = g.entry(key).or_default();
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(wei);
    }

    /// A request refused by a client-side limit (one of [`LIMIT_LABELS`]).
    pub(crate) fn limited(&self, limit: &'static str) {
        *self
            .limited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(limit)
            .or_default() += 1;
    }

    /// Prometheus text exposition.
    pub(crate) fn render(
        &self,
        jobs: &JobCounts,
        payments: &PaymentTotals,
        job_spend: &[JobSpendRow],
    ) -> String {
        let mut o = String::new();
        o.push_str("# HELP lpgw_jobs Jobs held by the service, by flow and phase.\n");
        o.push_str("# TYPE lpgw_jobs gauge\n");
        for ((flow, phase), n) in jobs {
            let _ = writeln!(o, "lpgw_jobs{{flow=\"{flow}\",phase=\"{phase}\"}} {n}");
        }
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut o,
            "lpgw_jobs_started_total",
            "Jobs started.",
            self.jobs_started.load(Relaxed),
        );
        counter(
            &mut o,
            "lpgw_job_start_failures_total",
            "Job starts that failed.",
            self.start_failures.load(Relaxed),
        );
        counter(
            &mut o,
            "lpgw_frames_in_total",
            "Input frames received.",
            self.frames_in.load(Relaxed),
        );
        counter(
            &mut o,
            "lpgw_frames_out_total",
            "Output frames decoded.",
            self.frames_out.load(Relaxed),
        );
        o.push_str(
            "# HELP lpgw_payments_total Payments accepted by orchestrators, by flow.\n\
             # TYPE lpgw_payments_total counter\n",
        );
        for (flow, (n, _)) in payments {
            let _ = writeln!(o, "lpgw_payments_total{{flow=\"{flow}\"}} {n}");
        }
        o.push_str(
            "# HELP lpgw_payment_value_wei_total Expected value in wei of the accepted \
             payments (tickets x face value x win probability), by flow.\n\
             # TYPE lpgw_payment_value_wei_total counter\n",
        );
        for (flow, (_, v)) in payments {
            let _ = writeln!(o, "lpgw_payment_value_wei_total{{flow=\"{flow}\"}} {v}");
        }
        o.push_str(
            "# HELP lpgw_key_payments_total Payments accepted for jobs of each API key.\n\
             # TYPE lpgw_key_payments_total counter\n",
        );
        let keys = self
            .key_spend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (key, (n, _)) in &keys {
            let _ = writeln!(o, "lpgw_key_payments_total{{key=\"{key}\"}} {n}");
        }
        o.push_str(
            "# HELP lpgw_key_spend_wei_total Expected value in wei paid for jobs of each API \
             key.\n# TYPE lpgw_key_spend_wei_total counter\n",
        );
        for (key, (_, v)) in &keys {
            let _ = writeln!(o, "lpgw_key_spend_wei_total{{key=\"{key}\"}} {v}");
        }
        o.push_str(
            "# HELP lpgw_job_spend_wei Expected value in wei paid so far by each running job.\n\
             # TYPE lpgw_job_spend_wei gauge\n",
        );
        for r in job_spend {
            let _ = writeln!(
                o,
                "lpgw_job_spend_wei{{job_id=\"{}\",key=\"{}\"}} {}",
                r.job_id, r.key, r.wei
            );
        }
        o.push_str(
            "# HELP lpgw_scope_pong_seconds Round trip of the last ping answered by each \
             running Scope job's runner.\n# TYPE lpgw_scope_pong_seconds gauge\n",
        );
        for r in job_spend {
            if let Some(p) = r.pong_secs {
                let _ = writeln!(o, "lpgw_scope_pong_seconds{{job_id=\"{}\"}} {p}", r.job_id);
            }
        }
        o.push_str(
            "# HELP lpgw_scope_missed_pongs Pings in a row each running Scope job's runner \
             left unanswered.\n# TYPE lpgw_scope_missed_pongs gauge\n",
        );
        for r in job_spend {
            if let Some(m) = r.missed_pongs {
                let _ = writeln!(o, "lpgw_scope_missed_pongs{{job_id=\"{}\"}} {m}", r.job_id);
            }
        }
        counter(
            &mut o,
            "lpgw_budget_stops_total",
            "Jobs ended because a spending budget ran out.",
            self.budget_stops.load(Relaxed),
        );
        o.push_str(
            "# HELP lpgw_job_faults_total Jobs ended by a fault (no output, runner error, \
             media failure), by code.\n# TYPE lpgw_job_faults_total counter\n",
        );
        for (code, n) in self.faults.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(o, "lpgw_job_faults_total{{code=\"{code}\"}} {n}");
        }
        o.push_str("# HELP lpgw_frames_dropped_total Frames dropped, by reason.\n");
        o.push_str("# TYPE lpgw_frames_dropped_total counter\n");
        for (i, name) in DROP_LABELS.iter().enumerate() {
            let _ = writeln!(
                o,
                "lpgw_frames_dropped_total{{reason=\"{name}\"}} {}",
                self.dropped[i].load(Relaxed)
            );
        }
        o.push_str(
            "# HELP lpgw_rejections_total Orchestrator rejections during job starts, by reason.\n",
        );
        o.push_str("# TYPE lpgw_rejections_total counter\n");
        for (reason, n) in self
            .rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(o, "lpgw_rejections_total{{reason=\"{reason}\"}} {n}");
        }
        o.push_str(
            "# HELP lpgw_limit_rejections_total Requests refused with 429 by a per-client or \
             service limit, by limit.\n",
        );
        o.push_str("# TYPE lpgw_limit_rejections_total counter\n");
        for (limit, n) in self
            .limited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(o, "lpgw_limit_rejections_total{{limit=\"{limit}\"}} {n}");
        }
        self.frame_latency.render(
            &mut o,
            "lpgw_frame_latency_seconds",
            "Input to output latency per frame.",
        );
        self.start_latency
            .render(&mut o, "lpgw_job_start_seconds", "Time to start a job.");
        render_family(
            &mut o,
            "lpgw_segment_ack_seconds",
            "Input segments: time from the last byte sent to the orchestrator's answer.",
            &[("direction=\"in\"", &self.segment_ack_in)],
        );
        render_family(
            &mut o,
            "lpgw_segment_first_byte_seconds",
            "Output segments: time from the response to the first body byte (waiting for \
             the runner's output).",
            &[("direction=\"out\"", &self.segment_first_byte_out)],
        );
        render_family(
            &mut o,
            "lpgw_segment_duration_seconds",
            "Wall-clock length of completed segments: input from open to answer, output \
             from first byte to end.",
            &[
                ("direction=\"in\"", &self.segment_duration_in),
                ("direction=\"out\"", &self.segment_duration_out),
            ],
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.frames_in.fetch_add(3, Relaxed);
        m.dropped(Drop::Invalid, 2);
        m.rejection("timeout");
        m.dropped(Drop::StaleSeq, 1);
        m.limited("start_rate_per_ip");
        m.frame_latency.observe(Duration::from_millis(20));
        m.frame_latency.observe(Duration::from_millis(200));
        let mut jobs = JobCounts::new();
        jobs.insert(("lv2v", "running"), 1);
        m.job_paid("lv2v", 2, 300);
        m.job_paid("lv2v", 1, 200);
        let mut payments = m.closed_payments();
        payments.insert("scope", (0, 0));
        let text = m.render(&jobs, &payments, &[]);
        assert!(text.contains("lpgw_payments_total{flow=\"lv2v\"} 3\n"));
        assert!(text.contains("lpgw_payment_value_wei_total{flow=\"lv2v\"} 500\n"));
        assert!(text.contains("lpgw_payments_total{flow=\"scope\"} 0\n"));
        assert!(text.contains("lpgw_frames_in_total 3\n"));
        assert!(text.contains("lpgw_frames_dropped_total{reason=\"invalid\"} 2\n"));
        assert!(text.contains("lpgw_rejections_total{reason=\"timeout\"} 1\n"));
        assert!(text.contains("lpgw_frames_dropped_total{reason=\"stale_seq\"} 1\n"));
        assert!(text.contains("lpgw_limit_rejections_total{limit=\"start_rate_per_ip\"} 1\n"));
        assert!(text.contains("lpgw_limit_rejections_total{limit=\"jobs_per_ip\"} 0\n"));
        assert!(text.contains("lpgw_jobs{flow=\"lv2v\",phase=\"running\"} 1\n"));
        assert!(text.contains("lpgw_frame_latency_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(text.contains("lpgw_frame_latency_seconds_bucket{le=\"0.25\"} 2\n"));
        assert!(text.contains("lpgw_frame_latency_seconds_count 2\n"));
    }

    #[test]
    fn segment_histograms_carry_their_direction() {
        let m = Metrics::default();
        m.segment_ack_in.observe(Duration::from_millis(3));
        m.segment_duration_in.observe(Duration::from_millis(600));
        m.segment_duration_out.observe(Duration::from_millis(400));
        m.segment_duration_out.observe(Duration::from_secs(20));
        let text = m.render(&JobCounts::new(), &PaymentTotals::new(), &[]);
        assert!(text.contains("# TYPE lpgw_segment_ack_seconds histogram\n"));
        assert!(
            text.contains("lpgw_segment_ack_seconds_bucket{direction=\"in\",le=\"0.001\"} 0\n")
        );
        assert!(
            text.contains("lpgw_segment_ack_seconds_bucket{direction=\"in\",le=\"0.005\"} 1\n")
        );
        assert!(text.contains("lpgw_segment_ack_seconds_count{direction=\"in\"} 1\n"));
        assert!(text.contains("lpgw_segment_first_byte_seconds_count{direction=\"out\"} 0\n"));
        assert_eq!(
            text.matches("# TYPE lpgw_segment_duration_seconds histogram")
                .count(),
            1
        );
        assert!(
            text.contains("lpgw_segment_duration_seconds_bucket{direction=\"in\",le=\"1\"} 1\n")
        );
        assert!(
            text.contains("lpgw_segment_duration_seconds_bucket{direction=\"out\",le=\"10\"} 1\n")
        );
        assert!(
            text.contains(
                "lpgw_segment_duration_seconds_bucket{direction=\"out\",le=\"+Inf\"} 2\n"
            )
        );
        assert!(text.contains("lpgw_segment_duration_seconds_sum{direction=\"out\"} 20.4\n"));
    }
}
