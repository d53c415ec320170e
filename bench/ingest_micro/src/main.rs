//! What the NIF's ingest spends per event before any Erlang term is built:
//! the prost path it had against the single borrowing pass it has now.
//!
//! Frames are `TelemetryEventBatch`es of the load generator's realistic
//! events (the same pool `make bench` streams). Cases, median ns per event:
//!
//! * `prost_decode`: `TelemetryEventBatch::decode` + drop (a `HashMap<String,
//!   _>` per map field, a `String` per key, value and name part);
//! * `prost_decode_validate`: plus `frame::validate_frame_event` per event
//!   (the NIF before `scan`);
//! * `scan_validate`: `scan::split_batch` + `EventScratch::validate` per
//!   event (the NIF now; same events, checked below);
//! * `scan_split`: `split_batch` alone (the floor of the frame walk).
//!
//!   cargo run --release -- [events-per-frame=512] [rounds=200] [case]
//!
//! With `case`, only that one runs (for `perf record`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use snakepit_loadgen::frame::message_batch;
use snakepit_loadgen::generator::{now_ns, EventPool, Generator, Stamped};
use snakepit_loadgen::stats::Counts;
use snakepit_telemetry_core::catalog::CATALOG;
use snakepit_telemetry_core::frame::validate_frame_event;
use snakepit_telemetry_core::scan::{split_batch, EventScratch};
use snakepit_telemetry_core::validate::ValidEvent;
use snakepit_telemetry_core::wire::TelemetryEventBatch;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(512, |a| a.parse().expect("events per frame"));
    let rounds: usize = args.next().map_or(200, |a| a.parse().expect("rounds"));
    let only = args.next();
    let frame = frame_bytes(n);
    println!(
        "frame: {n} events, {} bytes ({} B/event); {rounds} rounds, median ns/event",
        frame.len(),
        frame.len() / n
    );
    check_same_events(&frame);
    let cases: [(&str, &Case); 4] = [
        ("prost_decode", &|f| {
            TelemetryEventBatch::decode(f)
                .expect("valid frame")
                .events
                .len()
        }),
        ("prost_decode_validate", &prost_decode_validate),
        ("scan_validate", &scan_validate),
        ("scan_split", &|f| {
            let mut events = Vec::new();
            split_batch(f, &mut events).expect("valid frame");
            events.len()
        }),
    ];
    for (name, case) in cases {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        println!(
            "  {name:<24} {:>8.1}",
            median_ns_per_event(&frame, n, rounds, case)
        );
    }
}

/// A case: decodes one frame, returns something to keep the work alive.
type Case<'c> = dyn Fn(&[u8]) -> usize + 'c;

fn frame_bytes(n: usize) -> Vec<u8> {
    let pool = Arc::new(EventPool::build(0x5eed));
    let mut generator = Generator::new(pool.clone(), 7, 0.0);
    let events: Vec<Stamped> = (0..n)
        .map(|_| Stamped {
            template: generator.next_template(),
            timestamp_ns: now_ns(),
        })
        .collect();
    message_batch(&pool, &events, &Counts::default()).encode_to_vec()
}

fn median_ns_per_event(frame: &[u8], n: usize, rounds: usize, case: &Case) -> f64 {
    black_box(case(frame)); // warm up
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            black_box(case(black_box(frame)));
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn prost_decode_validate(frame: &[u8]) -> usize {
    let batch = TelemetryEventBatch::decode(frame).expect("valid frame");
    batch
        .events
        .iter()
        .filter_map(|e| validate_frame_event(&CATALOG, e).ok())
        .map(|v| v.metadata.len())
        .sum()
}

fn scan_validate(frame: &[u8]) -> usize {
    let mut events = Vec::new();
    split_batch(frame, &mut events).expect("valid frame");
    let mut scratch = EventScratch::new();
    events
        .iter()
        .filter_map(|e| scratch.validate(&CATALOG, e).ok())
        .map(|v| v.metadata.len())
        .sum()
}

/// Both paths accept the same events (map entries compared as sets:
/// prost's `HashMap` has no order).
fn check_same_events(frame: &[u8]) {
    let sorted = |mut v: ValidEvent<'_>| {
        v.measurements.sort_by_key(|e| format!("{e:?}"));
        v.metadata.sort_by_key(|e| format!("{e:?}"));
        v.into_owned()
    };
    let batch = TelemetryEventBatch::decode(frame).expect("valid frame");
    let old: Vec<_> = batch
        .events
        .iter()
        .map(|e| validate_frame_event(&CATALOG, e).map(sorted))
        .collect();
    let mut events = Vec::new();
    split_batch(frame, &mut events).expect("valid frame");
    let mut scratch = EventScratch::new();
    let new: Vec<_> = events
        .iter()
        .map(|e| scratch.validate(&CATALOG, e).map(sorted))
        .collect();
    assert_eq!(old, new, "both paths decide alike");
}
