//! Per-stream counters, written by the stream task and read by `stream_stats`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;

use snakepit_telemetry_core::lifecycle::StreamState;
use snakepit_telemetry_core::totals::Sources;
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
    /// Events the stream's own pattern sampling left out (stock peers).
    pub nif_sampled_out: AtomicU64,
    /// True while that sampling is on (else the worker samples).
    pub nif_samples: AtomicBool,
    /// A `StreamState` as `u8` (0, `Connecting`, by default).
    state: AtomicU8,
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

    pub fn set_state(&self, state: StreamState) {
        self.state.store(state as u8, Relaxed);
    }

    pub fn state(&self) -> StreamState {
        StreamState::from_u8(self.state.load(Relaxed))
    }

    pub fn set_rpc(&self, rpc: &'static str) {
        *self.rpc.lock().unwrap() = rpc;
    }

    pub fn set_error(&self, e: impl ToString) {
        *self.last_error.lock().unwrap() = Some(e.to_string());
    }
}
