//! Orchestrator discovery: which source to ask (pure) and how to ask it.
//!
//! Precedence, as in the reference SDK: token orchestrators → explicit list → token discovery
//! URL → explicit discovery URL → the signer's `GET /discover-orchestrators`. The token has
//! already been folded into [`Settings`] by [`Settings::with_token`], so the order here is
//! simply list → discovery URL → signer.

use std::collections::BTreeMap;

use serde_json::Value;
use tracing::debug;
use url::Url;

use crate::config::Settings;
use crate::error::Error;

/// The capability name used by discovery for live video-to-video (spec §6).
pub const LV2V_CAPABILITY: &str = "live-video-to-video";

/// Where the orchestrator list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverySource {
    /// A fixed list of orchestrator URLs.
    List(Vec<String>),
    /// A discovery endpoint answering `[{"address": ...}, ...]`.
    Endpoint {
        /// Full URL, including the `caps` filters.
        url: String,
        /// Headers to send.
        headers: BTreeMap<String, String>,
    },
}

impl DiscoverySource {
    /// Picks the source from settings, filtering endpoint discovery by `caps`
    /// (values such as `live-video-to-video/noop`).
    pub fn from_settings(settings: &Settings, caps: &[String]) -> Result<Self, Error> {
        let list: Vec<String> = settings
            .orchestrators
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        if !list.is_empty() {
            return Ok(Self::List(list));
        }
        let (base, headers) = if let Some(d) = non_empty(settings.discovery_url.as_deref()) {
            (parse_http_url(d)?, &settings.discovery_headers)
        } else if let Some(s) = non_empty(settings.signer_url.as_deref()) {
            let mut url = origin(&parse_http_url(s)?);
            url.set_path("/discover-orchestrators");
            (url, &settings.signer_headers)
        } else {
            return Err(Error::NoDiscoverySource);
        };
        Ok(Self::Endpoint {
            url: with_caps(base, caps),
            headers: headers.clone(),
        })
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// The discovery filter value for an LV2V model: `live-video-to-video/<model>`.
pub fn lv2v_cap(model: &str) -> String {
    format!("{LV2V_CAPABILITY}/{model}")
}

/// Parses an orchestrator or service URL; `host:port` means `https://host:port`.
pub(crate) fn parse_http_url(s: &str) -> Result<Url, Error> {
    let s = s.trim();
    let full = if s.contains("://") {
        s.to_owned()
    } else {
        format!("https://{s}")
    };
    let url = Url::parse(&full).map_err(|e| Error::Config(format!("invalid url {s:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::Config(format!(
            "invalid url {s:?}: need http(s)://host[:port]"
        )));
    }
    Ok(url)
}

/// `scheme://host:port` of a URL, without path, query or fragment.
pub(crate) fn origin(url: &Url) -> Url {
    let mut o = url.clone();
    o.set_path("");
    o.set_query(None);
    o.set_fragment(None);
    o
}

/// Appends one `caps=<value>` query pair per capability; `/` stays unescaped as the
/// reference does, and existing query pairs are kept.
fn with_caps(mut url: Url, caps: &[String]) -> String {
    for cap in caps {
        let encoded: String = url::form_urlencoded::byte_serialize(cap.as_bytes()).collect();
        let pair = format!("caps={}", encoded.replace("%2F", "/"));
        let query = match url.query() {
            Some(q) if !q.is_empty() => format!("{q}&{pair}"),
            _ => pair,
        };
        url.set_query(Some(&query));
    }
    url.into()
}

/// Extracts orchestrator addresses from a discovery answer: a JSON list of objects whose
/// `address` is a non-empty string; other entries are skipped.
pub(crate) fn parse_discovery_response(body: &[u8]) -> Result<Vec<String>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("discovery response must be a JSON list".into());
    };
    Ok(items
        .iter()
        .filter_map(|item| item.get("address")?.as_str())
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Resolves the orchestrator list, querying a discovery endpoint when configured.
pub async fn discover_orchestrators(
    settings: &Settings,
    caps: &[String],
) -> Result<Vec<String>, Error> {
    let (url, headers) = match DiscoverySource::from_settings(settings, caps)? {
        DiscoverySource::List(list) => return Ok(list),
        DiscoverySource::Endpoint { url, headers } => (url, headers),
    };
    debug!(%url, "querying discovery");
    let fail = |reason: String| Error::Discovery {
        url: url.clone(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(settings.signer_timeout)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut req = client.get(&url);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| fail(crate::http::describe(&e)))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| fail(crate::http::describe(&e)))?;
    if !status.is_success() {
        return Err(fail(format!(
            "HTTP {}: {}",
            status.as_u16(),
            crate::http::snippet(&body)
        )));
    }
    let list = parse_discovery_response(&body).map_err(fail)?;
    debug!(count = list.len(), "discovered orchestrators");
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Token;

    fn caps() -> Vec<String> {
        vec![lv2v_cap("noop")]
    }

    fn source(settings: &Settings) -> Result<DiscoverySource, Error> {
        DiscoverySource::from_settings(settings, &caps())
    }

    fn all_set() -> Settings {
        Settings {
            orchestrators: vec!["https://explicit:1".into()],
            discovery_url: Some("http://explicit-discovery/orchs".into()),
            signer_url: Some("http://signer:8081/some/path".into()),
            ..Settings::default()
        }
    }

    fn endpoint(url: &str) -> DiscoverySource {
        DiscoverySource::Endpoint {
            url: url.into(),
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn precedence_follows_the_reference() {
        let token_full = Token {
            orchestrators: Some(vec!["https://token:1".into()]),
            discovery: Some("http://token-discovery/x".into()),
            ..Token::default()
        };
        // 1. token orchestrators
        assert_eq!(
            source(&all_set().with_token(&token_full)).unwrap(),
            DiscoverySource::List(vec!["https://token:1".into()])
        );
        // 2. explicit list beats the token's discovery URL
        let token_disc = Token {
            discovery: token_full.discovery.clone(),
            ..Token::default()
        };
        assert_eq!(
            source(&all_set().with_token(&token_disc)).unwrap(),
            DiscoverySource::List(vec!["https://explicit:1".into()])
        );
        // 3. token discovery beats explicit discovery
        let mut no_list = all_set();
        no_list.orchestrators.clear();
        assert_eq!(
            source(&no_list.clone().with_token(&token_disc)).unwrap(),
            endpoint("http://token-discovery/x?caps=live-video-to-video/noop")
        );
        // 4. explicit discovery
        assert_eq!(
            source(&no_list).unwrap(),
            endpoint("http://explicit-discovery/orchs?caps=live-video-to-video/noop")
        );
        // 5. the signer's discovery endpoint, at the signer's origin
        no_list.discovery_url = None;
        assert_eq!(
            source(&no_list).unwrap(),
            endpoint("http://signer:8081/discover-orchestrators?caps=live-video-to-video/noop")
        );
        // nothing at all
        no_list.signer_url = None;
        assert!(matches!(source(&no_list), Err(Error::NoDiscoverySource)));
    }

    #[test]
    fn empty_token_list_falls_through_to_discovery() {
        let token = Token {
            orchestrators: Some(vec![]),
            ..Token::default()
        };
        assert_eq!(
            source(&all_set().with_token(&token)).unwrap(),
            endpoint("http://explicit-discovery/orchs?caps=live-video-to-video/noop")
        );
    }

    #[test]
    fn endpoint_headers_follow_the_source() {
        let mut s = Settings {
            signer_url: Some("http://signer".into()),
            signer_headers: BTreeMap::from([("Authorization".into(), "s".into())]),
            discovery_headers: BTreeMap::from([("Authorization".into(), "d".into())]),
            ..Settings::default()
        };
        let DiscoverySource::Endpoint { headers, .. } = source(&s).unwrap() else {
            panic!()
        };
        assert_eq!(headers["Authorization"], "s");
        s.discovery_url = Some("http://d".into());
        let DiscoverySource::Endpoint { headers, .. } = source(&s).unwrap() else {
            panic!()
        };
        assert_eq!(headers["Authorization"], "d");
    }

    #[test]
    fn caps_keep_existing_query_and_escape_other_characters() {
        let url = with_caps(
            Url::parse("http://d/x?region=eu").unwrap(),
            &[lv2v_cap("a b"), lv2v_cap("c")],
        );
        assert_eq!(
            url,
            "http://d/x?region=eu&caps=live-video-to-video/a+b&caps=live-video-to-video/c"
        );
    }

    #[test]
    fn discovery_response_keeps_only_addresses() {
        let body = br#"[{"address":" https://a:1 ","score":1},{"address":""},{"x":1},5,
                       {"address":"https://b:2","capabilities":["live-video-to-video/noop"]}]"#;
        assert_eq!(
            parse_discovery_response(body).unwrap(),
            ["https://a:1", "https://b:2"]
        );
        assert!(parse_discovery_response(b"{}").is_err());
        assert!(parse_discovery_response(b"garbage").is_err());
    }

    #[test]
    fn bare_host_port_means_https() {
        assert_eq!(
            parse_http_url("o:8935").unwrap().as_str(),
            "https://o:8935/"
        );
        assert!(parse_http_url("ftp://o").is_err());
    }
}
