//! The server's segment buffer: an append-only list of chunks that readers follow while the
//! publisher is still writing.
//!
//! Chunks are kept as the `Bytes` the HTTP layer delivered, so relaying a segment to any
//! number of subscribers copies nothing. Readers wait on a `watch` channel whose value is
//! bumped on every write and on close; subscribing before checking the state means no wake-up
//! is ever lost.

use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;

#[derive(Debug, Default)]
struct State {
    chunks: Vec<Bytes>,
    len: usize,
    closed: bool,
}

/// One segment of a channel.
#[derive(Debug)]
pub(crate) struct Segment {
    seq: u64,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Segment {
    pub(crate) fn new(seq: u64) -> Self {
        Self {
            seq,
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(0),
        }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another task panicked mid-update of plain counters;
        // the chunk list itself is always consistent, so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a chunk and wakes readers. Returns the segment's new length.
    ///
    /// Writes after close are still appended (a second POST to the same seq appends, as in
    /// go-livepeer), but readers that already reached the end of a closed segment stop there.
    pub(crate) fn write(&self, chunk: Bytes) -> usize {
        let len = {
            let mut st = self.lock();
            st.len += chunk.len();
            st.chunks.push(chunk);
            st.len
        };
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        len
    }

    /// Marks the segment complete and wakes every reader and any publisher waiting for its
    /// first byte. Idempotent.
    pub(crate) fn close(&self) {
        let was_closed = std::mem::replace(&mut self.lock().closed, true);
        if !was_closed {
            self.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Bytes written so far.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }

    /// Waits until the segment is closed.
    pub(crate) async fn closed(&self) {
        let mut rx = self.changed.subscribe();
        while !self.is_closed() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Returns chunk number `*pos` once it exists and advances `pos`; `None` once the
    /// segment is closed and the reader has everything.
    pub(crate) async fn read(&self, pos: &mut usize) -> Option<Bytes> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let st = self.lock();
                if let Some(chunk) = st.chunks.get(*pos) {
                    *pos += 1;
                    return Some(chunk.clone());
                }
                if st.closed {
                    return None;
                }
            }
            // The sender lives as long as `self`, so this cannot fail while we hold `&self`.
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn reader_follows_writes_and_ends_on_close() {
        let seg = Arc::new(Segment::new(0));
        seg.write(Bytes::from_static(b"ab"));
        let reader = {
            let seg = seg.clone();
            tokio::spawn(async move {
                let mut pos = 0;
                let mut out = Vec::new();
                while let Some(c) = seg.read(&mut pos).await {
                    out.extend_from_slice(&c);
                }
                out
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        seg.write(Bytes::from_static(b"cd"));
        seg.close();
        let out = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("reader ended")
            .unwrap();
        assert_eq!(out, b"abcd");
        assert_eq!(seg.len(), 4);
    }

    #[tokio::test]
    async fn closed_wakes_waiters() {
        let seg = Arc::new(Segment::new(3));
        let waiter = {
            let seg = seg.clone();
            tokio::spawn(async move { seg.closed().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        seg.close();
        seg.close();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(seg.seq(), 3);
    }
}
