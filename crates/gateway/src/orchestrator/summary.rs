//! A plain, serializable view of an `OrchestratorInfo` for tools and APIs (`orch-info`).

use lpgw_proto::OrchestratorInfo;
use lpgw_proto::caps::LIVE_VIDEO_TO_VIDEO;
use serde::Serialize;

/// What an orchestrator said about itself, without secrets (the auth token is left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrchestratorSummary {
    /// Service URI: base of the HTTP API and trickle channels.
    pub transcoder: String,
    /// The orchestrator's ETH address, `0x` hex (empty offchain).
    pub address: String,
    /// Price for the requested capabilities; `None` offchain.
    pub price: Option<Price>,
    /// Whether the orchestrator expects tickets (it sent ticket parameters).
    pub onchain: bool,
    /// Auth token expiry, unix seconds.
    pub auth_token_expires: Option<i64>,
    /// Software version the orchestrator advertises.
    pub version: String,
    /// Live video-to-video models with their capacity, sorted by name.
    pub lv2v_models: Vec<ModelCapacity>,
}

/// `price_per_unit` wei per `pixels_per_unit` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Price {
    /// Wei.
    pub price_per_unit: i64,
    /// Units covered.
    pub pixels_per_unit: i64,
}

/// One LV2V model an orchestrator serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelCapacity {
    /// Model ID.
    pub model: String,
    /// Whether the model is loaded.
    pub warm: bool,
    /// Idle slots.
    pub capacity: u32,
    /// Slots in use.
    pub in_use: u32,
}

impl From<&OrchestratorInfo> for OrchestratorSummary {
    fn from(info: &OrchestratorInfo) -> Self {
        let caps = info.capabilities.as_ref();
        let mut lv2v_models: Vec<ModelCapacity> = caps
            .and_then(|c| c.constraints.as_ref())
            .and_then(|c| c.per_capability.get(&LIVE_VIDEO_TO_VIDEO))
            .map(|c| {
                c.models
                    .iter()
                    .map(|(model, m)| ModelCapacity {
                        model: model.clone(),
                        warm: m.warm,
                        capacity: m.capacity,
                        in_use: m.capacity_in_use,
                    })
                    .collect()
            })
            .unwrap_or_default();
        lv2v_models.sort_by(|a, b| a.model.cmp(&b.model));
        Self {
            transcoder: info.transcoder.clone(),
            address: if info.address.is_empty() {
                String::new()
            } else {
                let hex: String = info.address.iter().map(|b| format!("{b:02x}")).collect();
                format!("0x{hex}")
            },
            price: info.price_info.as_ref().map(|p| Price {
                price_per_unit: p.price_per_unit,
                pixels_per_unit: p.pixels_per_unit,
            }),
            onchain: info.ticket_params.is_some(),
            auth_token_expires: info.auth_token.as_ref().map(|t| t.expiration),
            version: caps.map(|c| c.version.clone()).unwrap_or_default(),
            lv2v_models,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lpgw_proto::net::capabilities::capability_constraints::ModelConstraint;
    use lpgw_proto::net::capabilities::{CapabilityConstraints, Constraints};
    use lpgw_proto::{AuthToken, Capabilities, PriceInfo};

    use super::*;

    #[test]
    fn summary_keeps_what_matters_and_drops_the_token() {
        let models = HashMap::from([
            (
                "z".to_owned(),
                ModelConstraint {
                    warm: true,
                    capacity: 2,
                    capacity_in_use: 1,
                    ..Default::default()
                },
            ),
            ("a".to_owned(), ModelConstraint::default()),
        ]);
        let info = OrchestratorInfo {
            transcoder: "https://o:8935".into(),
            address: vec![0xab, 0x01],
            price_info: Some(PriceInfo {
                price_per_unit: 5,
                pixels_per_unit: 2,
                ..Default::default()
            }),
            auth_token: Some(AuthToken {
                token: b"secret".to_vec(),
                session_id: "s".into(),
                expiration: 99,
            }),
            capabilities: Some(Capabilities {
                version: "0.8.0".into(),
                constraints: Some(Constraints {
                    per_capability: HashMap::from([(35, CapabilityConstraints { models })]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = OrchestratorSummary::from(&info);
        assert_eq!(s.address, "0xab01");
        assert_eq!(
            s.price,
            Some(Price {
                price_per_unit: 5,
                pixels_per_unit: 2
            })
        );
        assert!(!s.onchain);
        assert_eq!(s.auth_token_expires, Some(99));
        assert_eq!(s.version, "0.8.0");
        assert_eq!(
            s.lv2v_models
                .iter()
                .map(|m| m.model.as_str())
                .collect::<Vec<_>>(),
            ["a", "z"]
        );
        assert_eq!(s.lv2v_models[1].in_use, 1);
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("secret"));
    }
}
