//! The gateway token: one opaque string that carries where to find orchestrators and how to pay.
//!
//! A token is standard base64 of a JSON object
//! `{orchestrators, signer, signer_headers, discovery, discovery_headers}`; every key is
//! optional. Values present in a token win over explicitly configured ones (see
//! [`Settings::with_token`](crate::Settings::with_token)).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

/// Why a token could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is not standard (padded) base64.
    #[error("invalid token: expected base64-encoded JSON")]
    Base64,
    /// The decoded bytes are not UTF-8 JSON.
    #[error("invalid token: expected UTF-8 JSON payload")]
    Json,
    /// The JSON is valid but not an object.
    #[error("invalid token: payload must be a JSON object")]
    NotAnObject,
    /// A field has the wrong shape.
    #[error("invalid token: {field} must be {expected}")]
    Field {
        /// The offending key.
        field: &'static str,
        /// What the key must hold.
        expected: &'static str,
    },
}

/// The decoded contents of a gateway token. `Debug` shows header names, not values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token {
    /// Orchestrator URLs to use instead of discovery (trimmed, never empty strings).
    pub orchestrators: Option<Vec<String>>,
    /// Remote signer base URL.
    pub signer: Option<String>,
    /// Headers sent on every remote-signer call (e.g. `Authorization`).
    pub signer_headers: Option<BTreeMap<String, String>>,
    /// Discovery endpoint URL.
    pub discovery: Option<String>,
    /// Headers sent to the discovery endpoint.
    pub discovery_headers: Option<BTreeMap<String, String>>,
}

impl Token {
    /// Decodes a token. Surrounding whitespace is ignored.
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| TokenError::Base64)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| TokenError::Json)?;
        let value: Value = serde_json::from_str(text).map_err(|_| TokenError::Json)?;
        let Value::Object(map) = value else {
            return Err(TokenError::NotAnObject);
        };
        Ok(Self {
            orchestrators: orchestrators(map.get("orchestrators"))?,
            signer: string(map.get("signer"), "signer")?,
            signer_headers: headers(map.get("signer_headers"), "signer_headers")?,
            discovery: string(map.get("discovery"), "discovery")?,
            discovery_headers: headers(map.get("discovery_headers"), "discovery_headers")?,
        })
    }

    /// Encodes the token (the inverse of [`Token::parse`]); handy for tools and tests.
    pub fn encode(&self) -> String {
        let mut map = serde_json::Map::new();
        if let Some(o) = &self.orchestrators {
            map.insert("orchestrators".into(), o.clone().into());
        }
        if let Some(s) = &self.signer {
            map.insert("signer".into(), s.clone().into());
        }
        if let Some(h) = &self.signer_headers {
            map.insert("signer_headers".into(), headers_json(h));
        }
        if let Some(d) = &self.discovery {
            map.insert("discovery".into(), d.clone().into());
        }
        if let Some(h) = &self.discovery_headers {
            map.insert("discovery_headers".into(), headers_json(h));
        }
        base64::engine::general_purpose::STANDARD.encode(Value::Object(map).to_string())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redact::HeaderNames;
        f.debug_struct("Token")
            .field("orchestrators", &self.orchestrators)
            .field("signer", &self.signer)
            .field(
                "signer_headers",
                &self.signer_headers.as_ref().map(HeaderNames),
            )
            .field("discovery", &self.discovery)
            .field(
                "discovery_headers",
                &self.discovery_headers.as_ref().map(HeaderNames),
            )
            .finish()
    }
}

fn headers_json(h: &BTreeMap<String, String>) -> Value {
    Value::Object(
        h.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn string(v: Option<&Value>, field: &'static str) -> Result<Option<String>, TokenError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::Field {
            field,
            expected: "a string",
        }),
    }
}

fn headers(
    v: Option<&Value>,
    field: &'static str,
) -> Result<Option<BTreeMap<String, String>>, TokenError> {
    let err = TokenError::Field {
        field,
        expected: "a {string: string} object",
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(err.clone()),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(err),
    }
}

fn orchestrators(v: Option<&Value>) -> Result<Option<Vec<String>>, TokenError> {
    let err = TokenError::Field {
        field: "orchestrators",
        expected: "an array of non-empty strings",
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item.as_str().map(str::trim) {
                Some(s) if !s.is_empty() => Ok(s.to_owned()),
                _ => Err(err.clone()),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn parses_every_field() {
        let t = Token::parse(&b64(
            r#"{"orchestrators":[" https://o1:8935 ","o2:8935"],"signer":"http://s:8081",
               "signer_headers":{"Authorization":"Bearer x"},"discovery":"http://d/list",
               "discovery_headers":{"X-Key":"k"}}"#,
        ))
        .unwrap();
        assert_eq!(
            t.orchestrators.as_deref(),
            Some(&["https://o1:8935".to_owned(), "o2:8935".to_owned()][..])
        );
        assert_eq!(t.signer.as_deref(), Some("http://s:8081"));
        assert_eq!(t.signer_headers.unwrap()["Authorization"], "Bearer x");
        assert_eq!(t.discovery.as_deref(), Some("http://d/list"));
        assert_eq!(t.discovery_headers.unwrap()["X-Key"], "k");
    }

    #[test]
    fn empty_object_is_an_empty_token() {
        assert_eq!(Token::parse(&b64("{}")).unwrap(), Token::default());
        assert_eq!(
            Token::parse(&b64(r#"{"signer":null}"#)).unwrap(),
            Token::default()
        );
    }

    #[test]
    fn encode_round_trips() {
        let t = Token {
            orchestrators: Some(vec!["https://a:1".into()]),
            signer: Some("http://s".into()),
            signer_headers: Some(BTreeMap::from([("A".into(), "b".into())])),
            discovery: None,
            discovery_headers: None,
        };
        assert_eq!(Token::parse(&t.encode()).unwrap(), t);
    }

    #[test]
    fn invalid_tokens_say_why() {
        let cases = [
            ("not base64!".to_owned(), TokenError::Base64),
            (b64("{not json"), TokenError::Json),
            (
                base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe]),
                TokenError::Json,
            ),
            (b64("[1,2]"), TokenError::NotAnObject),
            (
                b64(r#"{"signer":5}"#),
                TokenError::Field {
                    field: "signer",
                    expected: "a string",
                },
            ),
            (
                b64(r#"{"orchestrators":["a",""]}"#),
                TokenError::Field {
                    field: "orchestrators",
                    expected: "an array of non-empty strings",
                },
            ),
            (
                b64(r#"{"orchestrators":"a,b"}"#),
                TokenError::Field {
                    field: "orchestrators",
                    expected: "an array of non-empty strings",
                },
            ),
            (
                b64(r#"{"signer_headers":{"a":1}}"#),
                TokenError::Field {
                    field: "signer_headers",
                    expected: "a {string: string} object",
                },
            ),
        ];
        for (token, want) in cases {
            assert_eq!(Token::parse(&token), Err(want.clone()), "token {token}");
            assert!(want.to_string().starts_with("invalid token"));
        }
    }
}
