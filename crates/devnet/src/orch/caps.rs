//! The orchestrator's capabilities and the compatibility rule (core/capabilities.go).

use std::collections::HashMap;

use lpgw_proto::Capabilities;
use lpgw_proto::caps::{DEFAULT_CAPABILITIES, LIVE_VIDEO_TO_VIDEO, bitstring};
use lpgw_proto::net::capabilities::capability_constraints::ModelConstraint;
use lpgw_proto::net::capabilities::{CapabilityConstraints, Constraints};

/// Version devnet advertises (a go-livepeer release it is faithful to).
pub(super) const VERSION: &str = "0.8.7";

/// Runner version advertised for the built-in models.
pub(super) const RUNNER_VERSION: &str = "0.14.1";

/// Full capabilities with per-model LV2V capacity: `idle` and `in_use` per model.
pub(crate) fn advertised(models: &[(String, u32, u32)]) -> Capabilities {
    let mut caps: Vec<u32> = DEFAULT_CAPABILITIES.to_vec();
    caps.push(LIVE_VIDEO_TO_VIDEO);
    let total: u32 = models.iter().map(|(_, idle, used)| idle + used).sum();
    let model_map = models
        .iter()
        .map(|(m, idle, used)| {
            (
                m.clone(),
                ModelConstraint {
                    warm: true,
                    capacity: *idle,
                    runner_version: RUNNER_VERSION.into(),
                    capacity_in_use: *used,
                },
            )
        })
        .collect();
    let mut capacities: HashMap<u32, u32> = caps.iter().map(|c| (*c, 1)).collect();
    capacities.insert(LIVE_VIDEO_TO_VIDEO, total);
    Capabilities {
        bitstring: bitstring(caps),
        mandatories: Vec::new(),
        capacities,
        version: VERSION.into(),
        constraints: Some(Constraints {
            min_version: String::new(),
            per_capability: HashMap::from([(
                LIVE_VIDEO_TO_VIDEO,
                CapabilityConstraints { models: model_map },
            )]),
        }),
    }
}

/// The LV2V models a request names, if it asks for capability 35.
pub(crate) fn requested_lv2v_models(req: &Capabilities) -> Vec<String> {
    req.constraints
        .as_ref()
        .and_then(|c| c.per_capability.get(&LIVE_VIDEO_TO_VIDEO))
        .map(|c| c.models.keys().cloned().collect())
        .unwrap_or_default()
}

fn semver(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        it.next()??,
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    ))
}

/// `a >= b` as semver with prereleases ignored; unparsable versions compare as compatible.
fn version_ge(a: &str, b: &str) -> bool {
    match (semver(a), semver(b)) {
        (Some(a), Some(b)) => a >= b,
        _ => true,
    }
}

/// Whether a gateway's `want` is compatible with the orchestrator's `have`
/// (capabilities.go:312-335, 453-511). Empty requests are compatible with anything.
pub(crate) fn compatible(want: &Capabilities, have: &Capabilities) -> bool {
    if let Some(c) = &want.constraints
        && !c.min_version.is_empty()
        && !version_ge(&have.version, &c.min_version)
    {
        return false;
    }
    let subset = |small: &[u64], big: &[u64]| {
        small
            .iter()
            .enumerate()
            .all(|(i, w)| w & !big.get(i).copied().unwrap_or(0) == 0)
    };
    if !subset(&have.mandatories, &want.bitstring) || !subset(&want.bitstring, &have.bitstring) {
        return false;
    }
    let empty = HashMap::new();
    let have_caps = have
        .constraints
        .as_ref()
        .map_or(&empty, |c| &c.per_capability);
    let Some(want_c) = &want.constraints else {
        return true;
    };
    want_c.per_capability.iter().all(|(cap, wc)| {
        wc.models.iter().all(|(model, wm)| {
            let Some(hm) = have_caps.get(cap).and_then(|h| h.models.get(model)) else {
                return false;
            };
            (!wm.warm || hm.warm)
                && (wm.runner_version.is_empty()
                    || version_ge(&hm.runner_version, &wm.runner_version))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(model: &str, warm: bool, min_version: &str) -> Capabilities {
        Capabilities {
            bitstring: bitstring([LIVE_VIDEO_TO_VIDEO]),
            constraints: Some(Constraints {
                min_version: min_version.into(),
                per_capability: HashMap::from([(
                    LIVE_VIDEO_TO_VIDEO,
                    CapabilityConstraints {
                        models: HashMap::from([(
                            model.to_string(),
                            ModelConstraint {
                                warm,
                                ..Default::default()
                            },
                        )]),
                    },
                )]),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn advertised_caps_carry_per_model_capacity() {
        let c = advertised(&[("noop".into(), 3, 1)]);
        let m = &c.constraints.as_ref().unwrap().per_capability[&35].models["noop"];
        assert_eq!((m.capacity, m.capacity_in_use, m.warm), (3, 1, true));
        assert_eq!(c.bitstring[0] & (1 << 35), 1 << 35);
        assert_eq!(c.capacities[&35], 4);
    }

    #[test]
    fn compatibility_rule() {
        let have = advertised(&[("noop".into(), 1, 0)]);
        assert!(compatible(&Capabilities::default(), &have));
        assert!(compatible(&want("noop", true, ""), &have));
        assert!(compatible(&want("noop", true, "0.8.0"), &have));
        assert!(!compatible(&want("noop", true, "0.9.0"), &have));
        assert!(!compatible(&want("other", false, ""), &have));
        let mut w = want("noop", false, "");
        w.bitstring = bitstring([LIVE_VIDEO_TO_VIDEO, 99]);
        assert!(!compatible(&w, &have));
        assert_eq!(
            requested_lv2v_models(&want("x", false, "")),
            vec!["x".to_string()]
        );
    }
}
