//! Judging probed orchestrators, as plain data.
//!
//! A probe either failed (its rejection reason) or produced info; [`assess`] decides whether
//! that info is usable, and [`rank`] orders a finished batch by response time. The async
//! cursor in [`Gateway::candidates`](crate::Gateway::candidates) applies `assess` to probes as
//! they complete, which yields the same fastest-first order without waiting for slow ones.

use std::time::Duration;

use lpgw_proto::OrchestratorInfo;

use crate::ceiling::Ceiling;
use crate::error::{RejectReason, Rejection};

/// One probed orchestrator.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// The orchestrator URL as configured.
    pub(crate) url: String,
    /// Time from request to answer (or failure).
    pub(crate) elapsed: Duration,
    /// The answer.
    pub(crate) result: Result<OrchestratorInfo, RejectReason>,
}

/// Whether an orchestrator's info is usable: it names a transcoder, carries a valid auth
/// token (LV2V needs one even offchain, spec §5.9), and its price is within the ceiling.
/// `now_unix` is the wall clock in seconds.
pub(crate) fn assess(
    info: &OrchestratorInfo,
    ceiling: &Ceiling,
    now_unix: i64,
) -> Result<(), RejectReason> {
    if info.transcoder.trim().is_empty() {
        return Err(RejectReason::InvalidResponse("no transcoder url".into()));
    }
    match &info.auth_token {
        Some(t) if t.expiration > now_unix => {}
        _ => return Err(RejectReason::AuthTokenExpired),
    }
    if let Some(p) = &info.price_info {
        ceiling
            .check_lv2v(p.price_per_unit, p.pixels_per_unit)
            .map_err(RejectReason::OverPriceCeiling)?;
    }
    Ok(())
}

/// Splits a batch of probes into usable candidates, fastest first (ties keep input order),
/// and one rejection per failed or unusable orchestrator (in input order).
pub(crate) fn rank(
    probes: Vec<Probe>,
    ceiling: &Ceiling,
    now_unix: i64,
) -> (Vec<(String, OrchestratorInfo)>, Vec<Rejection>) {
    let mut ok = Vec::new();
    let mut rejections = Vec::new();
    for p in probes {
        match p
            .result
            .and_then(|info| assess(&info, ceiling, now_unix).map(|()| info))
        {
            Ok(info) => ok.push((p.elapsed, p.url, info)),
            Err(reason) => rejections.push(Rejection { url: p.url, reason }),
        }
    }
    ok.sort_by_key(|(elapsed, ..)| *elapsed);
    (
        ok.into_iter().map(|(_, url, info)| (url, info)).collect(),
        rejections,
    )
}

#[cfg(test)]
mod tests {
    use lpgw_proto::{AuthToken, PriceInfo};

    use super::*;

    const NOW: i64 = 1_000_000;

    fn info(price: Option<(i64, i64)>) -> OrchestratorInfo {
        OrchestratorInfo {
            transcoder: "https://o:8935".into(),
            auth_token: Some(AuthToken {
                token: vec![1],
                session_id: "abcd0123".into(),
                expiration: NOW + 1800,
            }),
            price_info: price.map(|(p, px)| PriceInfo {
                price_per_unit: p,
                pixels_per_unit: px,
                ..PriceInfo::default()
            }),
            ..OrchestratorInfo::default()
        }
    }

    fn probe(url: &str, ms: u64, result: Result<OrchestratorInfo, RejectReason>) -> Probe {
        Probe {
            url: url.into(),
            elapsed: Duration::from_millis(ms),
            result,
        }
    }

    #[test]
    fn healthy_ones_are_ordered_by_response_time() {
        let probes = vec![
            probe("slow", 300, Ok(info(None))),
            probe("down", 5, Err(RejectReason::Unreachable("refused".into()))),
            probe("fast", 10, Ok(info(Some((1, 1))))),
            probe("mid", 100, Ok(info(None))),
            probe("mid2", 100, Ok(info(None))),
        ];
        let (ok, rejected) = rank(probes, &Ceiling::default(), NOW);
        let order: Vec<_> = ok.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(order, ["fast", "mid", "mid2", "slow"]);
        assert_eq!(
            rejected,
            [Rejection {
                url: "down".into(),
                reason: RejectReason::Unreachable("refused".into())
            }]
        );
    }

    #[test]
    fn over_the_ceiling_is_skipped_with_a_reason() {
        let max = Ceiling {
            wei_per_pixel: Some(crate::MaxPrice {
                price_per_unit: 10,
                pixels_per_unit: 1,
            }),
            ..Ceiling::default()
        };
        let probes = vec![
            probe("cheap", 50, Ok(info(Some((10, 1))))),
            probe("dear", 1, Ok(info(Some((11, 1))))),
            probe("free", 70, Ok(info(None))),
        ];
        let (ok, rejected) = rank(probes, &max, NOW);
        assert_eq!(
            ok.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
            ["cheap", "free"]
        );
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].url, "dear");
        let RejectReason::OverPriceCeiling(why) = &rejected[0].reason else {
            panic!("{:?}", rejected[0].reason);
        };
        assert!(
            why.contains("price 11 wei/pixel") && why.contains("ceiling 10 wei/pixel"),
            "{why}"
        );
    }

    #[test]
    fn expired_or_missing_auth_tokens_and_transcoders_are_rejected() {
        let mut expired = info(None);
        expired.auth_token.as_mut().unwrap().expiration = NOW;
        let mut missing = info(None);
        missing.auth_token = None;
        let mut no_transcoder = info(None);
        no_transcoder.transcoder.clear();
        assert_eq!(
            assess(&expired, &Ceiling::default(), NOW),
            Err(RejectReason::AuthTokenExpired)
        );
        assert_eq!(
            assess(&missing, &Ceiling::default(), NOW),
            Err(RejectReason::AuthTokenExpired)
        );
        assert!(matches!(
            assess(&no_transcoder, &Ceiling::default(), NOW),
            Err(RejectReason::InvalidResponse(_))
        ));
        assert_eq!(assess(&info(None), &Ceiling::default(), NOW), Ok(()));
    }

    #[test]
    fn every_candidate_gets_an_answer() {
        let probes: Vec<_> = (0..10)
            .map(|i| {
                let r = if i % 3 == 0 {
                    Ok(info(None))
                } else {
                    Err(RejectReason::Timeout(8000))
                };
                probe(&format!("o{i}"), 10 * (10 - i), r)
            })
            .collect();
        let (ok, rejected) = rank(probes, &Ceiling::default(), NOW);
        assert_eq!(ok.len() + rejected.len(), 10);
        assert_eq!(
            ok.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
            ["o9", "o6", "o3", "o0"]
        );
    }
}
