//! The error answers routes share, as reusable response sets for their `#[utoipa::path]`
//! annotations (`responses((status = 200, ...), Owned, Body)`): each status is described
//! once, every body is an [`super::types::ErrorBody`].

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Ref, RefOr};

fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

fn set(entries: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    entries
        .iter()
        .map(|(code, description)| ((*code).to_owned(), error(description)))
        .collect()
}

const KEY: (&str, &str) = ("401", "invalid or missing API key");
const BODY: [(&str, &str); 3] = [
    ("400", "a malformed body"),
    ("413", "body too large"),
    ("415", "not the content type the route takes"),
];

/// Routes that need a key: 401.
pub(crate) struct Keyed;

impl IntoResponses for Keyed {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[KEY])
    }
}

/// Routes on one of the caller's jobs (`{id}`): 401, and 404 for an id that is not the
/// caller's live job (another key's jobs look the same as none).
pub(crate) struct Owned;

impl IntoResponses for Owned {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[KEY, ("404", "no such job or stream for this key")])
    }
}

/// Routes that read a body (JSON, or a JPEG frame): 400, 413, 415.
pub(crate) struct Body;

impl IntoResponses for Body {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&BODY)
    }
}

/// Routes that write to a job that may have ended: 410.
pub(crate) struct Ended;

impl IntoResponses for Ended {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        set(&[("410", "the job has ended")])
    }
}

/// The job starts of both families: the body, the key, the budgets, the limits and what
/// the upstream candidates answered.
pub(crate) struct StartFailures;

impl IntoResponses for StartFailures {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut r = set(&[
            (
                "400",
                "a malformed body, or an orchestrator_url not allowed",
            ),
            KEY,
            ("402", "a budget the caller's jobs draw on has nothing left"),
            BODY[1],
            BODY[2],
            (
                "502",
                "every candidate refused or failed; rejections says why, retryable whether \
                 a later try may succeed",
            ),
            ("503", "no candidate had capacity or was reachable"),
        ]);
        let limited = ResponseBuilder::new()
            .description(
                "a limit was reached; rate-limit answers carry Retry-After (the start rate \
                 is checked before the key)",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                    .description(Some("seconds"))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        r.insert("429".into(), limited.into());
        r
    }
}
