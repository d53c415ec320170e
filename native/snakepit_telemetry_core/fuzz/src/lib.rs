//! Invariants shared by the fuzz targets. Every check panics (libFuzzer
//! reports a panic as a crash and saves the input under `artifacts/`).
//!
//! An accepted event ([`ValidEvent`]) is what the NIF turns into Erlang terms
//! and hands to `:telemetry.execute/3`, so whatever passes validation must be
//! bounded exactly as the catalog says, whatever bytes a worker sent.

use serde_json::{json, Map, Value};
use snakepit_telemetry_core::catalog::{Catalog, CATALOG};
use prost::Message;
use snakepit_telemetry_core::frame::validate_frame_event;
use snakepit_telemetry_core::scan::{split_batch, EventScratch};
use snakepit_telemetry_core::stderr::{self, StderrLine, PREFIX};
use snakepit_telemetry_core::validate::{Key, Number, Rejection, ValidEvent};
use snakepit_telemetry_core::wire::telemetry_value::Value as WireValue;
use snakepit_telemetry_core::wire::{TelemetryEvent, TelemetryEventBatch};

/// The `stderr_line` target: any bytes, as one output line of a worker.
pub fn fuzz_stderr_line(line: &[u8]) {
    let catalog = &*CATALOG;
    let result = stderr::parse_line(catalog, line);
    let telemetry = line.starts_with(PREFIX.as_bytes());
    match &result {
        Ok(StderrLine::NotTelemetry) => assert!(!telemetry, "a TELEMETRY: line was ignored"),
        Ok(StderrLine::Event(e)) => {
            assert!(telemetry, "an event without the TELEMETRY: prefix");
            assert!(
                line.len() <= catalog.limits.max_stderr_line_bytes,
                "accepted a line of {} bytes",
                line.len()
            );
            check_valid_event(catalog, e);
        }
        Err(r) => {
            assert!(telemetry, "rejected a line without the prefix: {r}");
            check_rejection(r);
        }
    }
    // The parser takes a line "with or without its line ending".
    if telemetry && !line.ends_with(b"\n") && line.len() < catalog.limits.max_stderr_line_bytes {
        let mut with_newline = line.to_vec();
        with_newline.push(b'\n');
        let again = stderr::parse_line(catalog, &with_newline);
        match (&result, &again) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "a trailing newline changed the event"),
            (Err(a), Err(b)) => assert_eq!(a.reason(), b.reason(), "{a} / {b}"),
            _ => panic!("a trailing newline changed {result:?} into {again:?}"),
        }
    }
}

/// The `frame_batch` target: any bytes as one `TelemetryEventBatch` frame.
/// The NIF's splitter agrees with prost on every frame prost decodes (same
/// events, same totals), and each event goes through [`fuzz_event_bytes`].
pub fn fuzz_frame_batch(frame: &[u8]) {
    let mut events = Vec::new();
    let split = split_batch(frame, &mut events);
    if let Ok(batch) = TelemetryEventBatch::decode(frame) {
        let totals = split.unwrap_or_else(|e| panic!("prost decodes, the splitter says {e}"));
        assert_eq!(events.len(), batch.events.len(), "event count");
        assert_eq!(
            (totals.dropped, totals.emitted, totals.sampled_out),
            (
                batch.dropped_total,
                batch.emitted_total,
                batch.sampled_out_total
            )
        );
        assert_eq!(
            (totals.filtered_out, totals.disabled, totals.source_id),
            (
                batch.filtered_out_total,
                batch.disabled_total,
                batch.source_id
            )
        );
    }
    for event in events {
        fuzz_event_bytes(event);
    }
}

/// The `frame_event` target: any bytes as one `TelemetryEvent` (a stock
/// frame or one event of a batch). The NIF's single-pass decoder (`scan`)
/// never panics, holds the invariants, and decides as prost + validation do
/// on every event prost decodes (the differences `scan` documents aside).
pub fn fuzz_event_bytes(bytes: &[u8]) {
    let catalog = &*CATALOG;
    let scanned = EventScratch::new().validate(catalog, bytes);
    match &scanned {
        Ok(v) => check_valid_event(catalog, v),
        Err(r) => check_rejection(r),
    }
    let Ok(e) = TelemetryEvent::decode(bytes) else {
        // Prost refuses the bytes: so must the scanner (as `malformed`, or
        // earlier, for a limit it hit first).
        assert!(scanned.is_err(), "prost refuses what scan accepts: {scanned:?}");
        return;
    };
    let reference = validate_frame_event(catalog, &e);
    // On what an encoder writes (prost's own encoding of the decoded event)
    // both decide exactly alike.
    let canonical = e.encode_to_vec();
    let on_canonical = EventScratch::new().validate(catalog, &canonical);
    agree(&on_canonical, &reference, &e, &canonical);
    // On other bytes prost decodes, scan may refuse more (documented: a
    // wire type prost does not check, a repeated key past the limit), but
    // what it accepts is what prost + validation accept.
    match &scanned {
        Ok(_) => agree(&scanned, &reference, &e, bytes),
        Err(Rejection::Malformed(_)) => assert_ne!(canonical, bytes, "malformed canonical bytes"),
        Err(_) => agree(&scanned, &reference, &e, bytes),
    }
    fuzz_frame_event(&e);
}

fn agree(
    scanned: &Result<ValidEvent<'_>, Rejection>,
    reference: &Result<ValidEvent<'_>, Rejection>,
    e: &TelemetryEvent,
    bytes: &[u8],
) {
    match (scanned, reference) {
        (Ok(a), Ok(b)) => assert_eq!(normalized(a), normalized(b), "scan and prost differ"),
        // Documented: the scanner stops at one entry past the limit even
        // when repeated keys leave fewer (prost's maps hold unique keys).
        (Err(Rejection::TooManyMeasurements(_) | Rejection::TooManyMetadata(_)), Ok(_)) => {
            assert!(repeats_keys(e, bytes), "too many without repeated keys")
        }
        // Both reject; scan may see another problem first (it checks in
        // wire order, validation after decoding everything).
        (Err(_), Err(_)) => {}
        _ => panic!("scan says {scanned:?}, prost + validation say {reference:?}"),
    }
}

/// Whether the wire bytes carry more map entries than prost kept (counted
/// with prost's own field walker). The walker can stop short of the end (a
/// fuzz finding: a group it cannot skip after the entries that prost had
/// already decoded); the entries counted up to there are still on the wire,
/// so they still prove a repeat when they outnumber what prost kept.
fn repeats_keys(e: &TelemetryEvent, mut bytes: &[u8]) -> bool {
    use prost::encoding::{decode_key, skip_field, DecodeContext};
    let mut entries = 0;
    while !bytes.is_empty() {
        let Ok((tag, wire)) = decode_key(&mut bytes) else {
            break;
        };
        entries += usize::from(tag == 2 || tag == 3);
        if skip_field(wire, tag, &mut bytes, DecodeContext::default()).is_err() {
            break;
        }
    }
    entries > e.measurements.len() + e.metadata.len()
}

/// The per-event part of `frame_event` and `frame_batch`: validation holds
/// the invariants, and the stderr path decides the same on the same event
/// (README: "same validation" on every path).
pub fn fuzz_frame_event(e: &TelemetryEvent) {
    let catalog = &*CATALOG;
    let result = validate_frame_event(catalog, e);
    match &result {
        Ok(v) => check_valid_event(catalog, v),
        Err(r) => check_rejection(r),
    }
    let line = as_stderr_line(e);
    if line.len() > catalog.limits.max_stderr_line_bytes {
        return; // stderr has a line limit the wire does not have
    }
    let via_stderr = stderr::parse_line(catalog, line.as_bytes());
    match (&result, &via_stderr) {
        (Ok(a), Ok(StderrLine::Event(b))) => assert_eq!(
            normalized(a),
            normalized(b),
            "gRPC and stderr disagree on {line}"
        ),
        (Err(_), Err(_)) => {}
        _ => panic!("gRPC says {result:?}, stderr says {via_stderr:?} for {line}"),
    }
}

/// The line a worker's stderr backend would write for the same event.
pub fn as_stderr_line(e: &TelemetryEvent) -> String {
    let measurements: Map<String, Value> = e
        .measurements
        .iter()
        .map(|(k, v)| {
            let v = match &v.value {
                Some(WireValue::IntValue(i)) => json!(i),
                // Non-finite floats become null (as serde_json writes them);
                // both paths reject either.
                Some(WireValue::FloatValue(f)) => json!(f),
                Some(WireValue::StringValue(s)) => json!(s),
                None => Value::Null,
            };
            (k.clone(), v)
        })
        .collect();
    let metadata: Map<String, Value> = e
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let payload = json!({
        "event": e.event_parts.join("."),
        "measurements": measurements,
        "metadata": metadata,
        "timestamp_ns": e.timestamp_ns,
        "correlation_id": e.correlation_id,
    });
    format!("{PREFIX}{payload}")
}

/// Panics unless `e` satisfies every limit of `catalog`.
pub fn check_valid_event(catalog: &Catalog, e: &ValidEvent<'_>) {
    let l = &catalog.limits;
    let def = catalog
        .events
        .get(e.event as usize)
        .unwrap_or_else(|| panic!("event id {} out of range", e.event));
    assert!(
        def.python_name.is_some(),
        "accepted a non-Python-layer event {:?}",
        def.event
    );
    assert!(
        e.measurements.len() <= l.max_measurements,
        "{} measurements > {}",
        e.measurements.len(),
        l.max_measurements
    );
    assert!(
        e.metadata.len() <= l.max_metadata,
        "{} metadata > {}",
        e.metadata.len(),
        l.max_metadata
    );
    for (k, n) in &e.measurements {
        check_key(catalog, k, &catalog.measurement_keys, |s| {
            catalog.measurement_key(s)
        });
        if let Number::Float(f) = n {
            assert!(f.is_finite(), "non-finite measurement {f}");
        }
    }
    for (k, v) in &e.metadata {
        check_key(catalog, k, &catalog.metadata_keys, |s| {
            catalog.metadata_key(s)
        });
        assert!(
            v.len() <= l.max_metadata_value_bytes,
            "metadata value of {} bytes > {}",
            v.len(),
            l.max_metadata_value_bytes
        );
    }
    if let Some(id) = &e.correlation_id {
        assert!(!id.is_empty(), "empty correlation id kept");
        assert_eq!(id.trim(), id, "correlation id not trimmed");
        assert!(
            id.len() <= l.max_correlation_id_bytes,
            "correlation id of {} bytes > {}",
            id.len(),
            l.max_correlation_id_bytes
        );
    }
    if let Some(t) = e.timestamp_ns {
        assert!(t > 0, "non-positive timestamp {t} kept");
    }
}

fn check_key(
    catalog: &Catalog,
    key: &Key,
    allowlist: &[String],
    lookup: impl Fn(&str) -> Option<u16>,
) {
    match key {
        Key::Known(id) => assert!((*id as usize) < allowlist.len(), "key id {id} out of range"),
        Key::Other(s) => {
            assert!(!s.is_empty(), "empty key accepted");
            assert!(
                s.len() <= catalog.limits.max_key_bytes,
                "key of {} bytes > {}",
                s.len(),
                catalog.limits.max_key_bytes
            );
            // An allowlisted key must become an atom, never a string.
            assert_eq!(lookup(s), None, "allowlisted key {s:?} left as a string");
        }
    }
}

/// Panics unless the rejection's reason is one Elixir lays out counters for.
pub fn check_rejection(r: &Rejection) {
    assert!(
        Rejection::REASONS.contains(&r.reason()),
        "unlisted reason {}",
        r.reason()
    );
}

/// Order-independent view of an event, to compare two ingest paths (the
/// wire's maps are HashMaps, JSON objects are sorted).
pub fn normalized(e: &ValidEvent<'_>) -> ValidEvent<'static> {
    let mut e = e.clone().into_owned();
    let key = |k: &Key| match k {
        Key::Known(id) => (0, *id, String::new()),
        Key::Other(s) => (1, 0, s.to_string()),
    };
    e.measurements.sort_by_key(|(k, _)| key(k));
    e.metadata.sort_by_key(|(k, _)| key(k));
    e
}
