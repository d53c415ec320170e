//! The bounded queue between a stream's generator and its response stream,
//! like the Python worker's: the generator only pushes what fits (and counts
//! the rest as dropped); the sender takes up to a batch at a time. One
//! producer and one consumer; both sides move many events per lock.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::generator::Stamped;

/// The queue was closed (the stream is ending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[derive(Debug, Default)]
struct State {
    events: VecDeque<Stamped>,
    closed: bool,
}

#[derive(Debug)]
pub struct EventQueue {
    state: Mutex<State>,
    capacity: usize,
    /// Signalled when events were pushed or the queue closed (wakes the consumer).
    items: Notify,
    /// Signalled when events were taken or the queue closed (wakes the producer).
    space: Notify,
}

impl EventQueue {
    pub fn new(capacity: usize) -> EventQueue {
        EventQueue {
            state: Mutex::new(State {
                events: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            capacity,
            items: Notify::new(),
            space: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the deque inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Free slots now. With a single producer this only grows until its next
    /// push, so everything up to it fits.
    pub fn room(&self) -> Result<usize, Closed> {
        let s = self.lock();
        if s.closed {
            return Err(Closed);
        }
        Ok(self.capacity - s.events.len())
    }

    /// Appends events that fit (callers check [`room`](Self::room) first;
    /// any excess is discarded to keep the bound).
    pub fn push_all(&self, events: Vec<Stamped>) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        {
            let mut s = self.lock();
            if s.closed {
                return Err(Closed);
            }
            let room = self.capacity - s.events.len();
            s.events.extend(events.into_iter().take(room));
        }
        self.items.notify_one();
        Ok(())
    }

    /// Waits until at least one slot is free.
    pub async fn wait_room(&self) -> Result<usize, Closed> {
        loop {
            match self.room()? {
                0 => self.space.notified().await,
                n => return Ok(n),
            }
        }
    }

    /// Takes up to `max` events, waiting for at least one. `None` once the
    /// queue is closed and empty (what is left is still delivered).
    pub async fn pop_batch(&self, max: usize) -> Option<Vec<Stamped>> {
        loop {
            {
                let mut s = self.lock();
                if !s.events.is_empty() {
                    let n = max.min(s.events.len());
                    let batch: Vec<Stamped> = s.events.drain(..n).collect();
                    drop(s);
                    self.space.notify_one();
                    return Some(batch);
                }
                if s.closed {
                    return None;
                }
            }
            // notify_one stores a permit when nobody waits, so a push between
            // the check above and this await is not lost.
            self.items.notified().await;
        }
    }

    /// Ends the queue: pushes fail, the consumer drains what is left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.items.notify_one();
        self.space.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn events(n: usize) -> Vec<Stamped> {
        (0..n as i64)
            .map(|i| Stamped {
                template: 0,
                timestamp_ns: i,
            })
            .collect()
    }

    #[tokio::test]
    async fn bounded_and_drained_in_batches() {
        let q = EventQueue::new(4);
        assert_eq!(q.room(), Ok(4));
        q.push_all(events(6)).unwrap();
        assert_eq!(q.room(), Ok(0));
        let b = q.pop_batch(3).await.unwrap();
        assert_eq!(
            b.iter().map(|e| e.timestamp_ns).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(q.room(), Ok(3));
        assert_eq!(q.pop_batch(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn close_delivers_the_rest_then_ends() {
        let q = EventQueue::new(4);
        q.push_all(events(2)).unwrap();
        q.close();
        assert_eq!(q.push_all(events(1)), Err(Closed));
        assert_eq!(q.room(), Err(Closed));
        assert_eq!(q.pop_batch(10).await.unwrap().len(), 2);
        assert_eq!(q.pop_batch(10).await, None);
    }

    #[tokio::test]
    async fn waiters_wake_up() {
        let q = Arc::new(EventQueue::new(1));
        let consumer = tokio::spawn({
            let q = q.clone();
            async move { q.pop_batch(1).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        q.push_all(events(1)).unwrap();
        assert_eq!(consumer.await.unwrap().unwrap().len(), 1);

        q.push_all(events(1)).unwrap();
        let producer = tokio::spawn({
            let q = q.clone();
            async move { q.wait_room().await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        q.pop_batch(1).await.unwrap();
        assert_eq!(producer.await.unwrap(), Ok(1));
    }
}
