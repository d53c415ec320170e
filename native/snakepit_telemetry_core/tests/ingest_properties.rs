//! Properties of the whole ingest of one event, for generated events: names
//! (catalog, unknown, oversized), keys (allowlisted, random, empty, at and
//! over the length limit), values of every wire type (extreme integers,
//! non-finite and huge floats, numeric and other strings), counts around
//! each limit. The event is encoded as a real protobuf `TelemetryEvent`
//! (prost) and decoded by `scan`, as a worker's frame is.
//!
//! - decoding and validation never panic;
//! - an accepted event holds only what the BEAM can represent: finite
//!   numbers (also once durations are converted to native units, else a
//!   counted `measurement_out_of_range`), bounded non-empty keys, bounded
//!   values, a bounded correlation id;
//! - the verdict on the wire bytes is the verdict on the same event given to
//!   `validate` directly (the stderr path): one rule for both paths.

use proptest::prelude::*;
use prost::Message;
use snakepit_telemetry_core::catalog::CATALOG;
use snakepit_telemetry_core::scan::EventScratch;
use snakepit_telemetry_core::units::NativeUnits;
use snakepit_telemetry_core::validate::{
    validate, Key, Number, RawEvent, RawName, RawValue, Rejection, ValidEvent,
};
use snakepit_telemetry_core::wire::telemetry_value::Value;
use snakepit_telemetry_core::wire::{TelemetryEvent, TelemetryValue};

fn python_names() -> Vec<String> {
    CATALOG
        .events
        .iter()
        .filter_map(|e| e.python_name.clone())
        .collect()
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(python_names()),
        1 => "[a-z]{1,8}(\\.[a-z_]{1,12}){0,9}",
        1 => (120usize..140).prop_map(|n| "ab.".repeat(n / 3)),
    ]
}

fn key(allowlist: &'static [String]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(allowlist.to_vec()),
        2 => "\\PC{0,10}",
        1 => (63usize..=66).prop_map(|n| "k".repeat(n)),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1.0e300),
        Just(-1.0e300),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE / 2.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        any::<f64>(),
    ]
}

fn value() -> impl Strategy<Value = TelemetryValue> {
    let v = prop_oneof![
        prop_oneof![Just(i64::MAX), Just(i64::MIN), any::<i64>()].prop_map(Value::IntValue),
        float().prop_map(Value::FloatValue),
        prop_oneof![
            Just("1e300".to_owned()),
            Just("-9223372036854775809".to_owned()),
            Just("NaN".to_owned()),
            Just(" 42 ".to_owned()),
            "\\PC{0,12}",
        ]
        .prop_map(Value::StringValue),
    ];
    prop::option::weighted(0.95, v).prop_map(|value| TelemetryValue { value })
}

fn event() -> impl Strategy<Value = TelemetryEvent> {
    let limits = &CATALOG.limits;
    (
        name(),
        prop::collection::hash_map(
            key(&CATALOG.measurement_keys),
            value(),
            0..=limits.max_measurements + 1,
        ),
        prop::collection::hash_map(
            key(&CATALOG.metadata_keys),
            prop_oneof![
                9 => "\\PC{0,16}",
                1 => (4090usize..4100).prop_map(|n| "x".repeat(n)),
            ],
            0..=limits.max_metadata + 1,
        ),
        any::<i64>(),
        prop_oneof![
            "[a-f0-9-]{0,40}",
            (127usize..=130).prop_map(|n| "c".repeat(n)),
            Just("  ".to_owned()),
        ],
    )
        .prop_map(
            |(name, measurements, metadata, timestamp_ns, correlation_id)| TelemetryEvent {
                event_parts: name.split('.').map(str::to_owned).collect(),
                measurements,
                metadata,
                timestamp_ns,
                correlation_id,
            },
        )
}

/// The event as the stderr path would hand it to `validate`.
fn raw_value(v: &TelemetryValue) -> RawValue<'_> {
    match &v.value {
        Some(Value::IntValue(i)) => RawValue::Int(*i),
        Some(Value::FloatValue(f)) => RawValue::Float(*f),
        Some(Value::StringValue(s)) => RawValue::Str(s),
        None => RawValue::Null,
    }
}

fn sorted<T: Clone, K: Ord + Clone>(items: &[(K, T)]) -> Vec<(K, T)> {
    let mut v = items.to_vec();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn key_text(k: &Key<'_>, names: &[String]) -> String {
    match k {
        Key::Known(id) => format!("known:{}", names[*id as usize]),
        Key::Other(s) => format!("other:{s}"),
    }
}

fn check_accepted(e: &ValidEvent<'_>) {
    let limits = &CATALOG.limits;
    assert!(e.measurements.len() <= limits.max_measurements);
    assert!(e.metadata.len() <= limits.max_metadata);
    for (k, n) in &e.measurements {
        if let Key::Other(s) = k {
            assert!(!s.is_empty() && s.len() <= limits.max_key_bytes);
        }
        if let Number::Float(f) = n {
            assert!(f.is_finite(), "{f}");
        }
        for per_second in [1_000_000_000, 1_000_000, 1_000_000_000_000] {
            let units = NativeUnits::new(per_second).unwrap();
            if let Some(Number::Float(f)) = units.duration(*n) {
                assert!(f.is_finite());
            }
        }
    }
    for (k, v) in &e.metadata {
        if let Key::Other(s) = k {
            assert!(!s.is_empty() && s.len() <= limits.max_key_bytes);
        }
        assert!(v.len() <= limits.max_metadata_value_bytes);
    }
    if let Some(c) = &e.correlation_id {
        assert!(!c.trim().is_empty() && c.len() <= limits.max_correlation_id_bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn wire_and_direct_validation_agree_and_accepted_events_are_representable(ev in event()) {
        let bytes = ev.encode_to_vec();
        let mut scratch = EventScratch::new();
        let wire = scratch.validate(&CATALOG, &bytes);

        let parts: Vec<&str> = ev.event_parts.iter().map(String::as_str).collect();
        let measurements: Vec<(&str, RawValue)> =
            ev.measurements.iter().map(|(k, v)| (k.as_str(), raw_value(v))).collect();
        let metadata: Vec<(&str, RawValue)> =
            ev.metadata.iter().map(|(k, v)| (k.as_str(), RawValue::Str(v))).collect();
        let direct = validate(&CATALOG, &RawEvent {
            name: RawName::Parts(&parts),
            measurements: &measurements,
            metadata: &metadata,
            timestamp_ns: Some(ev.timestamp_ns),
            correlation_id: Some(&ev.correlation_id),
        });

        match (&wire, &direct) {
            (Ok(w), Ok(d)) => {
                check_accepted(w);
                prop_assert_eq!(w.event, d.event);
                let m = |e: &ValidEvent| sorted(&e.measurements.iter()
                    .map(|(k, n)| (key_text(k, &CATALOG.measurement_keys), format!("{n:?}")))
                    .collect::<Vec<_>>());
                let md = |e: &ValidEvent| sorted(&e.metadata.iter()
                    .map(|(k, v)| (key_text(k, &CATALOG.metadata_keys), v.to_string()))
                    .collect::<Vec<_>>());
                prop_assert_eq!(m(w), m(d));
                prop_assert_eq!(md(w), md(d));
                prop_assert_eq!(&w.correlation_id, &d.correlation_id);
            }
            // Entries are checked in map order, so two problems in one event
            // may be reported under either reason; both paths must refuse.
            (Err(w), Err(d)) => {
                prop_assert!(Rejection::REASONS.contains(&w.reason()));
                prop_assert!(Rejection::REASONS.contains(&d.reason()));
            }
            _ => prop_assert!(false, "wire {:?} vs direct {:?}", wire, direct),
        }
    }

    #[test]
    fn any_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut scratch = EventScratch::new();
        if let Ok(e) = scratch.validate(&CATALOG, &bytes) {
            check_accepted(&e);
        }
        let mut events = Vec::new();
        let _ = snakepit_telemetry_core::scan::split_batch(&bytes, &mut events);
    }

    #[test]
    fn unit_conversion_is_finite_or_refused(
        n in prop_oneof![any::<i64>().prop_map(Number::Int), float().prop_map(Number::Float)],
        per_second in 1i64..=1_000_000_000_000_000,
    ) {
        let units = NativeUnits::new(per_second).unwrap();
        match (n, units.duration(n)) {
            (Number::Float(f), _) if !f.is_finite() => {}
            (_, Some(Number::Float(f))) => prop_assert!(f.is_finite()),
            _ => {}
        }
    }
}
