//! The running totals a worker reports, kept per source (see [`Sources`]).
//! Pure bookkeeping: the NIF's stream stats hold one behind a mutex.

use crate::scan::BatchTotals;

/// The running totals workers report on the batched RPC, kept per source
/// (the emitting process, `source_id` in the proto): a worker restarted on
/// the same address counts from zero again, so its totals are added to the
/// previous one's, not compared with them. O(1) memory: only the current
/// source is kept apart.
///
/// The totals are the worker's word, so untrusted: each is clamped to
/// [`MAX_TOTAL`] and every sum saturates, so hostile values (2^64 - 1,
/// source ids that alternate every frame) never wrap.
/// More events than any worker can emit in its life (2^53: exact in a
/// double, a small integer on the BEAM's side of the sums).
pub const MAX_TOTAL: u64 = 1 << 53;

#[derive(Default)]
pub struct Sources {
    /// Whether any frame carried totals (the stock RPC carries none).
    reported: bool,
    current: Option<Current>,
    /// Sums over the sources before the current one.
    closed: BatchTotals,
    lost: u64,
}

struct Current {
    totals: BatchTotals,
    /// Events of this source that reached the NIF (valid or rejected).
    seen: u64,
}

impl Sources {
    /// Records a batch frame's totals and how many events it carried.
    pub fn observe(&mut self, t: &BatchTotals, events: u64) {
        self.reported = true;
        let same = match &self.current {
            // Without an id, totals going down mean a new process.
            Some(c) => {
                c.totals.source_id == t.source_id
                    && !(t.source_id == 0 && t.emitted < c.totals.emitted)
            }
            None => false,
        };
        if !same {
            if let Some(c) = self.current.take() {
                self.close(c);
            }
        }
        let c = self.current.get_or_insert(Current {
            totals: BatchTotals {
                source_id: t.source_id,
                ..BatchTotals::default()
            },
            seen: 0,
        });
        combine(&mut c.totals, t, |mine, theirs| {
            mine.max(theirs.min(MAX_TOTAL))
        });
        c.seen = c.seen.saturating_add(events);
    }

    /// A source is over: what it emitted and neither sent nor dropped was
    /// lost with its connection (estimated from its own count).
    fn close(&mut self, c: Current) {
        let t = &c.totals;
        let accounted = [t.dropped, t.sampled_out, t.filtered_out, t.disabled]
            .into_iter()
            .fold(c.seen, u64::saturating_add);
        self.lost = self
            .lost
            .saturating_add(t.emitted.saturating_sub(accounted))
            .min(MAX_TOTAL);
        add(&mut self.closed, t);
    }

    /// Totals over every source so far, the events lost with closed ones,
    /// and whether any totals were reported at all.
    pub fn totals(&self) -> (BatchTotals, u64, bool) {
        let mut sum = self.closed;
        if let Some(c) = &self.current {
            add(&mut sum, &c.totals);
        }
        (sum, self.lost, self.reported)
    }
}

/// Adds `t` to `sum`, each total saturating at [`MAX_TOTAL`].
fn add(sum: &mut BatchTotals, t: &BatchTotals) {
    combine(sum, t, |s, v| s.saturating_add(v).min(MAX_TOTAL));
}

/// Sets each counted total of `into` to `f(into's, from's)` (not the id).
fn combine(into: &mut BatchTotals, from: &BatchTotals, f: impl Fn(u64, u64) -> u64) {
    for (mine, theirs) in [
        (&mut into.dropped, from.dropped),
        (&mut into.emitted, from.emitted),
        (&mut into.sampled_out, from.sampled_out),
        (&mut into.filtered_out, from.filtered_out),
        (&mut into.disabled, from.disabled),
        (&mut into.auth_rejected, from.auth_rejected),
    ] {
        *mine = f(*mine, theirs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(source_id: u64, v: u64) -> BatchTotals {
        BatchTotals {
            source_id,
            dropped: v,
            emitted: v,
            sampled_out: v,
            filtered_out: v,
            disabled: v,
            auth_rejected: v,
        }
    }

    #[test]
    fn hostile_totals_never_wrap() {
        let mut s = Sources::default();
        for i in 0..1_000 {
            s.observe(&totals(1 + i % 2, u64::MAX), u64::MAX);
        }
        let (sum, lost, reported) = s.totals();
        assert!(reported);
        for v in [
            sum.dropped,
            sum.emitted,
            sum.sampled_out,
            sum.filtered_out,
            sum.disabled,
            lost,
        ] {
            assert!(v <= MAX_TOTAL, "{v}");
        }
    }

    #[test]
    fn no_frame_no_totals() {
        assert!(!Sources::default().totals().2);
    }
}
