//! Invariants shared by the fuzz targets. Every check panics (libFuzzer
//! reports a panic as a crash and saves the input under `artifacts/`).
//!
//! An accepted event ([`ValidEvent`]) is what the NIF turns into Erlang terms
//! and hands to `:telemetry.execute/3`, so whatever passes validation must be
//! bounded exactly as the catalog says, whatever bytes a worker sent.

use serde_json::{json, Map, Value};
use snakepit_telemetry_core::catalog::{Catalog, CATALOG};
use snakepit_telemetry_core::frame::validate_frame_event;
use snakepit_telemetry_core::stderr::{self, StderrLine, PREFIX};
use snakepit_telemetry_core::validate::{Key, Number, Rejection, ValidEvent};
use snakepit_telemetry_core::wire::telemetry_value::Value as WireValue;
use snakepit_telemetry_core::wire::TelemetryEvent;

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
pub fn check_valid_event(catalog: &Catalog, e: &ValidEvent) {
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
pub fn normalized(e: &ValidEvent) -> ValidEvent {
    let mut e = e.clone();
    let key = |k: &Key| match k {
        Key::Known(id) => (0, *id, String::new()),
        Key::Other(s) => (1, 0, s.clone()),
    };
    e.measurements.sort_by_key(|(k, _)| key(k));
    e.metadata.sort_by_key(|(k, _)| key(k));
    e
}
