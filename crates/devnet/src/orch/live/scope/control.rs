//! The control channel as the Python runner reads it (python-gateway channel_reader.py:
//! 85-175): JSON lines, every document delivered (keepalives too), and a line that is not
//! JSON, or not an object, is an error that ends the control loop.

use std::collections::VecDeque;

use lpgw_trickle::TrickleError;
use lpgw_trickle::client::{SegmentReader, Subscriber, SubscriberConfig};
use lpgw_trickle::wire::SeqRequest;
use serde_json::Value;

/// Largest control segment (1 MiB, as the runner's reader).
const MAX_SEGMENT: usize = 1 << 20;

/// Splits complete lines off `buf` and decodes them (pure).
fn drain_lines(buf: &mut Vec<u8>, all: bool, out: &mut VecDeque<Result<Value, String>>) {
    loop {
        let end = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => i,
            None if all && !buf.is_empty() => buf.len(),
            None => return,
        };
        let line: Vec<u8> = buf.drain(..end.min(buf.len())).collect();
        if !buf.is_empty() {
            buf.remove(0);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push_back(decode(&line));
    }
}

fn decode(line: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(line) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(v) => {
            let kind = match v {
                Value::Array(_) => "list",
                Value::String(_) => "str",
                Value::Bool(_) => "bool",
                Value::Null => "NoneType",
                Value::Number(n) if n.is_f64() => "float",
                _ => "int",
            };
            Err(format!("Trickle event must be JSON object, got {kind}"))
        }
        Err(e) => Err(format!("Trickle event JSONL decode failed: {e}")),
    }
}

/// Reads control messages from the first segment on.
pub(crate) struct ControlReader {
    sub: Subscriber,
    seg: Option<SegmentReader>,
    buf: Vec<u8>,
    /// Bytes of the current segment so far.
    size: usize,
    out: VecDeque<Result<Value, String>>,
}

impl ControlReader {
    /// A reader of the control channel at `url`.
    pub(crate) fn new(url: &str) -> Result<Self, TrickleError> {
        let cfg = SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        };
        Ok(Self {
            sub: Subscriber::new(url, cfg)?,
            seg: None,
            buf: Vec::new(),
            size: 0,
            out: VecDeque::new(),
        })
    }

    /// The next document: `Ok(None)` when the channel is gone, `Err` for a line the runner
    /// cannot read (which ends its control loop).
    pub(crate) async fn next(&mut self) -> Result<Option<Value>, String> {
        loop {
            if let Some(v) = self.out.pop_front() {
                return v.map(Some);
            }
            let Some(seg) = self.seg.as_mut() else {
                match self.sub.next_segment().await {
                    Ok(Some(s)) => {
                        self.seg = Some(s);
                        self.size = 0;
                    }
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(e.to_string()),
                }
                continue;
            };
            match seg.chunk().await {
                Ok(Some(chunk)) => {
                    self.size += chunk.len();
                    if self.size > MAX_SEGMENT {
                        return Err(format!("Trickle segment exceeds {MAX_SEGMENT} bytes"));
                    }
                    self.buf.extend_from_slice(&chunk);
                    drain_lines(&mut self.buf, false, &mut self.out);
                }
                Ok(None) => {
                    drain_lines(&mut self.buf, true, &mut self.out);
                    self.seg = None;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "scope control segment broke off");
                    self.buf.clear();
                    self.seg = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lines_keepalives_and_errors() {
        let mut out = VecDeque::new();
        let mut buf = b"{\"keep\":\"alive\"}\n\n{\"type\":\"ping\"}\n{\"a\"".to_vec();
        drain_lines(&mut buf, false, &mut out);
        assert_eq!(out.pop_front(), Some(Ok(json!({"keep": "alive"}))));
        assert_eq!(out.pop_front(), Some(Ok(json!({"type": "ping"}))));
        assert!(out.is_empty());
        buf.extend_from_slice(b":1}");
        drain_lines(&mut buf, true, &mut out);
        assert_eq!(out.pop_front(), Some(Ok(json!({"a": 1}))));
        assert!(buf.is_empty());
        let mut buf = b"[1]\nnope\n".to_vec();
        drain_lines(&mut buf, false, &mut out);
        assert_eq!(
            out.pop_front(),
            Some(Err("Trickle event must be JSON object, got list".into()))
        );
        assert!(
            matches!(out.pop_front(), Some(Err(e)) if e.starts_with("Trickle event JSONL decode failed"))
        );
    }
}
