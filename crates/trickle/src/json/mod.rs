//! JSON messages over trickle channels (control, events, Scope's channels).
//!
//! Two framings exist in the wild:
//! - **one document per segment** (go-livepeer control/events; spec §4): the segment boundary
//!   is the message boundary and a document may lack a trailing newline;
//! - **newline-delimited** (Scope): several one-line objects per segment, segments rotated
//!   about every 10 s.
//!
//! [`JsonWriter`] writes either framing, with an optional `{"keep":"alive"}` when idle.
//! [`JsonReader`] accepts both, even mixed, and skips what it cannot use (empty segments,
//! invalid JSON, oversized messages, keepalives), counting each case.

mod decode;
mod reader;
mod writer;

use serde_json::Value;

pub use decode::{JsonDecoder, JsonStats};
pub use reader::{JsonReader, JsonReaderConfig};
pub use writer::{Framing, JsonWriter, JsonWriterConfig};

/// The keepalive document (server/ai_live_video.go control loop); readers drop it.
pub const KEEPALIVE: &[u8] = br#"{"keep":"alive"}"#;

/// Whether `v` is the keepalive document `{"keep":"alive"}`.
pub fn is_keepalive(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.get("keep").and_then(Value::as_str) == Some("alive"))
}
