//! Remote-signer HTTP client (go-livepeer server/remote_signer.go, spec §5.8).
//!
//! The signer holds the payer's key: it signs the GetOrchestrator request
//! (`POST /sign-orchestrator-info`, fetched once and cached) and mints payments
//! (`POST /generate-live-payment`). Its opaque `state` is kept verbatim and sent back
//! unchanged on the next call of the same session.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing::debug;
use url::Url;

use crate::discovery::{origin, parse_http_url};
use crate::error::Error;
use crate::http::{describe, snippet};

/// Response header naming the orchestrator to refresh on a 480.
pub const ORCHESTRATOR_URL_HEADER: &str = "Livepeer-Orchestrator-URL";

/// The payer identity used to sign GetOrchestrator requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignerMaterial {
    /// 20-byte payer address.
    pub address: Vec<u8>,
    /// Signature over the checksummed address string.
    pub sig: Vec<u8>,
}

/// The signer's answer to `POST /generate-live-payment`, classified.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SignerReply {
    /// 200: the two headers and the new opaque state.
    Paid {
        /// `Livepeer-Payment` value.
        payment: String,
        /// `Livepeer-Segment` value.
        seg_creds: String,
        /// Opaque state to send back next time.
        state: Value,
    },
    /// 480: fetch fresh orchestrator info, then ask again.
    RefreshSession,
    /// 481: the orchestrator's price is above a limit; never pay it.
    PriceExceeded(String),
    /// 482: nothing to pay this cycle.
    NoTickets,
    /// Any other failure.
    Failed(String),
}

impl SignerReply {
    /// Classifies a signer response.
    pub(crate) fn from_response(status: u16, body: &[u8]) -> Self {
        match status {
            200 => Self::from_ok_body(body),
            480 => Self::RefreshSession,
            481 => Self::PriceExceeded(error_message(body)),
            482 => Self::NoTickets,
            s => Self::Failed(format!("HTTP {s}: {}", error_message(body))),
        }
    }

    fn from_ok_body(body: &[u8]) -> Self {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Self::Failed("invalid JSON in generate-live-payment response".into());
        };
        let payment = v
            .get("payment")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        let seg_creds = v
            .get("segCreds")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        let state = v.get("state").filter(|s| s.is_object());
        match (payment, seg_creds, state) {
            (Some(p), Some(s), Some(st)) => Self::Paid {
                payment: p.to_owned(),
                seg_creds: s.to_owned(),
                state: st.clone(),
            },
            (None, ..) => Self::Failed("response missing 'payment'".into()),
            (_, None, _) => Self::Failed("response missing 'segCreds'".into()),
            _ => Self::Failed("response missing 'state' object".into()),
        }
    }
}

/// The message of a signer JSON error (`{"error":{"message":..}}`) or the raw body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| snippet(body))
}

/// What one `generate-live-payment` call is for.
#[derive(Debug, Clone)]
pub(crate) struct PaymentRequest<'a> {
    /// Serialized `OrchestratorInfo` protobuf (sent base64).
    pub(crate) orchestrator: &'a [u8],
    /// Serialized `Capabilities` protobuf, if any.
    pub(crate) capabilities: Option<&'a [u8]>,
    /// Manifest (session) ID, once known.
    pub(crate) manifest_id: Option<&'a str>,
    /// Payment type (`lv2v`, `live`, `fixed`).
    pub(crate) kind: &'a str,
    /// The live-runner app, if any (signer `app` field).
    pub(crate) app: Option<&'a str>,
    /// `maxPrice`: `{price, currency: "wei", unit}`.
    pub(crate) max_price: Option<Value>,
    /// Opaque state of the previous call, unchanged.
    pub(crate) state: Option<&'a Value>,
}

impl PaymentRequest<'_> {
    pub(crate) fn to_json(&self) -> Value {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut body = json!({ "orchestrator": b64.encode(self.orchestrator), "type": self.kind });
        if let Some(c) = self.capabilities {
            body["capabilities"] = b64.encode(c).into();
        }
        if let Some(m) = self.manifest_id {
            body["ManifestID"] = m.into();
        }
        if let Some(a) = self.app {
            body["app"] = a.into();
        }
        if let Some(m) = &self.max_price {
            body["maxPrice"] = m.clone();
        }
        if let Some(s) = self.state {
            body["state"] = s.clone();
        }
        body
    }
}

/// A remote signer: base URL, headers and the cached orchestrator-info signature.
pub(crate) struct Signer {
    base: Url,
    headers: BTreeMap<String, String>,
    http: reqwest::Client,
    material: OnceCell<SignerMaterial>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("base", &self.base.as_str())
            .field("headers", &crate::redact::HeaderNames(&self.headers))
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub(crate) fn new(
        url: &str,
        headers: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let base = origin(&parse_http_url(url)?);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
        Ok(Self {
            base,
            headers,
            http,
            material: OnceCell::new(),
        })
    }

    fn endpoint(&self, path: &str) -> String {
        let mut u = self.base.clone();
        u.set_path(path);
        u.into()
    }

    fn post(&self, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.post(url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req
    }

    /// The payer address as `0x` hex, for `Livepeer-Payer-Address`.
    pub(crate) async fn payer_address(&self) -> Result<String, Error> {
        let m = self.material().await?;
        let hex: String = m.address.iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("0x{hex}"))
    }

    /// The signed payer identity; fetched on first use and cached (failures are not cached).
    pub(crate) async fn material(&self) -> Result<&SignerMaterial, Error> {
        self.material
            .get_or_try_init(|| self.fetch_material())
            .await
    }

    async fn fetch_material(&self) -> Result<SignerMaterial, Error> {
        let url = self.endpoint("/sign-orchestrator-info");
        let fail = |reason: String| Error::Signer {
            url: url.clone(),
            reason,
        };
        let resp = self.post(&url).json(&json!({})).send().await;
        let resp = resp.map_err(|e| fail(describe(&e)))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| fail(describe(&e)))?;
        if status != 200 {
            return Err(fail(format!("HTTP {status}: {}", error_message(&body))));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| fail(format!("bad JSON: {e}")))?;
        let field = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| fail(format!("response missing '{name}'")))
        };
        let address = hex(field("address")?).map_err(&fail)?;
        if address.len() != 20 {
            return Err(fail(format!(
                "address has {} bytes, want 20",
                address.len()
            )));
        }
        let sig = hex(field("signature")?).map_err(&fail)?;
        debug!("fetched orchestrator-info signature");
        Ok(SignerMaterial { address, sig })
    }

    /// One `POST /generate-live-payment`.
    pub(crate) async fn generate_live_payment(&self, req: &PaymentRequest<'_>) -> SignerReply {
        let url = self.endpoint("/generate-live-payment");
        let resp = match self.post(&url).json(&req.to_json()).send().await {
            Ok(r) => r,
            Err(e) => return SignerReply::Failed(describe(&e)),
        };
        let status = resp.status().as_u16();
        match resp.bytes().await {
            Ok(body) => SignerReply::from_response(status, &body),
            Err(e) => SignerReply::Failed(describe(&e)),
        }
    }
}

/// Decodes `0x`-prefixed or bare hex; odd lengths are left-padded as the reference does.
fn hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let padded = if !s.len().is_multiple_of(2) {
        format!("0{s}")
    } else {
        s.to_owned()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).map_err(|_| format!("not hex: {s:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_signer_statuses() {
        let ok = br#"{"payment":"cA==","segCreds":"cw==","state":{"State":"x","Sig":"y"}}"#;
        assert_eq!(
            SignerReply::from_response(200, ok),
            SignerReply::Paid {
                payment: "cA==".into(),
                seg_creds: "cw==".into(),
                state: json!({"State":"x","Sig":"y"}),
            }
        );
        assert_eq!(
            SignerReply::from_response(480, b""),
            SignerReply::RefreshSession
        );
        assert_eq!(
            SignerReply::from_response(481, br#"{"error":{"message":"price exceeded"}}"#),
            SignerReply::PriceExceeded("price exceeded".into())
        );
        assert_eq!(
            SignerReply::from_response(482, b"no tickets"),
            SignerReply::NoTickets
        );
        assert_eq!(
            SignerReply::from_response(500, br#"{"error":{"message":"Internal Server Error"}}"#),
            SignerReply::Failed("HTTP 500: Internal Server Error".into())
        );
        for bad in [
            &b"{}"[..],
            b"garbage",
            br#"{"payment":"p","segCreds":"s","state":"x"}"#,
        ] {
            assert!(matches!(
                SignerReply::from_response(200, bad),
                SignerReply::Failed(_)
            ));
        }
    }

    #[test]
    fn state_is_sent_back_verbatim() {
        let state = json!({"State":"b64","Sig":"sig","Extra":[1,2]});
        let req = PaymentRequest {
            orchestrator: b"\x0a\x01x",
            capabilities: None,
            manifest_id: Some("abcd1234"),
            kind: "lv2v",
            app: None,
            max_price: None,
            state: Some(&state),
        };
        let body = req.to_json();
        assert_eq!(body["state"], state);
        assert_eq!(body["ManifestID"], "abcd1234");
        assert_eq!(body["orchestrator"], "CgF4");
        assert_eq!(body["type"], "lv2v");
        assert!(body.get("capabilities").is_none());
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(hex("0x0a0B").unwrap(), [10, 11]);
        assert_eq!(hex("abc").unwrap(), [0x0a, 0xbc]);
        assert!(hex("zz").is_err());
    }
}
