//! Per-stream counters, written by the stream task and read by `stream_stats`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use snakepit_telemetry_core::scan::BatchTotals;
use snakepit_telemetry_core::validate::Rejection;

#[derive(Default)]
pub struct StreamStats {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub events_received: AtomicU64,
    pub events_delivered: AtomicU64,
    pub batches_sent: AtomicU64,
    pub rejected: [AtomicU64; Rejection::REASONS.len()],
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    /// Running totals the workers report on the batched RPC.
    pub sources: Mutex<Sources>,
    /// Times the task stopped reading because Elixir had no credit left.
    pub credit_waits: AtomicU64,
    pub controls_sent: AtomicU64,
    pub state: Mutex<&'static str>,
    pub rpc: Mutex<&'static str>,
    pub last_error: Mutex<Option<String>>,
}

impl StreamStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn reject(&self, r: &Rejection) {
        let i = Rejection::REASONS
            .iter()
            .position(|x| *x == r.reason())
            .expect("listed");
        self.rejected[i].fetch_add(1, Relaxed);
    }

    pub fn set_state(&self, state: &'static str) {
        *self.state.lock().unwrap() = state;
    }

    pub fn set_rpc(&self, rpc: &'static str) {
        *self.rpc.lock().unwrap() = rpc;
    }

    pub fn set_error(&self, e: impl ToString) {
        *self.last_error.lock().unwrap() = Some(e.to_string());
    }
}

/// The running totals workers report on the batched RPC, kept per source
/// (the emitting process, `source_id` in the proto): a worker restarted on
/// the same address counts from zero again, so its totals are added to the
/// previous one's, not compared with them. O(1) memory: only the current
/// source is kept apart.
#[derive(Default)]
pub struct Sources {
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
        let k = &mut c.totals;
        for (mine, theirs) in [
            (&mut k.dropped, t.dropped),
            (&mut k.emitted, t.emitted),
            (&mut k.sampled_out, t.sampled_out),
            (&mut k.filtered_out, t.filtered_out),
            (&mut k.disabled, t.disabled),
        ] {
            *mine = (*mine).max(theirs);
        }
        c.seen += events;
    }

    /// A source is over: what it emitted and neither sent nor dropped was
    /// lost with its connection (estimated from its own count).
    fn close(&mut self, c: Current) {
        let t = &c.totals;
        let accounted = c.seen + t.dropped + t.sampled_out + t.filtered_out + t.disabled;
        self.lost += t.emitted.saturating_sub(accounted);
        add(&mut self.closed, t);
    }

    /// Totals over every source so far, and the events lost with closed ones.
    pub fn totals(&self) -> (BatchTotals, u64) {
        let mut sum = self.closed;
        if let Some(c) = &self.current {
            add(&mut sum, &c.totals);
        }
        (sum, self.lost)
    }
}

fn add(sum: &mut BatchTotals, t: &BatchTotals) {
    sum.dropped += t.dropped;
    sum.emitted += t.emitted;
    sum.sampled_out += t.sampled_out;
    sum.filtered_out += t.filtered_out;
    sum.disabled += t.disabled;
}
