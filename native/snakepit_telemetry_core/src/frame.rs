//! Validates a `TelemetryEvent` decoded by prost, like any other event: the
//! reference path. The NIF does not use it (it validates the wire bytes
//! with `scan`, which borrows instead of building a message); the scanner's
//! property tests and fuzz targets hold `scan` to this path's verdicts, and
//! the load generator checks its events with it.

use crate::catalog::Catalog;
use crate::validate::{validate, RawEvent, RawName, RawValue, Rejection, ValidEvent};
use crate::wire::telemetry_value::Value;
use crate::wire::TelemetryEvent;

/// Validates one event of a gRPC frame.
pub fn validate_frame_event<'a>(
    catalog: &Catalog,
    e: &'a TelemetryEvent,
) -> Result<ValidEvent<'a>, Rejection> {
    // Bound the entry counts before building anything from them.
    if e.measurements.len() > catalog.limits.max_measurements {
        return Err(Rejection::TooManyMeasurements(
            catalog.limits.max_measurements,
        ));
    }
    if e.metadata.len() > catalog.limits.max_metadata {
        return Err(Rejection::TooManyMetadata(catalog.limits.max_metadata));
    }
    let parts: Vec<&str> = e.event_parts.iter().map(String::as_str).collect();
    let measurements: Vec<_> = e
        .measurements
        .iter()
        .map(|(k, v)| (k.as_str(), raw_value(v.value.as_ref())))
        .collect();
    let metadata: Vec<_> = e
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), RawValue::Str(v)))
        .collect();
    let raw = RawEvent {
        name: RawName::Parts(&parts),
        measurements: &measurements,
        metadata: &metadata,
        timestamp_ns: Some(e.timestamp_ns),
        correlation_id: Some(&e.correlation_id),
    };
    validate(catalog, &raw)
}

fn raw_value(v: Option<&Value>) -> RawValue<'_> {
    match v {
        Some(Value::IntValue(i)) => RawValue::Int(*i),
        Some(Value::FloatValue(f)) => RawValue::Float(*f),
        Some(Value::StringValue(s)) => RawValue::Str(s),
        None => RawValue::Null,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::CATALOG;
    use crate::validate::Number;
    use crate::wire::TelemetryValue;

    /// An event with just a name (shared with `scan`'s tests).
    pub(crate) fn event(parts: &[&str]) -> TelemetryEvent {
        TelemetryEvent {
            event_parts: parts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    pub(crate) fn value(v: Value) -> TelemetryValue {
        TelemetryValue { value: Some(v) }
    }

    #[test]
    fn a_wire_event_is_validated() {
        let mut e = event(&["tool", "execution", "stop"]);
        e.measurements
            .insert("duration".into(), value(Value::IntValue(9)));
        e.measurements
            .insert("ratio".into(), value(Value::StringValue("0.5".into())));
        e.metadata.insert("tool".into(), "t".into());
        e.correlation_id = "c".into();
        e.timestamp_ns = 3;
        let v = validate_frame_event(&CATALOG, &e).unwrap();
        assert_eq!(v.measurements.len(), 2);
        assert!(v.measurements.iter().any(|(_, n)| *n == Number::Float(0.5)));
        assert_eq!(v.correlation_id.as_deref(), Some("c"));
        assert_eq!(v.timestamp_ns, Some(3));
    }

    #[test]
    fn an_unset_oneof_is_an_invalid_measurement() {
        let mut e = event(&["python", "call", "stop"]);
        e.measurements
            .insert("duration".into(), TelemetryValue { value: None });
        let r = validate_frame_event(&CATALOG, &e).unwrap_err();
        assert_eq!(r.reason(), "invalid_measurement");
    }

    #[test]
    fn blank_correlation_id_and_zero_timestamp_are_absent() {
        let e = event(&["python", "call", "start"]);
        let v = validate_frame_event(&CATALOG, &e).unwrap();
        assert_eq!((v.correlation_id, v.timestamp_ns), (None, None));
    }

    #[test]
    fn unknown_names_are_rejected() {
        let r = validate_frame_event(&CATALOG, &event(&["python", "nope"])).unwrap_err();
        assert_eq!(r.reason(), "unknown_event");
    }
}
