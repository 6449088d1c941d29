//! Talking to orchestrators: GetOrchestrator over HTTP/2 and judging the answers.

pub(crate) mod info;
pub(crate) mod selection;
mod summary;

pub use summary::{ModelCapacity, OrchestratorSummary, Price};

use std::collections::HashMap;

use lpgw_proto::Capabilities;
use lpgw_proto::caps::{LIVE_VIDEO_TO_VIDEO, bitstring};
use lpgw_proto::net::capabilities::capability_constraints::ModelConstraint;
use lpgw_proto::net::capabilities::{CapabilityConstraints, Constraints};

/// The capabilities a gateway requests for an LV2V job on `model` (go-livepeer
/// server/ai_session.go:288-306): capability 35 with a constraint naming the model.
pub fn lv2v_capabilities(model: &str) -> Capabilities {
    let models = HashMap::from([(model.to_owned(), ModelConstraint::default())]);
    Capabilities {
        bitstring: bitstring([LIVE_VIDEO_TO_VIDEO]),
        capacities: HashMap::from([(LIVE_VIDEO_TO_VIDEO, 1)]),
        constraints: Some(Constraints {
            per_capability: HashMap::from([(
                LIVE_VIDEO_TO_VIDEO,
                CapabilityConstraints { models },
            )]),
            ..Constraints::default()
        }),
        ..Capabilities::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lv2v_caps_name_the_model() {
        let caps = lv2v_capabilities("noop");
        assert_eq!(caps.bitstring, [1u64 << 35]);
        assert!(caps.mandatories.is_empty());
        let per = &caps.constraints.unwrap().per_capability[&LIVE_VIDEO_TO_VIDEO];
        assert!(per.models.contains_key("noop"));
        assert_eq!(per.models.len(), 1);
    }
}
