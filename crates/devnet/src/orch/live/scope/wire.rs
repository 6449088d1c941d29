//! How the Python runner prints things: `json.dumps` with default separators and
//! `ensure_ascii` (events), `repr` of values (log text), and the logging line format
//! (logs_config.py:52).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::protocol::LogRecord;

/// `json.dumps(v)`: `", "` and `": "` separators, non-ASCII escaped.
pub(crate) fn py_json(v: &Value) -> String {
    let mut s = String::new();
    dump(v, &mut s);
    s
}

fn dump(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => quote(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                quote(k, out);
                out.push_str(": ");
                dump(x, out);
            }
            out.push('}');
        }
    }
}

fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `f"{v}"` of a decoded JSON value (`None`, `True`, `'text'` inside containers).
pub(crate) fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr` of a decoded JSON value.
pub(crate) fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, x)| format!("'{k}': {}", py_repr(x)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// `%(asctime)s` (UTC): `2026-05-01 12:00:00,123`.
fn asctime(t: SystemTime) -> String {
    let iso = super::super::rfc3339_nano(t);
    let millis = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    let date_time: String = iso.chars().take(19).collect();
    format!("{},{millis:03}", date_time.replacen('T', " ", 1))
}

/// One `logs` line: `%(asctime)s - %(name)s - %(levelname)s - %(connection_id)s%(message)s`
/// with `connection_id` = `[(<manifest_id>)] `.
pub(crate) fn log_line(r: &LogRecord, manifest_id: &str, at: SystemTime) -> String {
    format!(
        "{} - {} - {} - [({manifest_id})] {}",
        asctime(at),
        r.logger,
        r.level.as_str(),
        r.message
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn python_json_dumps() {
        assert_eq!(
            py_json(&json!({"type": "pong", "request_id": null, "l": [1, true, "é\n"]})),
            r#"{"l": [1, true, "\u00e9\n"], "request_id": null, "type": "pong"}"#
        );
        assert_eq!(py_json(&json!("🙂")), r#""\ud83d\ude42""#);
        let back: Value = serde_json::from_str(&py_json(&json!({"a": "🙂"}))).unwrap();
        assert_eq!(back, json!({"a": "🙂"}));
    }

    #[test]
    fn python_repr() {
        assert_eq!(py_str(&Value::Null), "None");
        assert_eq!(py_str(&json!("foo")), "foo");
        assert_eq!(py_repr(&json!({"keep": "alive"})), "{'keep': 'alive'}");
        assert_eq!(py_repr(&json!([true, null, 1.5])), "[True, None, 1.5]");
    }

    #[test]
    fn log_line_format() {
        let at = UNIX_EPOCH + Duration::from_millis(1_777_636_800_123);
        let r = LogRecord::error(
            "scope.server.frame_processor",
            "Pipeline setup failed: Pipeline gray not loaded",
        );
        assert_eq!(
            log_line(&r, "abc123", at),
            "2026-05-01 12:00:00,123 - scope.server.frame_processor - ERROR - [(abc123)] Pipeline setup failed: Pipeline gray not loaded"
        );
    }
}
