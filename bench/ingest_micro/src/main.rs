//! What the NIF's ingest spends per event before any Erlang term is built,
//! and what a borrowing decoder would spend instead.
//!
//! Frames are `TelemetryEventBatch`es of the load generator's realistic
//! events (the same pool `make bench` streams). Cases, median ns per event:
//!
//! * `prost_decode`: `TelemetryEventBatch::decode` + drop (the NIF today:
//!   `HashMap<String, _>` per map field, a `String` per key, value and part);
//! * `prost_decode_validate`: plus `validate_frame_event` per event into a
//!   `Vec<ValidEvent>` (what `ingest.rs` does before `send_batch`);
//! * `scan_validate`: one pass over the frame bytes that borrows every string
//!   (`&str` into the frame), builds a `RawEvent` and calls the same
//!   `validate()` (proposed; same `ValidEvent`s, checked below);
//! * `scan_lookup`: the pass plus the catalog lookups (event name, keys),
//!   building nothing (the floor of a decoder fused with validation);
//! * `scan_lookup_fxhash`: the same with the catalog's maps on an FxHash-style
//!   hasher instead of std's SipHash (`RandomState`);
//! * `scan_only`: the pass alone (the floor of any decoder).
//!
//!   cargo run --release -- [events-per-frame=512] [rounds=200]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use snakepit_loadgen::frame::message_batch;
use snakepit_loadgen::generator::{now_ns, EventPool, Generator, Stamped};
use snakepit_loadgen::stats::Counts;
use snakepit_telemetry_core::catalog::{Catalog, CATALOG};
use snakepit_telemetry_core::frame::validate_frame_event;
use snakepit_telemetry_core::validate::{validate, RawEvent, RawName, RawValue, ValidEvent};
use snakepit_telemetry_core::wire::TelemetryEventBatch;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(512, |a| a.parse().expect("events per frame"));
    let rounds: usize = args.next().map_or(200, |a| a.parse().expect("rounds"));
    let frame = frame_bytes(n);
    println!(
        "frame: {n} events, {} bytes ({} B/event); {rounds} rounds, median ns/event",
        frame.len(),
        frame.len() / n
    );

    check_same_events(&frame);
    let fx = FxCatalog::new(&CATALOG);
    assert_eq!(
        fx.scan_lookup(&frame),
        scan_lookup(&CATALOG, &frame),
        "same lookups"
    );
    let cases: [(&str, &Case); 6] = [
        ("prost_decode", &|f| prost_decode(f)),
        ("prost_decode_validate", &|f| prost_decode_validate(f)),
        ("scan_validate", &|f| scan_validate(&CATALOG, f).len()),
        ("scan_lookup", &|f| scan_lookup(&CATALOG, f)),
        ("scan_lookup_fxhash", &|f| fx.scan_lookup(f)),
        ("scan_only", &|f| scan_only(f)),
    ];
    for (name, case) in cases {
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

fn median_ns_per_event(
    frame: &[u8],
    n: usize,
    rounds: usize,
    case: &dyn Fn(&[u8]) -> usize,
) -> f64 {
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

// --- today's path ---------------------------------------------------------------

fn prost_decode(frame: &[u8]) -> usize {
    TelemetryEventBatch::decode(frame)
        .expect("valid frame")
        .events
        .len()
}

fn prost_decode_validate(frame: &[u8]) -> usize {
    decode_validate(frame).len()
}

fn decode_validate(frame: &[u8]) -> Vec<ValidEvent> {
    let batch = TelemetryEventBatch::decode(frame).expect("valid frame");
    batch
        .events
        .iter()
        .filter_map(|e| validate_frame_event(&CATALOG, e).ok())
        .collect()
}

// --- a borrowing single pass ----------------------------------------------------

/// The same `ValidEvent`s from both paths (map entries compared as sets:
/// prost's `HashMap` has no order).
fn check_same_events(frame: &[u8]) {
    let normal = |mut v: ValidEvent| {
        v.measurements.sort_by_key(|(k, _)| format!("{k:?}"));
        v.metadata.sort_by_key(|(k, _)| format!("{k:?}"));
        format!("{v:?}")
    };
    let a: Vec<String> = decode_validate(frame).into_iter().map(normal).collect();
    let b: Vec<String> = scan_validate(&CATALOG, frame)
        .into_iter()
        .map(normal)
        .collect();
    assert_eq!(a.len(), b.len(), "same number of valid events");
    assert!(a == b, "both decoders give the same events");
}

fn scan_validate(catalog: &Catalog, frame: &[u8]) -> Vec<ValidEvent> {
    let mut out = Vec::with_capacity(512);
    let mut scratch = Scratch::default();
    let mut name = [0u8; 256];
    for_each_event(frame, |event| {
        let len = scan_event(event, &mut scratch, &mut name).expect("valid event");
        // The two small Vec clones keep this prototype simple; a real decoder
        // would reuse them (this only makes the figure an upper bound).
        let raw = RawEvent {
            name: RawName::Dotted(std::str::from_utf8(&name[..len]).expect("UTF-8 parts")),
            measurements: scratch.measurements.clone(),
            metadata: scratch.metadata.clone(),
            timestamp_ns: scratch.timestamp_ns,
            correlation_id: scratch.correlation_id,
        };
        if let Ok(valid) = validate(catalog, &raw) {
            out.push(valid);
        }
    });
    out
}

/// The pass plus the catalog lookups a validator needs (event name, every
/// key), building nothing: the floor of a decoder fused with validation.
fn scan_lookup(catalog: &Catalog, frame: &[u8]) -> usize {
    let mut found = 0;
    let mut scratch = Scratch::default();
    let mut name = [0u8; 256];
    for_each_event(frame, |event| {
        let len = scan_event(event, &mut scratch, &mut name).expect("valid event");
        let dotted = std::str::from_utf8(&name[..len]).expect("UTF-8 parts");
        found += usize::from(catalog.ingest_event(dotted).is_some());
        found += scratch
            .measurements
            .iter()
            .filter(|(k, _)| catalog.measurement_key(k).is_some())
            .count();
        found += scratch
            .metadata
            .iter()
            .filter(|(k, _)| catalog.metadata_key(k).is_some())
            .count();
    });
    found
}

/// The catalog's three lookup maps (python name and dotted name -> event,
/// measurement and metadata keys) on a fast non-cryptographic hasher.
struct FxCatalog {
    events: FxMap,
    measurement_keys: FxMap,
    metadata_keys: FxMap,
}

type FxMap = HashMap<String, u32, BuildHasherDefault<FxHasher>>;

impl FxCatalog {
    fn new(c: &Catalog) -> FxCatalog {
        let index = |keys: &[String]| {
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.clone(), i as u32))
                .collect()
        };
        let mut events = FxMap::default();
        for (i, e) in c.events.iter().enumerate() {
            if let Some(py) = &e.python_name {
                events.insert(py.clone(), i as u32);
                events.insert(e.event.join("."), i as u32);
            }
        }
        FxCatalog {
            events,
            measurement_keys: index(&c.measurement_keys),
            metadata_keys: index(&c.metadata_keys),
        }
    }

    fn scan_lookup(&self, frame: &[u8]) -> usize {
        let mut found = 0;
        let mut scratch = Scratch::default();
        let mut name = [0u8; 256];
        for_each_event(frame, |event| {
            let len = scan_event(event, &mut scratch, &mut name).expect("valid event");
            let dotted = std::str::from_utf8(&name[..len]).expect("UTF-8 parts");
            found += usize::from(self.events.contains_key(dotted));
            found += scratch
                .measurements
                .iter()
                .filter(|(k, _)| self.measurement_keys.contains_key(*k))
                .count();
            found += scratch
                .metadata
                .iter()
                .filter(|(k, _)| self.metadata_keys.contains_key(*k))
                .count();
        });
        found
    }
}

/// rustc's FxHasher: multiply-rotate over 8-byte words.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// One event's fields, borrowed from the frame.
#[derive(Default)]
struct Scratch<'a> {
    measurements: Vec<(&'a str, RawValue<'a>)>,
    metadata: Vec<(&'a str, RawValue<'a>)>,
    timestamp_ns: Option<i64>,
    correlation_id: Option<&'a str>,
}

fn scan_only(frame: &[u8]) -> usize {
    let mut fields = 0;
    for_each_event(frame, |event| {
        let mut r = Reader { b: event, i: 0 };
        while let Some((_, wire)) = r.key() {
            r.skip(wire).expect("valid event");
            fields += 1;
        }
    });
    fields
}

fn for_each_event<'a>(frame: &'a [u8], mut f: impl FnMut(&'a [u8])) {
    let mut r = Reader { b: frame, i: 0 };
    while let Some((field, wire)) = r.key() {
        match (field, wire) {
            (1, 2) => f(r.bytes().expect("event bytes")),
            _ => r.skip(wire).expect("valid frame"),
        }
    }
}

/// Fills `raw` (all strings borrowed from `b`) and the dotted name into
/// `name`; returns the name's length. Map entries keep the last value of a
/// repeated key, as protobuf maps do.
fn scan_event<'a>(b: &'a [u8], raw: &mut Scratch<'a>, name: &mut [u8; 256]) -> Option<usize> {
    raw.measurements.clear();
    raw.metadata.clear();
    raw.timestamp_ns = None;
    raw.correlation_id = None;
    let mut len = 0;
    let mut r = Reader { b, i: 0 };
    while let Some((field, wire)) = r.key() {
        match (field, wire) {
            (1, 2) => {
                let part = r.bytes()?;
                let dot = usize::from(len > 0);
                // Too long a name: stop copying; the validator sees the length.
                if len + dot + part.len() <= name.len() {
                    if dot == 1 {
                        name[len] = b'.';
                    }
                    name[len + dot..len + dot + part.len()].copy_from_slice(part);
                }
                len = (len + dot + part.len()).min(name.len());
            }
            (2, 2) => {
                let (k, v) = entry(r.bytes()?, value)?;
                upsert(&mut raw.measurements, k, v.unwrap_or(RawValue::Null));
            }
            (3, 2) => {
                let (k, v) = entry(r.bytes()?, |b| Some(RawValue::Str(utf8(b)?)))?;
                upsert(&mut raw.metadata, k, v.unwrap_or(RawValue::Str("")));
            }
            (4, 0) => raw.timestamp_ns = Some(r.varint()? as i64),
            (5, 2) => raw.correlation_id = Some(utf8(r.bytes()?)?),
            _ => r.skip(wire)?,
        }
    }
    Some(len)
}

fn upsert<'a>(entries: &mut Vec<(&'a str, RawValue<'a>)>, k: &'a str, v: RawValue<'a>) {
    match entries.iter_mut().find(|(key, _)| *key == k) {
        Some(slot) => slot.1 = v,
        None => entries.push((k, v)),
    }
}

/// A map entry: key (field 1) and the value (field 2) parsed by `val`.
fn entry<'a>(
    b: &'a [u8],
    val: impl Fn(&'a [u8]) -> Option<RawValue<'a>>,
) -> Option<(&'a str, Option<RawValue<'a>>)> {
    let mut r = Reader { b, i: 0 };
    let (mut k, mut v) = ("", None);
    while let Some((field, wire)) = r.key() {
        match (field, wire) {
            (1, 2) => k = utf8(r.bytes()?)?,
            (2, 2) => v = Some(val(r.bytes()?)?),
            _ => r.skip(wire)?,
        }
    }
    Some((k, v))
}

/// A `TelemetryValue`.
fn value(b: &[u8]) -> Option<RawValue<'_>> {
    let mut r = Reader { b, i: 0 };
    let mut v = RawValue::Null;
    while let Some((field, wire)) = r.key() {
        v = match (field, wire) {
            (1, 0) => RawValue::Int(r.varint()? as i64),
            (2, 1) => RawValue::Float(f64::from_le_bytes(r.take(8)?.try_into().ok()?)),
            (3, 2) => RawValue::Str(utf8(r.bytes()?)?),
            _ => {
                r.skip(wire)?;
                v
            }
        };
    }
    Some(v)
}

fn utf8(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i)?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn key(&mut self) -> Option<(u32, u8)> {
        if self.i >= self.b.len() {
            return None;
        }
        let k = self.varint()?;
        Some(((k >> 3) as u32, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }

    fn skip(&mut self, wire: u8) -> Option<()> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            _ => None,
        }
    }
}
