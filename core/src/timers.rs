//! Deadlines in a min-heap, so a timeout wakes only what is due.
//!
//! Entries are never removed eagerly: each key remembers its current deadline, and a popped
//! entry whose deadline no longer matches is stale and skipped. Rescheduling is one push.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;
use std::time::Instant;

use rustc_hash::FxHashMap;

/// A set of keyed deadlines.
#[derive(Debug)]
pub(crate) struct Timers<K: Copy + Eq + Hash + Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    current: FxHashMap<K, Instant>,
}

impl<K: Copy + Eq + Hash + Ord> Timers<K> {
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            current: FxHashMap::default(),
        }
    }

    /// Sets (or moves) the deadline of `key`.
    pub(crate) fn schedule(&mut self, key: K, at: Instant) {
        if self.current.insert(key, at) != Some(at) {
            self.heap.push(Reverse((at, key)));
        }
        // Stale entries pile up only as fast as deadlines move; compact when they dominate.
        if self.heap.len() > 64 && self.heap.len() > 4 * self.current.len() {
            self.compact();
        }
    }

    /// (live deadlines, heap entries including stale ones).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.current.len(), self.heap.len())
    }

    /// Forgets `key`.
    pub(crate) fn cancel(&mut self, key: K) {
        self.current.remove(&key);
    }

    /// The earliest live deadline.
    pub(crate) fn next(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if self.current.get(&key) == Some(&at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns one key whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<K> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if self.current.get(&key) == Some(&at) {
                self.current.remove(&key);
                return Some(key);
            }
        }
        None
    }

    fn compact(&mut self) {
        let current = &self.current;
        self.heap
            .retain(|Reverse((at, key))| current.get(key) == Some(at));
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Tests own the clock.
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_order_and_skips_stale() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.schedule(1u32, t0 + Duration::from_millis(30));
        t.schedule(2u32, t0 + Duration::from_millis(10));
        t.schedule(1u32, t0 + Duration::from_millis(5)); // moves key 1 earlier
        t.schedule(3u32, t0 + Duration::from_millis(20));
        t.cancel(3);
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(5)));
        let due: Vec<_> =
            std::iter::from_fn(|| t.pop_due(t0 + Duration::from_millis(40))).collect();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn rescheduling_does_not_grow_without_bound() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        for i in 0..10_000u64 {
            t.schedule(i % 10, t0 + Duration::from_millis(i));
        }
        assert!(t.heap_len() <= 65);
    }
}
