//! What a runner advertises: the heartbeat request and static entries, validated and
//! normalized as go-livepeer does (ai/runner/live_runner.go:127-141, 858-918).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::price::UsdPrice;

/// Longest metadata accepted, in bytes.
pub(crate) const MAX_METADATA_BYTES: usize = 1024;

/// Persistent runners hold sessions; single-shot runners serve one request per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Persistent,
    SingleShot,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Persistent => "persistent",
            Self::SingleShot => "single-shot",
        }
    }
}

/// A runner's GPU as advertised; empty fields are omitted on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Gpu {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) name: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) vram_mb: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// `gpu` is an object or a bare device index.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawGpu {
    Index(i64),
    Object {
        #[serde(default)]
        id: Value,
        #[serde(default)]
        name: String,
        #[serde(default)]
        vram_mb: i64,
    },
}

impl RawGpu {
    fn into_gpu(self) -> Gpu {
        match self {
            Self::Index(i) => Gpu {
                id: i.to_string(),
                ..Gpu::default()
            },
            Self::Object { id, name, vram_mb } => Gpu {
                id: match id {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                },
                name,
                vram_mb,
            },
        }
    }
}

/// `price_info` as sent: `price` is a JSON number or a numeric string (Go `json.Number`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPrice {
    #[serde(default)]
    price: Value,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    unit: String,
}

impl RawPrice {
    fn price_text(&self) -> String {
        match &self.price {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        }
    }

    pub(crate) fn normalize(&self) -> Result<UsdPrice, String> {
        UsdPrice::normalize(&self.price_text(), &self.currency, &self.unit)
            .map_err(|e| e.to_string())
    }
}

/// The heartbeat request body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct HeartbeatRequest {
    #[serde(default)]
    pub(crate) runner_id: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    proxy: bool,
    #[serde(default)]
    runner_url: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    metadata: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    gpu: Option<RawGpu>,
    #[serde(default)]
    app: String,
    #[serde(default)]
    capacity: i64,
    #[serde(default)]
    price_info: Option<RawPrice>,
}

/// A runner's validated advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advert {
    pub(crate) label: String,
    pub(crate) proxy: bool,
    pub(crate) runner_url: String,
    pub(crate) version: String,
    pub(crate) metadata: String,
    pub(crate) status: String,
    pub(crate) mode: Mode,
    pub(crate) gpu: Option<Gpu>,
    pub(crate) app: String,
    pub(crate) capacity: u32,
    /// Validated only when priced (onchain); offchain prices are ignored.
    pub(crate) price: Option<UsdPrice>,
}

impl Advert {
    /// Whether the runner takes sessions (`""` or `ready`).
    pub(crate) fn ready(&self) -> bool {
        self.status.is_empty() || self.status == "ready"
    }
}

/// Go decodes invalid UTF-8 in JSON strings to U+FFFD; decoding lossily first does the same.
pub(crate) fn parse_heartbeat(body: &[u8]) -> Result<HeartbeatRequest, String> {
    let text = String::from_utf8_lossy(body);
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

pub(crate) fn validate_metadata(m: &str) -> Result<(), String> {
    if m.len() > MAX_METADATA_BYTES {
        return Err(format!(
            "metadata must be at most {MAX_METADATA_BYTES} bytes"
        ));
    }
    if m.contains('\u{FFFD}') {
        return Err("metadata must not contain Unicode replacement character U+FFFD".into());
    }
    Ok(())
}

/// `url.ParseRequestURI` plus the http/https and non-empty host checks.
pub(crate) fn valid_runner_url(u: &str) -> bool {
    let Some((scheme, rest)) = u.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    matches!(scheme, "http" | "https") && !host.is_empty() && !u.contains(char::is_whitespace)
}

pub(crate) fn parse_mode(m: &str) -> Result<Mode, String> {
    match m {
        "" | "persistent" => Ok(Mode::Persistent),
        "single-shot" | "single_shot" => Ok(Mode::SingleShot),
        _ => Err(r#"mode must be "persistent" or "single-shot""#.into()),
    }
}

/// Validates in go-livepeer's order; `priced` is "onchain".
pub(crate) fn normalize(req: HeartbeatRequest, priced: bool) -> Result<Advert, String> {
    if !valid_runner_url(&req.runner_url) {
        return Err("invalid runner_url".into());
    }
    if req.app.is_empty() || req.app != req.app.trim() {
        return Err("app must be trimmed".into());
    }
    validate_metadata(&req.metadata)?;
    if req.status != req.status.trim().to_lowercase() {
        return Err("status must be lowercase and trimmed".into());
    }
    let mode = parse_mode(&req.mode)?;
    if req.capacity < 0 {
        return Err("capacity must be >= 0".into());
    }
    let capacity = u32::try_from(req.capacity).unwrap_or(u32::MAX).max(1);
    let price = if priced {
        Some(req.price_info.unwrap_or_default().normalize()?)
    } else {
        None
    };
    Ok(Advert {
        label: req.label,
        proxy: req.proxy,
        runner_url: req.runner_url,
        version: req.version,
        metadata: req.metadata,
        status: req.status,
        mode,
        gpu: req.gpu.map(RawGpu::into_gpu),
        app: req.app,
        capacity,
        price,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: Value, priced: bool) -> Result<Advert, String> {
        normalize(parse_heartbeat(v.to_string().as_bytes())?, priced)
    }

    #[test]
    fn validation_errors_and_defaults() {
        let base = serde_json::json!({"runner_url":"http://r:9000","app":"a/b"});
        let a = norm(base.clone(), false).unwrap();
        assert_eq!(
            (a.mode, a.capacity, a.price.clone()),
            (Mode::Persistent, 1, None)
        );
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            norm(b, false)
        };
        assert_eq!(
            with("runner_url", "ftp://x".into()).unwrap_err(),
            "invalid runner_url"
        );
        assert_eq!(
            with("runner_url", "/rel".into()).unwrap_err(),
            "invalid runner_url"
        );
        assert_eq!(with("app", " a".into()).unwrap_err(), "app must be trimmed");
        assert_eq!(with("app", "".into()).unwrap_err(), "app must be trimmed");
        assert_eq!(
            with("metadata", "x".repeat(1025).into()).unwrap_err(),
            "metadata must be at most 1024 bytes"
        );
        assert!(
            with("metadata", "\u{FFFD}".into())
                .unwrap_err()
                .contains("U+FFFD")
        );
        assert_eq!(
            with("status", "Ready".into()).unwrap_err(),
            "status must be lowercase and trimmed"
        );
        assert_eq!(
            with("mode", "batch".into()).unwrap_err(),
            r#"mode must be "persistent" or "single-shot""#
        );
        assert_eq!(
            with("mode", "single_shot".into()).unwrap().mode,
            Mode::SingleShot
        );
        assert_eq!(
            with("capacity", (-1).into()).unwrap_err(),
            "capacity must be >= 0"
        );
        assert_eq!(with("capacity", 3.into()).unwrap().capacity, 3);
        assert_eq!(
            with("gpu", 1.into()).unwrap().gpu,
            Some(Gpu {
                id: "1".into(),
                ..Gpu::default()
            })
        );
    }

    #[test]
    fn invalid_utf8_metadata_is_refused() {
        let mut body = br#"{"runner_url":"http://r","app":"a","metadata":"x"#.to_vec();
        body.push(0xff);
        body.extend_from_slice(br#""}"#);
        let err = normalize(parse_heartbeat(&body).unwrap(), false).unwrap_err();
        assert!(err.contains("U+FFFD"), "{err}");
    }

    #[test]
    fn onchain_prices_are_validated() {
        let base = serde_json::json!({"runner_url":"http://r","app":"a"});
        assert_eq!(
            norm(base.clone(), true).unwrap_err(),
            "price_info.price is required"
        );
        let mut b = base.clone();
        b["price_info"] = serde_json::json!({"price": 0});
        assert_eq!(
            norm(b, true).unwrap_err(),
            "price_info.price must be a positive decimal"
        );
        let mut b = base.clone();
        b["price_info"] = serde_json::json!({"price": "3.5"});
        let p = norm(b, true).unwrap().price.unwrap();
        assert_eq!((p.text.as_str(), p.unit.usd_name()), ("3.5", "hour"));
        let mut b = base;
        b["price_info"] = serde_json::json!({"price": 1, "unit": "day"});
        assert_eq!(
            norm(b, true).unwrap_err(),
            "price_info.unit must be hour, 720p, or fixed"
        );
    }
}
