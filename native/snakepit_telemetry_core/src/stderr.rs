//! The stderr fallback: a worker writes `TELEMETRY:{json}` lines (see
//! `priv/python/snakepit_bridge/telemetry/backends/stderr.py`). This parses
//! one line with serde_json and validates it like any other event.

use serde_json::{Map, Value};

use crate::catalog::Catalog;
use crate::validate::{validate, RawEvent, RawName, RawValue, Rejection, ValidEvent};

/// Lines that carry telemetry start with this marker.
pub const PREFIX: &str = "TELEMETRY:";

#[derive(Debug, PartialEq)]
pub enum StderrLine {
    /// An ordinary output line (goes to the logger).
    NotTelemetry,
    /// An accepted event (owning its strings: the parsed JSON is gone).
    Event(ValidEvent<'static>),
}

/// Parses one output line (with or without its line ending).
pub fn parse_line(catalog: &Catalog, line: &[u8]) -> Result<StderrLine, Rejection> {
    let Some(payload) = line.strip_prefix(PREFIX.as_bytes()) else {
        return Ok(StderrLine::NotTelemetry);
    };
    let max = catalog.limits.max_stderr_line_bytes;
    if line.len() > max {
        return Err(Rejection::LineTooLong(max));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| Rejection::InvalidJson(e.to_string()))?;
    let Value::Object(obj) = &value else {
        return Err(Rejection::InvalidPayload("not an object"));
    };
    let Some(Value::String(name)) = obj.get("event") else {
        return Err(Rejection::InvalidPayload("\"event\" must be a string"));
    };
    let measurements = entries(
        obj.get("measurements"),
        "\"measurements\" must be an object",
    )?;
    let metadata = entries(obj.get("metadata"), "\"metadata\" must be an object")?;
    let raw = RawEvent {
        name: RawName::Dotted(name),
        measurements: &measurements,
        metadata: &metadata,
        timestamp_ns: obj.get("timestamp_ns").and_then(Value::as_i64),
        correlation_id: match obj.get("correlation_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                return Err(Rejection::InvalidPayload(
                    "\"correlation_id\" must be a string",
                ))
            }
        },
    };
    validate(catalog, &raw).map(|e| StderrLine::Event(e.into_owned()))
}

fn entries<'a>(
    field: Option<&'a Value>,
    complaint: &'static str,
) -> Result<Vec<(&'a str, RawValue<'a>)>, Rejection> {
    match field {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(raw_entries(map)),
        Some(_) => Err(Rejection::InvalidPayload(complaint)),
    }
}

fn raw_entries(map: &Map<String, Value>) -> Vec<(&str, RawValue<'_>)> {
    map.iter()
        .map(|(k, v)| (k.as_str(), raw_value(v)))
        .collect()
}

fn raw_value(v: &Value) -> RawValue<'_> {
    match v {
        Value::Null => RawValue::Null,
        Value::Bool(b) => RawValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RawValue::Int(i),
            None => RawValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => RawValue::Str(s),
        Value::Array(_) | Value::Object(_) => RawValue::Nested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CATALOG;
    use crate::validate::{Key, Number};

    fn parse(line: &str) -> Result<StderrLine, Rejection> {
        parse_line(&CATALOG, line.as_bytes())
    }

    fn event(line: &str) -> ValidEvent<'static> {
        match parse(line) {
            Ok(StderrLine::Event(e)) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn ordinary_lines_are_not_telemetry() {
        assert_eq!(parse("hello world"), Ok(StderrLine::NotTelemetry));
        assert_eq!(parse(" TELEMETRY:{}"), Ok(StderrLine::NotTelemetry));
    }

    #[test]
    fn a_python_stderr_line_is_parsed_and_validated() {
        let e = event(
            r#"TELEMETRY:{"event":"tool.execution.stop","measurements":{"duration":1500},"metadata":{"tool":"demo","extra":3},"timestamp_ns":1700000000000000000,"correlation_id":"req-1"}"#,
        );
        assert_eq!(
            e.event,
            CATALOG.ingest_event("tool.execution.stop").unwrap()
        );
        assert_eq!(e.measurements[0].1, Number::Int(1500));
        assert_eq!(e.metadata[0], (Key::Other("extra".into()), "3".into()));
        assert_eq!(e.timestamp_ns, Some(1_700_000_000_000_000_000));
        assert_eq!(e.correlation_id.as_deref(), Some("req-1"));
    }

    #[test]
    fn trailing_newline_and_missing_optional_fields_are_fine() {
        let e = event("TELEMETRY:{\"event\":\"python.call.start\"}\r\n");
        assert!(e.measurements.is_empty() && e.metadata.is_empty());
        assert_eq!(e.correlation_id, None);
    }

    #[test]
    fn malformed_lines_are_rejected_with_a_reason() {
        let cases = [
            ("TELEMETRY:{not json", "invalid_json"),
            ("TELEMETRY:[1,2]", "invalid_payload"),
            ("TELEMETRY:{\"event\":1}", "invalid_payload"),
            (
                "TELEMETRY:{\"event\":\"python.call.start\",\"metadata\":[]}",
                "invalid_payload",
            ),
            (
                "TELEMETRY:{\"event\":\"python.call.start\",\"correlation_id\":5}",
                "invalid_payload",
            ),
            (
                "TELEMETRY:{\"event\":\"python.bogus.event\"}",
                "unknown_event",
            ),
            (
                "TELEMETRY:{\"event\":\"python.call.start\",\"metadata\":{\"a\":{\"b\":1}}}",
                "invalid_metadata",
            ),
        ];
        for (line, reason) in cases {
            assert_eq!(parse(line).unwrap_err().reason(), reason, "{line}");
        }
    }

    #[test]
    fn overlong_lines_are_rejected_before_parsing() {
        let pad = "x".repeat(CATALOG.limits.max_stderr_line_bytes);
        let line = format!("TELEMETRY:{{\"event\":\"python.call.start\",\"p\":\"{pad}\"}}");
        assert_eq!(parse(&line).unwrap_err().reason(), "line_too_long");
    }

    /// Fuzz finding (frame_event): serde_json's default float parser is not
    /// correctly rounded, so these came out one ULP off, unlike the same
    /// value on the wire. Python writes the shortest text that round-trips.
    #[test]
    fn float_measurements_are_parsed_exactly() {
        for text in [
            "12.501952886581421",
            "2.3287771384510634e+231",
            "0.1",
            "5e-324",
            "1.7976931348623157e308",
        ] {
            let e = event(&format!(
                "TELEMETRY:{{\"event\":\"python.cpu.sampled\",\"measurements\":{{\"cpu_percent\":{text}}}}}"
            ));
            let want: f64 = text.parse().unwrap();
            match e.measurements[0].1 {
                Number::Float(got) => assert_eq!(got.to_bits(), want.to_bits(), "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let line = format!("TELEMETRY:{}", "[".repeat(10_000));
        assert_eq!(parse(&line).unwrap_err().reason(), "invalid_json");
    }
}
