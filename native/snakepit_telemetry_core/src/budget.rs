//! A bound on what one producer may have queued: at most `max_items` items
//! and `max_bytes` bytes at once, shared between the threads that queue
//! (a BEAM scheduler pushing a worker's output line) and the one that
//! drains (the stderr ingest thread). Admission is exact under concurrency:
//! a compare-and-swap, so racing producers never overshoot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Both counts are packed in one word (items in the high 24 bits, bytes in
/// the low 40) so a single compare-and-swap admits both.
const BYTES_BITS: u32 = 40;
const BYTES_MASK: u64 = (1 << BYTES_BITS) - 1;

#[derive(Debug)]
pub struct QueueBudget {
    max_items: u64,
    max_bytes: u64,
    /// `items << BYTES_BITS | bytes`.
    used: AtomicU64,
}

impl QueueBudget {
    /// `max_items` below 2^24, `max_bytes` below 2^40.
    pub fn new(max_items: usize, max_bytes: usize) -> QueueBudget {
        let (items, bytes) = (max_items as u64, max_bytes as u64);
        assert!(
            items < 1 << (64 - BYTES_BITS) && bytes <= BYTES_MASK,
            "budget too large"
        );
        QueueBudget {
            max_items: items,
            max_bytes: bytes,
            used: AtomicU64::new(0),
        }
    }

    /// Takes room for one item of `bytes`; false (nothing taken) when it
    /// does not fit.
    pub fn try_admit(&self, bytes: usize) -> bool {
        let bytes = bytes as u64;
        self.used
            .fetch_update(Relaxed, Relaxed, |used| {
                let (items, held) = (used >> BYTES_BITS, used & BYTES_MASK);
                let fits = items < self.max_items && held.saturating_add(bytes) <= self.max_bytes;
                fits.then(|| ((items + 1) << BYTES_BITS) | (held + bytes))
            })
            .is_ok()
    }

    /// Gives back the room of one admitted item of `bytes`.
    pub fn release(&self, bytes: usize) {
        let one = (1u64 << BYTES_BITS) | bytes as u64;
        let before = self.used.fetch_sub(one, Relaxed);
        debug_assert!(before >= one, "released more than was admitted");
    }

    /// `(items, bytes)` held now.
    pub fn used(&self) -> (usize, usize) {
        let used = self.used.load(Relaxed);
        ((used >> BYTES_BITS) as usize, (used & BYTES_MASK) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bounds_items_and_bytes() {
        let b = QueueBudget::new(3, 100);
        assert!(b.try_admit(40) && b.try_admit(40));
        assert!(!b.try_admit(21), "bytes over the bound");
        assert!(b.try_admit(20));
        assert!(!b.try_admit(0), "items over the bound");
        assert_eq!(b.used(), (3, 100));
        b.release(40);
        assert_eq!(b.used(), (2, 60));
        assert!(b.try_admit(40));
    }

    #[test]
    fn an_item_larger_than_the_budget_never_fits() {
        let b = QueueBudget::new(10, 100);
        assert!(!b.try_admit(101));
        assert!(!b.try_admit(usize::MAX));
        assert_eq!(b.used(), (0, 0));
    }

    #[test]
    fn racing_producers_never_overshoot() {
        let b = Arc::new(QueueBudget::new(1_000, 1_000_000));
        let admitted: usize = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..10_000).filter(|_| b.try_admit(7)).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 1_000);
        assert_eq!(b.used(), (1_000, 7_000));
    }
}
