//! The longest CPU time any call of each NIF has taken on its scheduler
//! thread, for the scheduler-safety test (`Native.nif_cpu_take/0`).
//!
//! Thread CPU time, not wall time: on a busy machine the OS preempts
//! scheduler threads for milliseconds, which wall-clock monitors such as
//! `:long_schedule` cannot tell from a NIF that holds its scheduler.
//! Two `clock_gettime` calls per NIF call (well under a microsecond).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The NIFs, in the order of [`NAMES`].
#[derive(Clone, Copy)]
pub enum Nif {
    CatalogSummary,
    CatalogVersion,
    StderrParseLine,
    StderrParseLineDirty,
    ChannelOpen,
    ToolCall,
    StreamStart,
    StreamStop,
    StreamControl,
    StreamAck,
    StreamStats,
    StreamsRunning,
    StderrIngestStart,
    StderrIngestPush,
    StderrIngestAck,
    StderrIngestStats,
    PingCall,
}

pub const NAMES: [&str; 17] = [
    "catalog_summary",
    "catalog_version",
    "stderr_parse_line",
    "stderr_parse_line_dirty",
    "channel_open",
    "tool_call",
    "stream_start",
    "stream_stop",
    "stream_control",
    "stream_ack",
    "stream_stats",
    "streams_running",
    "stderr_ingest_start",
    "stderr_ingest_push",
    "stderr_ingest_ack",
    "stderr_ingest_stats",
    "ping_call",
];

static MAX_NS: [AtomicU64; NAMES.len()] = [const { AtomicU64::new(0) }; NAMES.len()];
static CALLS: [AtomicU64; NAMES.len()] = [const { AtomicU64::new(0) }; NAMES.len()];
/// Calls over [`SLOW_NS`]: one such call can be the machine (a VM's stolen
/// time can be charged to the running thread: seen here, 2 ms for a call
/// that takes 2 µs), a NIF that holds its scheduler does it every time.
static SLOW: [AtomicU64; NAMES.len()] = [const { AtomicU64::new(0) }; NAMES.len()];
const SLOW_NS: u64 = 1_000_000;

/// Records the CPU time from its creation to its drop (the NIF's body).
pub struct Timed {
    nif: Nif,
    started: u64,
}

impl Timed {
    pub fn start(nif: Nif) -> Timed {
        Timed {
            nif,
            started: thread_cpu_ns(),
        }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        let spent = thread_cpu_ns().saturating_sub(self.started);
        let i = self.nif as usize;
        MAX_NS[i].fetch_max(spent, Relaxed);
        CALLS[i].fetch_add(1, Relaxed);
        if spent > SLOW_NS {
            SLOW[i].fetch_add(1, Relaxed);
        }
    }
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `[{name, calls, max_ns, calls_over_1ms}]` for every NIF since the last
/// take (or the load), and starts over, so a caller can measure a window of
/// its own.
#[rustler::nif]
fn nif_cpu_take() -> Vec<(String, u64, u64, u64)> {
    (0..NAMES.len())
        .map(|i| {
            (
                NAMES[i].to_string(),
                CALLS[i].swap(0, Relaxed),
                MAX_NS[i].swap(0, Relaxed),
                SLOW[i].swap(0, Relaxed),
            )
        })
        .collect()
}
