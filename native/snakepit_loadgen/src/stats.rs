//! Counters of one stream and of the whole server.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Running counters of one stream, shared by its generator and its sender.
#[derive(Debug, Default)]
pub struct StreamStats {
    emitted: AtomicU64,
    dropped: AtomicU64,
    filtered: AtomicU64,
    sampled_out: AtomicU64,
    disabled: AtomicU64,
    sent: AtomicU64,
    /// Names this stream's totals on the wire (`source_id`): each stream
    /// counts from zero, like a freshly started worker.
    source_id: u64,
}

/// Counts at one moment (or their sum over streams).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Events generated (before the toggle, sampling and filters):
    /// `emitted = sent + queued + dropped + filtered + sampled_out + disabled`.
    pub emitted: u64,
    /// Events that found the queue full.
    pub dropped: u64,
    /// Events suppressed by the allow/deny filter (not drops).
    pub filtered: u64,
    /// Events suppressed by sampling (not drops).
    pub sampled_out: u64,
    /// Events not sent because the stream was toggled off (not drops).
    pub disabled: u64,
    /// Events handed to the response stream.
    pub sent: u64,
    /// The stream's `source_id` (0 in sums).
    pub source_id: u64,
}

impl StreamStats {
    pub fn new(source_id: u64) -> Self {
        StreamStats {
            source_id,
            ..StreamStats::default()
        }
    }

    /// Adds what one generation step did.
    pub fn record(&self, step: &Counts) {
        self.emitted.fetch_add(step.emitted, Relaxed);
        self.dropped.fetch_add(step.dropped, Relaxed);
        self.filtered.fetch_add(step.filtered, Relaxed);
        self.sampled_out.fetch_add(step.sampled_out, Relaxed);
        self.disabled.fetch_add(step.disabled, Relaxed);
    }

    pub fn record_sent(&self, n: u64) {
        self.sent.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> Counts {
        Counts {
            emitted: self.emitted.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            filtered: self.filtered.load(Relaxed),
            sampled_out: self.sampled_out.load(Relaxed),
            disabled: self.disabled.load(Relaxed),
            sent: self.sent.load(Relaxed),
            source_id: self.source_id,
        }
    }
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.emitted += o.emitted;
        self.dropped += o.dropped;
        self.filtered += o.filtered;
        self.sampled_out += o.sampled_out;
        self.disabled += o.disabled;
        self.sent += o.sent;
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "emitted={} sent={} dropped={} suppressed_by_filter={} suppressed_by_sampling={} while_disabled={}",
            self.emitted, self.sent, self.dropped, self.filtered, self.sampled_out, self.disabled
        )
    }
}

/// Sums over the server's finished streams.
#[derive(Debug, Default)]
pub struct ServerTotals {
    streams: AtomicU64,
    finished: Mutex<Counts>,
}

impl ServerTotals {
    /// Numbers a new stream (1, 2, ...).
    pub fn open_stream(&self) -> u64 {
        self.streams.fetch_add(1, Relaxed) + 1
    }

    pub fn finish_stream(&self, counts: &Counts) {
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(counts);
    }

    pub fn streams(&self) -> u64 {
        self.streams.load(Relaxed)
    }

    pub fn finished(&self) -> Counts {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }
}
