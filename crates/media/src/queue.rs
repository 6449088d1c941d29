//! A bounded blocking queue that drops the oldest item when full: for live frames the newest
//! picture matters and latency must not grow when the encoder falls behind.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// Bounded MPMC queue; `push` never blocks, `pop` blocks until an item or close.
#[derive(Debug)]
pub(crate) struct DropOldest<T> {
    cap: usize,
    state: Mutex<State<T>>,
    ready: Condvar,
}

/// What `push` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; `dropped` older items were evicted to make room.
    Queued { dropped: usize, depth: usize },
    /// The queue is closed; the item was discarded.
    Closed,
}

impl<T> DropOldest<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            state: Mutex::new(State {
                items: VecDeque::with_capacity(cap.max(1)),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A poisoned lock only means another thread panicked mid-push; the deque is still
        // structurally valid, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, item: T) -> Pushed {
        let mut s = self.lock();
        if s.closed {
            return Pushed::Closed;
        }
        let mut dropped = 0;
        while s.items.len() >= self.cap {
            s.items.pop_front();
            dropped += 1;
        }
        s.items.push_back(item);
        let depth = s.items.len();
        drop(s);
        self.ready.notify_one();
        Pushed::Queued { dropped, depth }
    }

    /// Waits up to `timeout` for an item. `Err(())` once closed and drained.
    pub(crate) fn pop_timeout(&self, timeout: Duration) -> Result<Option<T>, ()> {
        let mut s = self.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                return Ok(Some(item));
            }
            if s.closed {
                return Err(());
            }
            let (guard, res) = self
                .ready
                .wait_timeout(s, timeout)
                .unwrap_or_else(|e| e.into_inner());
            s = guard;
            if res.timed_out() && s.items.is_empty() && !s.closed {
                return Ok(None);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn drops_oldest_and_counts() {
        let q = DropOldest::new(2);
        assert_eq!(
            q.push(1),
            Pushed::Queued {
                dropped: 0,
                depth: 1
            }
        );
        assert_eq!(
            q.push(2),
            Pushed::Queued {
                dropped: 0,
                depth: 2
            }
        );
        assert_eq!(
            q.push(3),
            Pushed::Queued {
                dropped: 1,
                depth: 2
            }
        );
        assert_eq!(q.pop_timeout(Duration::ZERO), Ok(Some(2)));
        assert_eq!(q.pop_timeout(Duration::ZERO), Ok(Some(3)));
        assert_eq!(q.pop_timeout(Duration::from_millis(1)), Ok(None));
        q.close();
        assert_eq!(q.push(4), Pushed::Closed);
        assert_eq!(q.pop_timeout(Duration::ZERO), Err(()));
    }

    #[test]
    fn close_wakes_blocked_consumer_after_drain() {
        let q = Arc::new(DropOldest::new(4));
        q.push(7);
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(item) = q2.pop_timeout(Duration::from_secs(5)) {
                got.extend(item);
            }
            got
        });
        q.close();
        assert_eq!(t.join().ok(), Some(vec![7]));
    }
}
