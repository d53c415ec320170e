//! Writes the seed corpora `corpus/<target>/` and the libFuzzer dictionaries
//! `dict/<target>.dict` from the embedded catalog, so seeds follow the
//! catalog when it changes. Deterministic; rerun with `scripts/fuzz.sh seeds`
//! (or `cargo run --example gen_seeds` in this directory) and commit the
//! result.
//!
//! Seeds are real frames and lines: the stderr lines have the exact shape of
//! `priv/python/snakepit_bridge/telemetry/backends/stderr.py` (key order,
//! compact separators, ASCII-only with `\uXXXX` escapes, `\n` ending), and the
//! frames are encoded with the same prost types the NIF decodes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::{json, Value};
use snakepit_telemetry_core::catalog::{EventDef, CATALOG};
use snakepit_telemetry_core::wire::telemetry_value::Value as WireValue;
use snakepit_telemetry_core::wire::{TelemetryEvent, TelemetryEventBatch, TelemetryValue};

const TS: i64 = 1_700_000_000_000_000_000;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let stderr = stderr_seeds();
    let events = frame_event_seeds();
    let batches = frame_batch_seeds();
    check_seeds(&stderr, &events, &batches);
    write_corpus(&root.join("corpus/stderr_line"), &stderr)?;
    write_corpus(&root.join("corpus/frame_event"), &events)?;
    write_corpus(&root.join("corpus/frame_batch"), &batches)?;
    fs::create_dir_all(root.join("dict"))?;
    fs::write(root.join("dict/stderr_line.dict"), stderr_dict())?;
    let frame_dict = frame_dict();
    fs::write(root.join("dict/frame_event.dict"), &frame_dict)?;
    fs::write(root.join("dict/frame_batch.dict"), &frame_dict)?;
    println!(
        "seeds: stderr_line {}, frame_event {}, frame_batch {}",
        stderr.len(),
        events.len(),
        batches.len()
    );
    Ok(())
}

/// Every seed does what its name says (`ok-` accepted, `bad-` rejected,
/// `not-telemetry-` ignored) and passes the targets' own checks, so a seed
/// that drifts from the catalog fails here instead of silently fuzzing less.
fn check_seeds(
    stderr: &[(String, Vec<u8>)],
    events: &[(String, Vec<u8>)],
    batches: &[(String, Vec<u8>)],
) {
    use snakepit_telemetry_core::frame::validate_frame_event;
    use snakepit_telemetry_core::stderr::{parse_line, StderrLine};
    use snakepit_telemetry_core_fuzz::{fuzz_frame_event, fuzz_stderr_line};
    for (name, bytes) in stderr {
        fuzz_stderr_line(bytes);
        let r = parse_line(&CATALOG, bytes);
        let ok = match &r {
            Ok(StderrLine::Event(_)) => name.starts_with("ok-"),
            Ok(StderrLine::NotTelemetry) => name.starts_with("not-telemetry-"),
            Err(_) => name.starts_with("bad-"),
        };
        assert!(ok, "stderr seed {name}: {r:?}");
    }
    for (name, bytes) in events {
        let r = TelemetryEvent::decode(bytes.as_slice())
            .map_err(|e| e.to_string())
            .and_then(|e| {
                fuzz_frame_event(&e);
                validate_frame_event(&CATALOG, &e).map_err(|r| r.to_string())
            });
        assert_eq!(
            r.is_ok(),
            name.starts_with("ok-"),
            "frame seed {name}: {r:?}"
        );
    }
    for (name, bytes) in batches {
        let batch = TelemetryEventBatch::decode(bytes.as_slice()).expect(name);
        for e in &batch.events {
            fuzz_frame_event(e);
            if name.starts_with("ok-") {
                validate_frame_event(&CATALOG, e).expect(name);
            }
        }
    }
}

/// Replaces the files of `dir` with `seeds` (name, bytes).
fn write_corpus(dir: &Path, seeds: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

fn python_events() -> impl Iterator<Item = &'static EventDef> {
    CATALOG.events.iter().filter(|e| e.python_name.is_some())
}

/// A plausible value for a measurement, as a Python worker sends it.
fn measurement(key: &str) -> Value {
    match key {
        "cpu_percent" => json!(12.5),
        "system_time" => json!(TS),
        "duration" => json!(1_500_000),
        "generation" => json!(2),
        _ => json!(4096),
    }
}

/// `TELEMETRY:` + the JSON the Python backend writes: keys in its order,
/// compact, non-ASCII escaped (`ensure_ascii`).
fn python_line(
    event: &str,
    measurements: &Value,
    metadata: &Value,
    correlation_id: &Value,
) -> Vec<u8> {
    let json = format!(
        "{{\"event\":{},\"measurements\":{},\"metadata\":{},\"timestamp_ns\":{},\"correlation_id\":{}}}",
        json!(event),
        measurements,
        metadata,
        TS,
        correlation_id
    );
    let mut ascii = String::from("TELEMETRY:");
    for c in json.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    ascii.push('\n');
    ascii.into_bytes()
}

fn stderr_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for def in python_events() {
        let py = def.python_name.as_deref().unwrap();
        let measurements: serde_json::Map<String, Value> = def
            .measurements
            .iter()
            .map(|k| (k.clone(), measurement(k)))
            .collect();
        let metadata =
            json!({"worker_id": "pool_worker_1", "command": "predict", "tool": "predict"});
        seeds.push((
            format!("ok-{py}"),
            python_line(py, &Value::Object(measurements), &metadata, &json!("req-1")),
        ));
    }
    let line = |s: &str| s.as_bytes().to_vec();
    let ok = [
        // The dotted Elixir name, CRLF, no optional fields.
        (
            "ok-elixir-name-crlf",
            line("TELEMETRY:{\"event\":\"snakepit.python.call.start\"}\r\n"),
        ),
        // Numeric strings, custom keys, numbers/bools/null as metadata,
        // non-ASCII escaped text, blank correlation id, u64 and float edges.
        (
            "ok-coercions",
            python_line(
                "tool.result_size",
                &json!({"bytes": " 42 ", "my_gauge": "2.5e3", "message_size": 18446744073709551615u64, "ratio": -0.0}),
                &json!({"n": 7, "f": 1e308, "tiny": 5e-324, "b": true, "gone": null, "model": "caf\u{e9} \u{1f40d}", "error_message": "line\nbreak\t\"quoted\""}),
                &json!("   "),
            ),
        ),
        // A metadata value over max_metadata_value_bytes of 3-byte chars:
        // truncation must cut on a UTF-8 boundary.
        ("ok-long-metadata-utf8", long_metadata_line()),
        (
            "not-telemetry-log",
            line("INFO worker ready on port 50051\n"),
        ),
        ("not-telemetry-leading-space", line(" TELEMETRY:{}\n")),
    ];
    let bad = [
        ("bad-not-json", line("TELEMETRY:{not json\n")),
        ("bad-empty", line("TELEMETRY:")),
        ("bad-array", line("TELEMETRY:[1,2]\n")),
        ("bad-event-int", line("TELEMETRY:{\"event\":1}\n")),
        (
            "bad-unknown-event",
            line("TELEMETRY:{\"event\":\"pool.initialized\"}\n"),
        ),
        (
            "bad-metadata-array",
            line("TELEMETRY:{\"event\":\"python.call.start\",\"metadata\":[]}\n"),
        ),
        (
            "bad-nested-metadata",
            line("TELEMETRY:{\"event\":\"python.call.start\",\"metadata\":{\"a\":{\"b\":[1]}}}\n"),
        ),
        (
            "bad-measurement-string",
            line("TELEMETRY:{\"event\":\"python.call.stop\",\"measurements\":{\"duration\":\"n/a\"}}\n"),
        ),
        (
            "bad-nan-literal",
            line("TELEMETRY:{\"event\":\"python.call.stop\",\"measurements\":{\"duration\":NaN}}\n"),
        ),
        (
            "bad-number-overflow",
            line("TELEMETRY:{\"event\":\"python.call.stop\",\"measurements\":{\"duration\":1e400}}\n"),
        ),
        (
            "bad-correlation-id-int",
            line("TELEMETRY:{\"event\":\"python.call.start\",\"correlation_id\":5}\n"),
        ),
        (
            "bad-empty-key",
            line("TELEMETRY:{\"event\":\"python.call.start\",\"metadata\":{\"\":\"x\"}}\n"),
        ),
        ("bad-deep-nesting", {
            let mut v = b"TELEMETRY:".to_vec();
            v.extend(std::iter::repeat_n(b'[', 200));
            v
        }),
        ("bad-invalid-utf8", {
            let mut v = b"TELEMETRY:{\"event\":\"python.call.start\",\"metadata\":{\"k\":\"".to_vec();
            v.extend_from_slice(&[0xff, 0xfe, 0xc3]);
            v.extend_from_slice(b"\"}}\n");
            v
        }),
    ];
    seeds.extend(ok.into_iter().chain(bad).map(|(n, b)| (n.to_owned(), b)));
    seeds
}

fn long_value() -> String {
    "\u{20ac}".repeat(CATALOG.limits.max_metadata_value_bytes / 3 + 1)
}

fn long_metadata_line() -> Vec<u8> {
    // Raw UTF-8 (not the escaped Python form) keeps the seed small.
    format!(
        "TELEMETRY:{{\"event\":\"python.error.occurred\",\"metadata\":{{\"traceback\":{}}}}}\n",
        json!(long_value())
    )
    .into_bytes()
}

fn int(i: i64) -> TelemetryValue {
    TelemetryValue {
        value: Some(WireValue::IntValue(i)),
    }
}

fn float(f: f64) -> TelemetryValue {
    TelemetryValue {
        value: Some(WireValue::FloatValue(f)),
    }
}

fn string(s: &str) -> TelemetryValue {
    TelemetryValue {
        value: Some(WireValue::StringValue(s.to_owned())),
    }
}

/// The event a worker sends over gRPC for a catalog event: its Elixir name
/// without the `snakepit` prefix, as `python/snakepit_bridge` does.
fn wire_event(def: &EventDef) -> TelemetryEvent {
    let py = def.python_name.as_deref().unwrap();
    TelemetryEvent {
        event_parts: py.split('.').map(str::to_owned).collect(),
        measurements: def
            .measurements
            .iter()
            .map(|k| {
                let v = match measurement(k) {
                    Value::Number(n) if n.is_f64() => float(n.as_f64().unwrap()),
                    Value::Number(n) => int(n.as_i64().unwrap()),
                    _ => unreachable!(),
                };
                (k.clone(), v)
            })
            .collect(),
        metadata: [("worker_id", "pool_worker_1"), ("tool", "predict")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        timestamp_ns: TS,
        correlation_id: "req-1".to_owned(),
    }
}

fn named(parts: &[&str]) -> TelemetryEvent {
    TelemetryEvent {
        event_parts: parts.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Valid and invalid wire events (name, event).
fn edge_events() -> Vec<(&'static str, TelemetryEvent)> {
    let mut v = Vec::new();
    let stop = || named(&["python", "call", "stop"]);
    let mut e = stop();
    e.measurements.insert("duration".into(), string(" 1e3 "));
    e.measurements.insert("my_gauge".into(), float(-0.0));
    e.metadata
        .insert("model".into(), "caf\u{e9} \u{1f40d}".into());
    e.metadata.insert("traceback".into(), long_value());
    e.correlation_id = "  ".into();
    e.timestamp_ns = -5;
    v.push(("ok-coercions-long-metadata", e));
    v.push((
        "ok-elixir-parts",
        named(&["snakepit", "python", "tool", "result_size"]),
    ));
    v.push(("ok-dotted-single-part", named(&["tool.execution.start"])));
    let mut e = stop();
    e.measurements
        .insert("duration".into(), TelemetryValue { value: None });
    v.push(("bad-unset-oneof", e));
    let mut e = stop();
    e.measurements.insert("duration".into(), float(f64::NAN));
    v.push(("bad-nan", e));
    let mut e = stop();
    e.measurements.insert("duration".into(), string("inf"));
    v.push(("bad-inf-string", e));
    v.push(("bad-empty-parts", named(&[])));
    v.push(("bad-not-python-layer", named(&["pool", "initialized"])));
    v.push(("bad-too-many-parts", named(&["python"; 9])));
    let mut e = stop();
    e.metadata.insert(String::new(), "x".into());
    v.push(("bad-empty-key", e));
    let mut e = stop();
    e.metadata.insert("k".repeat(65), "x".into());
    v.push(("bad-long-key", e));
    let mut e = stop();
    for i in 0..=CATALOG.limits.max_measurements {
        e.measurements.insert(format!("m{i}"), int(i as i64));
    }
    v.push(("bad-too-many-measurements", e));
    let mut e = stop();
    e.correlation_id = "c".repeat(CATALOG.limits.max_correlation_id_bytes + 1);
    v.push(("bad-long-correlation-id", e));
    v
}

/// `e` encoded with its map entries in key order. prost encodes maps in
/// `HashMap` order, which changes from run to run; protobuf merges
/// concatenated messages (map entries accumulate), so the base fields followed
/// by one single-entry message per entry decodes to the same event and keeps
/// the committed seeds stable.
fn encode_event(e: &TelemetryEvent) -> Vec<u8> {
    let mut out = TelemetryEvent {
        measurements: Default::default(),
        metadata: Default::default(),
        ..e.clone()
    }
    .encode_to_vec();
    let mut measurements: Vec<_> = e.measurements.iter().collect();
    measurements.sort_by_key(|(k, _)| *k);
    for (k, v) in measurements {
        let one = TelemetryEvent {
            measurements: [(k.clone(), v.clone())].into(),
            ..Default::default()
        };
        out.extend(one.encode_to_vec());
    }
    let mut metadata: Vec<_> = e.metadata.iter().collect();
    metadata.sort_by_key(|(k, _)| *k);
    for (k, v) in metadata {
        let one = TelemetryEvent {
            metadata: [(k.clone(), v.clone())].into(),
            ..Default::default()
        };
        out.extend(one.encode_to_vec());
    }
    // Same event back (compared through Debug: NaN != NaN).
    let back = TelemetryEvent::decode(out.as_slice()).expect("decodes");
    let sorted = |e: &TelemetryEvent| {
        let m: std::collections::BTreeMap<_, _> = e.measurements.iter().collect();
        let d: std::collections::BTreeMap<_, _> = e.metadata.iter().collect();
        format!(
            "{:?} {m:?} {d:?} {} {:?}",
            e.event_parts, e.timestamp_ns, e.correlation_id
        )
    };
    assert_eq!(sorted(&back), sorted(e));
    out
}

/// A batch frame, its events encoded with [`encode_event`].
fn encode_batch(events: &[TelemetryEvent], counters: &TelemetryEventBatch) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let mut out = Vec::new();
    for e in events {
        let bytes = encode_event(e);
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(bytes.len() as u64, &mut out);
        out.extend(bytes);
    }
    out.extend(counters.encode_to_vec());
    out
}

fn frame_event_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = python_events()
        .map(|def| {
            let name = format!("ok-{}", def.python_name.as_deref().unwrap());
            (name, encode_event(&wire_event(def)))
        })
        .collect();
    seeds.extend(
        edge_events()
            .into_iter()
            .map(|(n, e)| (n.to_owned(), encode_event(&e))),
    );
    // Not a TelemetryEvent at all: a truncated length prefix.
    seeds.push(("bad-truncated".into(), vec![0x0a, 0x7f, b'p']));
    seeds
}

fn frame_batch_seeds() -> Vec<(String, Vec<u8>)> {
    let counters = TelemetryEventBatch {
        events: vec![],
        dropped_total: 3,
        emitted_total: 1000,
        sampled_out_total: 10,
        filtered_out_total: 2,
        disabled_total: u64::MAX,
        ..Default::default()
    };
    let all: Vec<_> = python_events().map(wire_event).collect();
    let mixed: Vec<_> = edge_events().into_iter().map(|(_, e)| e).collect();
    vec![
        (
            "ok-every-python-event".into(),
            encode_batch(&all, &counters),
        ),
        ("mixed-edge-events".into(), encode_batch(&mixed, &counters)),
        (
            "ok-one-event-no-counters".into(),
            encode_batch(&all[..1], &TelemetryEventBatch::default()),
        ),
        ("ok-counters-only".into(), encode_batch(&[], &counters)),
    ]
}

/// libFuzzer dictionary entries (`"..."` with `\xNN` escapes).
fn dict_entry(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push_str("\"\n");
    s
}

fn names_and_keys() -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for def in python_events() {
        words.insert(def.python_name.clone().unwrap());
        words.insert(def.event.join("."));
        words.extend(def.event.iter().cloned());
    }
    words.extend(CATALOG.measurement_keys.iter().cloned());
    words.extend(CATALOG.metadata_keys.iter().cloned());
    words
}

fn stderr_dict() -> String {
    let mut out = String::from("# Generated by examples/gen_seeds.rs\n");
    let tokens = [
        "TELEMETRY:",
        "\"event\":",
        "\"measurements\":",
        "\"metadata\":",
        "\"timestamp_ns\":",
        "\"correlation_id\":",
        "null",
        "true",
        "false",
        "\\u00e9",
        "\\ud83d\\udc0d",
        "1e308",
        "5e-324",
        "-0.0",
        "9223372036854775808",
        "18446744073709551615",
        "NaN",
        "\"inf\"",
        "\r\n",
    ];
    for t in tokens {
        out.push_str(&dict_entry(t.as_bytes()));
    }
    for w in names_and_keys() {
        out.push_str(&dict_entry(format!("\"{w}\"").as_bytes()));
    }
    out
}

fn frame_dict() -> String {
    let mut out = String::from("# Generated by examples/gen_seeds.rs\n");
    for w in names_and_keys() {
        // A length-delimited string as it appears on the wire.
        let mut b = vec![w.len() as u8];
        b.extend_from_slice(w.as_bytes());
        out.push_str(&dict_entry(&b));
    }
    for t in ["NaN", "inf", " 1e3 ", "0x10"] {
        out.push_str(&dict_entry(t.as_bytes()));
    }
    out
}
