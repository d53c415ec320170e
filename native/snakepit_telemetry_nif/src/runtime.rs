//! The one tokio runtime of the NIF, owned by a static and started on first
//! use. Two worker threads (the machines are small; the work is I/O and
//! decoding). It is never shut down: its threads are not scheduler threads,
//! and a stream task ends when its handle is dropped. The VM exiting ends
//! the threads with the process.

use once_cell::sync::Lazy;
use tokio::runtime::{Builder, Runtime};

static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("snakepit-ingest")
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
});

pub fn get() -> &'static Runtime {
    &RUNTIME
}
