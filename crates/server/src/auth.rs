//! API keys: where a request presents one, and constant-time matching against the
//! configured list.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// Who is calling: the index of the matched key, or everyone when the service runs open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    /// No keys are configured.
    Open,
    /// The configured key at this index.
    Key(usize),
}

impl Owner {
    /// A label for logs that does not reveal the key.
    pub(crate) fn label(self) -> String {
        match self {
            Self::Open => "open".into(),
            Self::Key(i) => format!("key#{i}"),
        }
    }
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys {
    keys: Vec<Vec<u8>>,
}

impl Keys {
    pub(crate) fn new(keys: &[String]) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|k| k.trim())
                .filter(|k| !k.is_empty())
                .map(|k| k.as_bytes().to_vec())
                .collect(),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// Matches a presented key. Every configured key is compared in full, so the time taken
    /// does not reveal which key (or how much of one) matched.
    pub(crate) fn check(&self, presented: Option<&str>) -> Option<Owner> {
        if self.is_open() {
            return Some(Owner::Open);
        }
        let presented = presented?.as_bytes();
        let mut found = None;
        for (i, k) in self.keys.iter().enumerate() {
            if ct_eq(k, presented) && found.is_none() {
                found = Some(Owner::Key(i));
            }
        }
        found
    }
}

/// Constant-time equality for equal lengths (`subtle`); lengths themselves are not secret.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The key a request presents: `X-API-Key`, then `Authorization: Bearer`, then (only where
/// `allow_query`) the `api_key` query parameter.
pub(crate) fn presented_key<'a>(
    headers: &'a HeaderMap,
    query_key: Option<&'a str>,
    allow_query: bool,
) -> Option<&'a str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    if allow_query { query_key } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_service_accepts_anyone() {
        assert_eq!(Keys::new(&[]).check(None), Some(Owner::Open));
    }

    #[test]
    fn keys_match_exactly() {
        let keys = Keys::new(&["alpha".into(), "beta".into()]);
        assert_eq!(keys.check(Some("beta")), Some(Owner::Key(1)));
        assert_eq!(keys.check(Some("bet")), None);
        assert_eq!(keys.check(Some("betaa")), None);
        assert_eq!(keys.check(None), None);
    }

    #[test]
    fn key_sources_in_order() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h, Some("q"), true), Some("q"));
        assert_eq!(presented_key(&h, Some("q"), false), None);
        h.insert("authorization", "Bearer  tok ".parse().unwrap());
        assert_eq!(presented_key(&h, Some("q"), true), Some("tok"));
        h.insert("x-api-key", "hdr".parse().unwrap());
        assert_eq!(presented_key(&h, Some("q"), true), Some("hdr"));
    }
}
