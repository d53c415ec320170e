//! Turns a raw event from any path (gRPC frame, stderr line) into a
//! [`ValidEvent`] or a [`Rejection`]. Nothing here allocates an atom or knows
//! about the BEAM: keys are catalog indices or plain strings. A valid event
//! borrows its strings from the raw one (the frame or the parsed line): the
//! NIF turns it into terms at once, so nothing is copied twice.
//!
//! Rules (README "Validation"):
//! - the name must be a Python-layer catalog event, else `unknown_event`;
//! - keys are non-empty, at most `max_key_bytes`; allowlisted keys become
//!   [`Key::Known`] (atoms in Elixir), all others stay strings;
//! - measurement values are integers or finite floats; a string that parses
//!   as a number is accepted as that number (the wire's `string_value` and
//!   JSON strings); anything else rejects the event (`invalid_measurement`);
//! - metadata values are strings; numbers and booleans are turned into their
//!   text, `null` drops the entry, nested values reject the event; values are
//!   truncated to `max_metadata_value_bytes` at a UTF-8 boundary;
//! - a blank correlation id becomes `None`.

use std::borrow::Cow;

use crate::catalog::{Catalog, EventId, KeyId};

/// A value as it arrived, before validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue<'a> {
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bool(bool),
    Null,
    /// A list or object (JSON only); never valid.
    Nested,
}

/// The event name as it arrived. `'s` is the caller's scratch (the lists),
/// `'a` the input the strings borrow from.
#[derive(Debug, Clone, Copy)]
pub enum RawName<'s, 'a> {
    /// `tool.execution.stop`
    Dotted(&'a str),
    /// `["tool", "execution", "stop"]` (the wire's `event_parts`)
    Parts(&'s [&'a str]),
}

#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'s, 'a> {
    pub name: RawName<'s, 'a>,
    pub measurements: &'s [(&'a str, RawValue<'a>)],
    pub metadata: &'s [(&'a str, RawValue<'a>)],
    /// Unix epoch nanoseconds; `None` or 0 means "not given".
    pub timestamp_ns: Option<i64>,
    pub correlation_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Key<'a> {
    Known(KeyId),
    Other(Cow<'a, str>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent<'a> {
    pub event: EventId,
    pub measurements: Vec<(Key<'a>, Number)>,
    /// Text as sent, or the text of a number or boolean.
    pub metadata: Vec<(Key<'a>, Cow<'a, str>)>,
    pub timestamp_ns: Option<i64>,
    pub correlation_id: Option<Cow<'a, str>>,
}

impl ValidEvent<'_> {
    /// A copy that owns its strings (for a caller that outlives the input).
    pub fn into_owned(self) -> ValidEvent<'static> {
        let key = |k: Key<'_>| match k {
            Key::Known(id) => Key::Known(id),
            Key::Other(s) => Key::Other(Cow::Owned(s.into_owned())),
        };
        let text = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        ValidEvent {
            event: self.event,
            measurements: self
                .measurements
                .into_iter()
                .map(|(k, n)| (key(k), n))
                .collect(),
            metadata: self
                .metadata
                .into_iter()
                .map(|(k, v)| (key(k), text(v)))
                .collect(),
            timestamp_ns: self.timestamp_ns,
            correlation_id: self.correlation_id.map(text),
        }
    }
}

/// Why an event was rejected. The snake_case name is the atom Elixir counts
/// rejections under; the message is for logs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("event name is not in the catalog: {0:?}")]
    UnknownEvent(String),
    #[error("event name too long or has too many parts")]
    EventNameTooLong,
    #[error("more than {0} measurements")]
    TooManyMeasurements(usize),
    #[error("more than {0} metadata entries")]
    TooManyMetadata(usize),
    #[error("key is empty or longer than {0} bytes")]
    InvalidKey(usize),
    #[error("measurement {0:?} is not a finite number")]
    InvalidMeasurement(String),
    #[error("metadata {0:?} is not a string, number or boolean")]
    InvalidMetadata(String),
    #[error("correlation id longer than {0} bytes")]
    CorrelationIdTooLong(usize),
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("payload is not a telemetry object: {0}")]
    InvalidPayload(&'static str),
    #[error("event bytes are not a valid protobuf TelemetryEvent: {0}")]
    Malformed(&'static str),
    /// A gRPC frame over `max_frame_bytes`: refused from its header, before
    /// its body is read; the connection ends with it.
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
    /// A finite measurement that has no value in the units Elixir receives
    /// (a duration that overflows when converted to native time units).
    #[error("measurement {0:?} is out of range once converted")]
    MeasurementOutOfRange(String),
    /// Two entries of one map under the same key after validation; never
    /// expected (the parsers keep the last value), refused rather than
    /// trusted.
    #[error("a map key appears twice")]
    DuplicateKey,
}

impl Rejection {
    /// The reason as a stable snake_case name (an atom in Elixir).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::UnknownEvent(_) => "unknown_event",
            Rejection::EventNameTooLong => "event_name_too_long",
            Rejection::TooManyMeasurements(_) => "too_many_measurements",
            Rejection::TooManyMetadata(_) => "too_many_metadata",
            Rejection::InvalidKey(_) => "invalid_key",
            Rejection::InvalidMeasurement(_) => "invalid_measurement",
            Rejection::InvalidMetadata(_) => "invalid_metadata",
            Rejection::CorrelationIdTooLong(_) => "correlation_id_too_long",
            Rejection::LineTooLong(_) => "line_too_long",
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::InvalidPayload(_) => "invalid_payload",
            Rejection::Malformed(_) => "malformed",
            Rejection::FrameTooLarge(_) => "frame_too_large",
            Rejection::MeasurementOutOfRange(_) => "measurement_out_of_range",
            Rejection::DuplicateKey => "duplicate_key",
        }
    }

    /// Every reason, so counters can be laid out up front.
    pub const REASONS: [&'static str; 15] = [
        "unknown_event",
        "event_name_too_long",
        "too_many_measurements",
        "too_many_metadata",
        "invalid_key",
        "invalid_measurement",
        "invalid_metadata",
        "correlation_id_too_long",
        "line_too_long",
        "invalid_json",
        "invalid_payload",
        "malformed",
        "frame_too_large",
        "measurement_out_of_range",
        "duplicate_key",
    ];
}

/// Validates `raw` against `catalog`.
pub fn validate<'a>(
    catalog: &Catalog,
    raw: &RawEvent<'_, 'a>,
) -> Result<ValidEvent<'a>, Rejection> {
    let limits = &catalog.limits;
    let event = resolve_name(catalog, raw.name)?;
    if raw.measurements.len() > limits.max_measurements {
        return Err(Rejection::TooManyMeasurements(limits.max_measurements));
    }
    if raw.metadata.len() > limits.max_metadata {
        return Err(Rejection::TooManyMetadata(limits.max_metadata));
    }
    let measurements = raw
        .measurements
        .iter()
        .map(|&(k, v)| Ok((measurement_key(catalog, k)?, number(k, v)?)))
        .collect::<Result<Vec<_>, Rejection>>()?;
    let mut metadata = Vec::with_capacity(raw.metadata.len());
    for &(k, v) in raw.metadata {
        let key = metadata_key(catalog, k)?;
        if let Some(text) = metadata_text(k, v, limits.max_metadata_value_bytes)? {
            metadata.push((key, text));
        }
    }
    Ok(ValidEvent {
        event,
        measurements,
        metadata,
        timestamp_ns: raw.timestamp_ns.filter(|&t| t > 0),
        correlation_id: correlation_id(raw.correlation_id, limits.max_correlation_id_bytes)?,
    })
}

fn resolve_name(catalog: &Catalog, name: RawName<'_, '_>) -> Result<EventId, Rejection> {
    let limits = &catalog.limits;
    let found = match name {
        RawName::Dotted(s) => {
            if s.len() > limits.max_event_name_bytes {
                return Err(Rejection::EventNameTooLong);
            }
            catalog.ingest_event(s)
        }
        RawName::Parts(parts) => {
            let bytes: usize = parts.iter().map(|p| p.len() + 1).sum();
            if parts.len() > limits.max_event_parts || bytes > limits.max_event_name_bytes {
                return Err(Rejection::EventNameTooLong);
            }
            // Joined on the stack: this runs once per event on the hot path.
            let mut buf = [0u8; 256];
            match join_parts(parts, &mut buf) {
                Some(dotted) => catalog.ingest_event(dotted),
                None => catalog.ingest_event(&parts.join(".")),
            }
        }
    };
    found.ok_or_else(|| {
        Rejection::UnknownEvent(match name {
            RawName::Dotted(s) => s.to_owned(),
            RawName::Parts(p) => p.join("."),
        })
    })
}

/// `parts` joined with dots in `buf`; `None` when it does not fit.
fn join_parts<'b>(parts: &[&str], buf: &'b mut [u8]) -> Option<&'b str> {
    let mut len = 0;
    for (i, part) in parts.iter().enumerate() {
        let dot = usize::from(i > 0);
        let end = len + dot + part.len();
        let slot = buf.get_mut(len..end)?;
        if dot == 1 {
            slot[0] = b'.';
        }
        slot[dot..].copy_from_slice(part.as_bytes());
        len = end;
    }
    // Whole `&str`s and ASCII dots: always UTF-8.
    std::str::from_utf8(&buf[..len]).ok()
}

fn check_key(key: &str, max: usize) -> Result<(), Rejection> {
    if key.is_empty() || key.len() > max {
        Err(Rejection::InvalidKey(max))
    } else {
        Ok(())
    }
}

fn measurement_key<'a>(catalog: &Catalog, key: &'a str) -> Result<Key<'a>, Rejection> {
    check_key(key, catalog.limits.max_key_bytes)?;
    Ok(match catalog.measurement_key(key) {
        Some(id) => Key::Known(id),
        None => Key::Other(Cow::Borrowed(key)),
    })
}

fn metadata_key<'a>(catalog: &Catalog, key: &'a str) -> Result<Key<'a>, Rejection> {
    check_key(key, catalog.limits.max_key_bytes)?;
    Ok(match catalog.metadata_key(key) {
        Some(id) => Key::Known(id),
        None => Key::Other(Cow::Borrowed(key)),
    })
}

fn number(key: &str, value: RawValue<'_>) -> Result<Number, Rejection> {
    let n = match value {
        RawValue::Int(i) => Some(Number::Int(i)),
        RawValue::Float(f) => Some(Number::Float(f)),
        RawValue::Bool(b) => Some(Number::Int(b as i64)),
        RawValue::Str(s) => parse_number(s.trim()),
        RawValue::Null | RawValue::Nested => None,
    };
    match n {
        Some(Number::Float(f)) if !f.is_finite() => None,
        other => other,
    }
    .ok_or_else(|| Rejection::InvalidMeasurement(key.to_owned()))
}

fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::Int(i));
    }
    // Rust also parses "inf"/"NaN"; the finiteness check above rejects them.
    s.parse::<f64>().ok().map(Number::Float)
}

fn metadata_text<'a>(
    key: &str,
    value: RawValue<'a>,
    max: usize,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    Ok(Some(match value {
        RawValue::Str(s) => Cow::Borrowed(truncate(s, max)),
        RawValue::Int(i) => Cow::Owned(i.to_string()),
        RawValue::Float(f) => Cow::Owned(float_text(f)),
        RawValue::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        RawValue::Null => return Ok(None),
        RawValue::Nested => return Err(Rejection::InvalidMetadata(key.to_owned())),
    }))
}

/// A float as metadata text, written as Python's `repr` writes it (the rule
/// of `priv/catalog/value_rules.json`; Python's own metadata already is):
/// the shortest digits that read back as the same double; exponent notation
/// below 1e-4 and from 1e16 (`1e+20`, `1.5e-07`, sign and two digits at
/// least), else fixed with at least one decimal (`100.0`).
pub fn float_text(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "nan"
        } else if f > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.5e-7", "1e16", "0e0".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits = mantissa.replace('.', "");
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{exp_sign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let n = digits.len() as i32;
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point < n {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    } else {
        format!("{sign}{digits}{}.0", "0".repeat((point - n) as usize))
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn correlation_id(id: Option<&str>, max: usize) -> Result<Option<Cow<'_, str>>, Rejection> {
    match id.map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) if id.len() > max => Err(Rejection::CorrelationIdTooLong(max)),
        Some(id) => Ok(Some(Cow::Borrowed(id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CATALOG;

    fn raw<'a>(name: &'a str) -> RawEvent<'a, 'a> {
        RawEvent {
            name: RawName::Dotted(name),
            measurements: &[],
            metadata: &[],
            timestamp_ns: None,
            correlation_id: None,
        }
    }

    fn ok<'a>(r: &RawEvent<'_, 'a>) -> ValidEvent<'a> {
        validate(&CATALOG, r).expect("valid")
    }

    fn err(r: &RawEvent<'_, '_>) -> &'static str {
        validate(&CATALOG, r).expect_err("rejected").reason()
    }

    #[test]
    fn known_python_event_is_accepted() {
        let e = ok(&raw("tool.result_size"));
        assert_eq!(CATALOG.events[e.event as usize].event[3], "result_size");
    }

    #[test]
    fn event_parts_are_accepted() {
        let parts = ["python", "call", "stop"];
        let mut r = raw("");
        r.name = RawName::Parts(&parts);
        assert_eq!(
            ok(&r).event,
            CATALOG.ingest_event("python.call.stop").unwrap()
        );
    }

    #[test]
    fn unknown_and_oversized_names_are_rejected() {
        assert_eq!(err(&raw("python.bogus.event")), "unknown_event");
        assert_eq!(err(&raw("pool.initialized")), "unknown_event");
        let long = "a.".repeat(200);
        assert_eq!(err(&raw(&long)), "event_name_too_long");
        let numbers: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        let parts: Vec<&str> = numbers.iter().map(String::as_str).collect();
        let mut r = raw("");
        r.name = RawName::Parts(&parts);
        assert_eq!(err(&r), "event_name_too_long");
    }

    #[test]
    fn allowlisted_keys_are_known_others_stay_strings() {
        let mut r = raw("tool.execution.stop");
        r.measurements = &[
            ("duration", RawValue::Int(5)),
            ("my_gauge", RawValue::Float(1.5)),
        ];
        r.metadata = &[("tool", RawValue::Str("t")), ("custom", RawValue::Str("c"))];
        let e = ok(&r);
        assert_eq!(
            e.measurements[0].0,
            Key::Known(CATALOG.measurement_key("duration").unwrap())
        );
        assert_eq!(
            e.measurements[1],
            (Key::Other("my_gauge".into()), Number::Float(1.5))
        );
        assert_eq!(
            e.metadata[0].0,
            Key::Known(CATALOG.metadata_key("tool").unwrap())
        );
        assert_eq!(e.metadata[1], (Key::Other("custom".into()), "c".into()));
    }

    #[test]
    fn numeric_strings_are_numbers_other_strings_reject() {
        let mut r = raw("tool.result_size");
        r.measurements = &[
            ("bytes", RawValue::Str(" 42 ")),
            ("x", RawValue::Str("2.5")),
        ];
        let e = ok(&r);
        assert_eq!(e.measurements[0].1, Number::Int(42));
        assert_eq!(e.measurements[1].1, Number::Float(2.5));
        for bad in [
            RawValue::Str("n/a"),
            RawValue::Str("NaN"),
            RawValue::Float(f64::INFINITY),
            RawValue::Null,
            RawValue::Nested,
        ] {
            let entries = [("bytes", bad)];
            let r = RawEvent {
                measurements: &entries,
                ..r
            };
            assert_eq!(err(&r), "invalid_measurement", "{bad:?}");
        }
    }

    #[test]
    fn metadata_values_become_bounded_strings() {
        let max = CATALOG.limits.max_metadata_value_bytes;
        let long = "é".repeat(max); // 2 bytes each: must cut on a boundary
        let mut r = raw("tool.result_size");
        let entries = [
            ("n", RawValue::Int(7)),
            ("b", RawValue::Bool(true)),
            ("gone", RawValue::Null),
            ("long", RawValue::Str(&long)),
        ];
        r.metadata = &entries;
        let e = ok(&r);
        assert_eq!(e.metadata.len(), 3);
        assert_eq!(e.metadata[0].1, "7");
        assert_eq!(e.metadata[1].1, "true");
        assert!(e.metadata[2].1.len() <= max && e.metadata[2].1.len() >= max - 1);
        r.metadata = &[("obj", RawValue::Nested)];
        assert_eq!(err(&r), "invalid_metadata");
    }

    #[test]
    fn bad_keys_and_too_many_entries_are_rejected() {
        let mut r = raw("tool.result_size");
        r.metadata = &[("", RawValue::Str("x"))];
        assert_eq!(err(&r), "invalid_key");
        let long = "k".repeat(65);
        let entries = [(long.as_str(), RawValue::Str("x"))];
        r.metadata = &entries;
        assert_eq!(err(&r), "invalid_key");
        r.metadata = &[];
        r.measurements = &[("count", RawValue::Int(1)); 33];
        assert_eq!(err(&r), "too_many_measurements");
        r.measurements = &[];
        r.metadata = &[("tool", RawValue::Str("x")); 65];
        assert_eq!(err(&r), "too_many_metadata");
    }

    #[test]
    fn correlation_id_blank_is_none_and_bounded() {
        let mut r = raw("tool.result_size");
        r.correlation_id = Some("  ");
        assert_eq!(ok(&r).correlation_id, None);
        r.correlation_id = Some("abc-1");
        assert_eq!(ok(&r).correlation_id.as_deref(), Some("abc-1"));
        let long = "c".repeat(129);
        r.correlation_id = Some(&long);
        assert_eq!(err(&r), "correlation_id_too_long");
    }

    proptest::proptest! {
        #[test]
        fn float_text_reads_back_as_the_same_double(bits: u64) {
            let f = f64::from_bits(bits);
            proptest::prop_assume!(f.is_finite());
            let text = float_text(f);
            proptest::prop_assert_eq!(text.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{}", text);
            proptest::prop_assert!(text.contains('.') || text.contains('e'), "{}", text);
        }
    }

    #[test]
    fn zero_timestamp_means_not_given() {
        let mut r = raw("tool.result_size");
        r.timestamp_ns = Some(0);
        assert_eq!(ok(&r).timestamp_ns, None);
        r.timestamp_ns = Some(17);
        assert_eq!(ok(&r).timestamp_ns, Some(17));
    }

    #[test]
    fn reasons_list_is_complete() {
        let all = [
            Rejection::UnknownEvent(String::new()),
            Rejection::EventNameTooLong,
            Rejection::TooManyMeasurements(0),
            Rejection::TooManyMetadata(0),
            Rejection::InvalidKey(0),
            Rejection::InvalidMeasurement(String::new()),
            Rejection::InvalidMetadata(String::new()),
            Rejection::CorrelationIdTooLong(0),
            Rejection::LineTooLong(0),
            Rejection::InvalidJson(String::new()),
            Rejection::InvalidPayload(""),
            Rejection::Malformed(""),
            Rejection::FrameTooLarge(0),
            Rejection::MeasurementOutOfRange(String::new()),
            Rejection::DuplicateKey,
        ];
        let names: Vec<_> = all.iter().map(Rejection::reason).collect();
        assert_eq!(names, Rejection::REASONS);
    }
}
