//! [`JsonDecoder`]: the pure incremental decoder behind [`super::JsonReader`].

use std::collections::VecDeque;

use serde_json::Value;
use tracing::warn;

use super::is_keepalive;

/// Counters of a [`JsonDecoder`] / [`JsonReader`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonStats {
    /// Messages delivered.
    pub messages: u64,
    /// Keepalives dropped.
    pub keepalives: u64,
    /// Stretches of invalid JSON skipped.
    pub invalid: u64,
    /// Messages skipped for exceeding the size limit.
    pub oversized: u64,
    /// Segments seen (including empty ones).
    pub segments: u64,
    /// Segments that ended without a single message.
    pub empty_segments: u64,
    /// Segments abandoned because their body failed or exceeded the segment limit.
    pub broken_segments: u64,
}

/// Incremental decoder of one segment's bytes into JSON values; accepts both framings.
///
/// Feed chunks with [`push`](Self::push) as they arrive and call
/// [`end_segment`](Self::end_segment) at the segment's end. Values are separated by
/// whitespace (newlines) or simply follow each other. On invalid JSON the decoder skips to
/// the next newline; a message larger than the limit is skipped the same way.
#[derive(Debug)]
pub struct JsonDecoder {
    buf: Vec<u8>,
    max_message: usize,
    /// Discarding input until the next newline.
    skipping: bool,
    messages_in_segment: u64,
    pub(super) stats: JsonStats,
}

impl JsonDecoder {
    /// A decoder that skips messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_message: max_message.max(2),
            skipping: false,
            messages_in_segment: 0,
            stats: JsonStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JsonStats {
        self.stats
    }

    /// Decodes as much of `chunk` (plus earlier leftovers) as possible into `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut VecDeque<Value>) {
        if self.skipping {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    chunk = &chunk[i + 1..];
                    self.skipping = false;
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(chunk);
        self.drain(false, out);
    }

    /// Ends the current segment: decodes what is left and resets for the next one.
    pub fn end_segment(&mut self, out: &mut VecDeque<Value>) {
        self.drain(true, out);
        self.stats.segments += 1;
        if self.messages_in_segment == 0 {
            self.stats.empty_segments += 1;
        }
        self.reset();
    }

    /// Drops a segment that broke off mid-way (counted as broken).
    pub fn abandon_segment(&mut self) {
        self.stats.segments += 1;
        self.stats.broken_segments += 1;
        self.reset();
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.skipping = false;
        self.messages_in_segment = 0;
    }

    fn drain(&mut self, at_end: bool, out: &mut VecDeque<Value>) {
        // Taken out so values can be delivered (mutating stats) while the buffer is borrowed.
        let mut buf = std::mem::take(&mut self.buf);
        let mut pos = 0;
        'outer: while pos < buf.len() {
            let slice = &buf[pos..];
            let mut stream = serde_json::Deserializer::from_slice(slice).into_iter::<Value>();
            loop {
                let start = stream.byte_offset();
                match stream.next() {
                    None => {
                        pos = buf.len();
                        break 'outer;
                    }
                    Some(Ok(v)) => {
                        let end = stream.byte_offset();
                        // A bare scalar at the very end may still grow ("12" then "3").
                        if !at_end && end == slice.len() && !(v.is_object() || v.is_array()) {
                            pos += start;
                            break 'outer;
                        }
                        self.deliver(v, end - start, out);
                    }
                    Some(Err(e)) if e.is_eof() && !at_end => {
                        pos += start;
                        break 'outer;
                    }
                    Some(Err(e)) => {
                        self.stats.invalid += 1;
                        warn!(error = %e, "invalid json in segment, skipping to next line");
                        // Resync after the broken value's line (not the newline before it).
                        let from = slice[start..]
                            .iter()
                            .position(|b| !b.is_ascii_whitespace())
                            .map_or(slice.len(), |i| start + i);
                        match slice[from..].iter().position(|b| *b == b'\n') {
                            Some(i) => {
                                pos += from + i + 1;
                                continue 'outer;
                            }
                            None => {
                                pos = buf.len();
                                self.skipping = !at_end;
                                break 'outer;
                            }
                        }
                    }
                }
            }
        }
        buf.drain(..pos.min(buf.len()));
        self.buf = buf;
        if self.buf.len() > self.max_message {
            self.stats.oversized += 1;
            warn!(
                limit = self.max_message,
                "json message over the size limit, skipping"
            );
            // The rest of this message may still be arriving: skip to its line's end.
            let nl = self.buf.iter().position(|b| *b == b'\n');
            match nl {
                Some(i) => {
                    self.buf.drain(..=i);
                    self.drain(at_end, out);
                }
                None => {
                    self.buf.clear();
                    self.skipping = !at_end;
                }
            }
        }
    }

    fn deliver(&mut self, v: Value, size: usize, out: &mut VecDeque<Value>) {
        if size > self.max_message {
            self.stats.oversized += 1;
            warn!(
                size,
                limit = self.max_message,
                "json message over the size limit, skipped"
            );
        } else if is_keepalive(&v) {
            self.stats.keepalives += 1;
        } else {
            self.stats.messages += 1;
            self.messages_in_segment += 1;
            out.push_back(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::json::KEEPALIVE;

    fn decode_segments(max: usize, segments: &[&[&[u8]]]) -> (Vec<Value>, JsonStats) {
        let mut d = JsonDecoder::new(max);
        let mut out = VecDeque::new();
        for seg in segments {
            for chunk in *seg {
                d.push(chunk, &mut out);
            }
            d.end_segment(&mut out);
        }
        (out.into_iter().collect(), d.stats())
    }

    #[test]
    fn one_document_per_segment_without_newline() {
        let (v, s) = decode_segments(1024, &[&[br#"{"a":1}"#], &[b"{\n  \"b\": [1,2]\n}"]]);
        assert_eq!(v, vec![json!({"a":1}), json!({"b":[1,2]})]);
        assert_eq!((s.messages, s.segments, s.invalid), (2, 2, 0));
    }

    #[test]
    fn newline_delimited_split_across_chunks() {
        let (v, _) = decode_segments(
            1024,
            &[&[b"{\"a\":", b"1}\n{\"b\"", b":2}\n", b"{\"c\":3}"]],
        );
        assert_eq!(v, vec![json!({"a":1}), json!({"b":2}), json!({"c":3})]);
    }

    #[test]
    fn values_arrive_before_segment_end() {
        let mut d = JsonDecoder::new(1024);
        let mut out = VecDeque::new();
        d.push(b"{\"a\":1}\n{\"b\":", &mut out);
        assert_eq!(out.pop_front(), Some(json!({"a":1})));
        assert!(out.is_empty());
        d.push(b"2}\n", &mut out);
        assert_eq!(out.pop_front(), Some(json!({"b":2})));
    }

    #[test]
    fn keepalives_are_filtered_and_counted() {
        let (v, s) = decode_segments(
            1024,
            &[&[KEEPALIVE], &[b"{\"keep\":\"alive\"}\n{\"x\":1}\n"]],
        );
        assert_eq!(v, vec![json!({"x":1})]);
        assert_eq!(s.keepalives, 2);
        assert_eq!(s.empty_segments, 1);
        // Not a keepalive: extra keys.
        assert!(!is_keepalive(&json!({"keep":"alive","x":1})));
    }

    #[test]
    fn invalid_json_is_skipped_to_next_line() {
        let (v, s) = decode_segments(
            1024,
            &[
                &[b"not json\n{\"ok\":1}\n{broken\n{\"ok\":2}"],
                &[b"\xff\xfe garbage"],
                &[b""],
                &[b"{\"ok\":3}"],
            ],
        );
        assert_eq!(v, vec![json!({"ok":1}), json!({"ok":2}), json!({"ok":3})]);
        assert_eq!(s.invalid, 3);
        assert_eq!(s.empty_segments, 2);
    }

    #[test]
    fn truncated_document_at_segment_end_is_invalid() {
        let (v, s) = decode_segments(1024, &[&[b"{\"a\":"], &[b"{\"b\":1}"]]);
        assert_eq!(v, vec![json!({"b":1})]);
        assert_eq!(s.invalid, 1);
    }

    #[test]
    fn oversized_messages_are_skipped() {
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(100));
        // Complete in one chunk.
        let line = format!("{big}\n{{\"ok\":1}}\n");
        let (v, s) = decode_segments(50, &[&[line.as_bytes()]]);
        assert_eq!(v, vec![json!({"ok":1})]);
        assert_eq!(s.oversized, 1);
        // Incomplete and growing across chunks: skipped without buffering it all.
        let (a, b) = big.as_bytes().split_at(60);
        let (v, s) = decode_segments(50, &[&[a, b, b"\n{\"ok\":2}\n"]]);
        assert_eq!(v, vec![json!({"ok":2})]);
        assert_eq!(s.oversized, 1);
    }

    #[test]
    fn scalar_at_chunk_end_waits_for_more() {
        let mut d = JsonDecoder::new(64);
        let mut out = VecDeque::new();
        d.push(b"12", &mut out);
        assert!(out.is_empty());
        d.push(b"3\n", &mut out);
        assert_eq!(out.pop_front(), Some(json!(123)));
    }
}
