//! The browser app, embedded in the binary: `index.html`, its stylesheet and its ES modules
//! (`web/*.js`, loaded with `<script type="module">`, no build step).
//!
//! Every file is served at its own path with its content type. The names carry no version,
//! so the answers say `Cache-Control: no-cache` with an `ETag` (a hash of the embedded
//! bytes): a browser revalidates each load and gets `304 Not Modified` until the binary
//! changes, never a stale module beside a new one. Paths not listed here fall through to
//! the router's 404.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::service::AppState;

/// One embedded file of the browser app.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asset {
    /// The path it is served at.
    pub(crate) path: &'static str,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Its bytes.
    pub(crate) body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// An ES module of the app: served at `/{name}` as JavaScript.
macro_rules! js_module {
    ($name:literal) => {
        Asset {
            path: concat!("/", $name),
            content_type: JS,
            body: include_str!(concat!("../../../web/", $name)),
        }
    };
}

/// Every file the app has; `index.html` is served at `/`.
pub(crate) const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../../web/index.html"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../../web/style.css"),
    },
    js_module!("app.js"),
    js_module!("ui.js"),
    js_module!("api.js"),
    js_module!("media.js"),
    js_module!("stats.js"),
];

/// A route for every embedded file.
pub(crate) fn routes() -> Router<AppState> {
    ASSETS.iter().fold(Router::new(), |r, &asset| {
        r.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(asset, &headers) }),
        )
    })
}

/// A strong validator for `body`: FNV-1a over its bytes.
fn etag(body: &str) -> String {
    let h = body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{h:016x}\"")
}

fn serve(asset: Asset, headers: &HeaderMap) -> Response {
    let tag = etag(asset.body);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        // Nothing the page loads or links to learns the page's URL.
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            assert_eq!(a.content_type, JS, "{}", a.path);
            for line in a.body.lines() {
                if let Some(rest) = line.split(" from '").nth(1) {
                    let name = rest.split('\'').next().unwrap_or_default();
                    let path = name.trim_start_matches('.');
                    assert!(
                        served.contains(&path),
                        "{} imports {name}, which is not served",
                        a.path
                    );
                }
            }
        }
        let index = ASSETS[0].body;
        assert!(index.contains(r#"<script type="module" src="/app.js">"#));
    }

    #[test]
    fn etags_differ_with_content() {
        assert_ne!(etag("a"), etag("b"));
        assert_eq!(etag("a"), etag("a"));
    }
}
