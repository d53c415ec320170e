//! The ingest hot path: one pass over a frame's protobuf bytes that borrows
//! every string from the frame, so validating an event allocates nothing per
//! key or value (prost's generated types build a `HashMap<String, _>` per map
//! field and a `String` per key, value and name part: most of the NIF's cost
//! per event before this).
//!
//! Same results as decoding with prost then [`crate::frame`] (checked by the
//! tests below and the `frame_event` / `frame_batch` fuzz targets), with
//! three deliberate differences, all on input no protobuf encoder produces:
//! - a malformed event (bad wire type, truncated field, invalid UTF-8) is
//!   rejected alone as `malformed`; the rest of the frame still counts. Only
//!   a frame whose outer structure is broken is refused whole;
//! - a map entry under the wrong wire type is malformed (prost does not
//!   check the wire type of map fields and reads on);
//! - an event is rejected as too many entries as soon as one more entry
//!   arrives for a map that already holds the catalog's maximum, even if it
//!   repeats a key (a hostile event of a million entries stops there; a
//!   repeated key costs a search of at most that maximum).

use crate::catalog::Catalog;
use crate::validate::{validate, RawEvent, RawName, RawValue, Rejection, ValidEvent};

/// The running totals a `TelemetryEventBatch` carries (see the proto).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchTotals {
    pub dropped: u64,
    pub emitted: u64,
    pub sampled_out: u64,
    pub filtered_out: u64,
    pub disabled: u64,
    /// Identifies the process that counts these totals; 0 = not sent.
    pub source_id: u64,
    /// Calls the worker refused for a missing or wrong token (not events).
    pub auth_rejected: u64,
}

/// A frame whose outer structure is not a protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame is not a valid protobuf message: {0}")]
pub struct MalformedFrame(pub &'static str);

/// A `TelemetryEventBatch` frame, checked and split into its events' bytes.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    pub totals: BatchTotals,
    pub events: Vec<&'a [u8]>,
}

/// Splits a `TelemetryEventBatch` frame. `events` is reused (cleared first).
pub fn split_batch<'a>(
    frame: &'a [u8],
    events: &mut Vec<&'a [u8]>,
) -> Result<BatchTotals, MalformedFrame> {
    events.clear();
    let mut totals = BatchTotals::default();
    let mut r = Reader::new(frame);
    let bad = |_| MalformedFrame("truncated or invalid field");
    while let Some((field, wire)) = r.key().map_err(bad)? {
        let total = match (field, wire) {
            (1, LEN) => {
                events.push(r.bytes().map_err(bad)?);
                continue;
            }
            (1, _) => return Err(MalformedFrame("events has the wrong wire type")),
            (2..=8, VARINT) => r.varint().map_err(bad)?,
            (2..=8, _) => return Err(MalformedFrame("a total has the wrong wire type")),
            _ => {
                r.skip(field, wire).map_err(bad)?;
                continue;
            }
        };
        *match field {
            2 => &mut totals.dropped,
            3 => &mut totals.emitted,
            4 => &mut totals.sampled_out,
            5 => &mut totals.filtered_out,
            6 => &mut totals.disabled,
            7 => &mut totals.source_id,
            _ => &mut totals.auth_rejected,
        } = total;
    }
    Ok(totals)
}

/// One event's fields, borrowed from the frame; reused from event to event.
#[derive(Debug, Default)]
pub struct EventScratch<'a> {
    parts: Vec<&'a str>,
    measurements: Vec<(&'a str, RawValue<'a>)>,
    metadata: Vec<(&'a str, RawValue<'a>)>,
}

impl<'a> EventScratch<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes and validates one `TelemetryEvent` (a stock frame, or one
    /// event of a batch).
    pub fn validate(
        &mut self,
        catalog: &Catalog,
        event: &'a [u8],
    ) -> Result<ValidEvent<'a>, Rejection> {
        let (timestamp_ns, correlation_id) = self.scan(catalog, event)?;
        validate(
            catalog,
            &RawEvent {
                name: RawName::Parts(&self.parts),
                measurements: &self.measurements,
                metadata: &self.metadata,
                timestamp_ns: Some(timestamp_ns),
                correlation_id: Some(correlation_id),
            },
        )
    }

    /// Fills the lists; returns the timestamp and correlation id.
    fn scan(&mut self, catalog: &Catalog, event: &'a [u8]) -> Result<(i64, &'a str), Rejection> {
        let limits = &catalog.limits;
        self.parts.clear();
        self.measurements.clear();
        self.metadata.clear();
        let (mut timestamp_ns, mut correlation_id) = (0, "");
        let mut r = Reader::new(event);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (1, LEN) => {
                    let part = utf8(r.bytes()?)?;
                    // One past the limit is enough for validation to refuse.
                    if self.parts.len() > limits.max_event_parts {
                        return Err(Rejection::EventNameTooLong);
                    }
                    self.parts.push(part);
                }
                (2, LEN) => {
                    if self.measurements.len() == limits.max_measurements {
                        return Err(Rejection::TooManyMeasurements(limits.max_measurements));
                    }
                    let (k, v) = entry(r.bytes()?, telemetry_value)?;
                    upsert(&mut self.measurements, k, v.unwrap_or(RawValue::Null));
                }
                (3, LEN) => {
                    if self.metadata.len() == limits.max_metadata {
                        return Err(Rejection::TooManyMetadata(limits.max_metadata));
                    }
                    let (k, v) = entry(r.bytes()?, |_, b| Ok(RawValue::Str(utf8(b)?)))?;
                    upsert(&mut self.metadata, k, v.unwrap_or(RawValue::Str("")));
                }
                (4, VARINT) => timestamp_ns = r.varint()? as i64,
                (5, LEN) => correlation_id = utf8(r.bytes()?)?,
                (1..=5, _) => return Err(Rejection::Malformed("a field has the wrong wire type")),
                _ => r.skip(field, wire)?,
            }
        }
        Ok((timestamp_ns, correlation_id))
    }
}

/// A repeated map key keeps its last value, as protobuf maps do. Entries are
/// bounded by the catalog (64), so the linear search stays short.
fn upsert<'a>(entries: &mut Vec<(&'a str, RawValue<'a>)>, k: &'a str, v: RawValue<'a>) {
    match entries.iter_mut().find(|(key, _)| *key == k) {
        Some(slot) => slot.1 = v,
        None => entries.push((k, v)),
    }
}

/// A map entry: key (field 1) and the value (field 2) parsed by `val`,
/// given the value so far (a repeated message field merges into it);
/// missing fields are the proto3 defaults (`""`, `None`).
fn entry<'a>(
    b: &'a [u8],
    val: impl Fn(Option<RawValue<'a>>, &'a [u8]) -> Result<RawValue<'a>, Rejection>,
) -> Result<(&'a str, Option<RawValue<'a>>), Rejection> {
    let mut r = Reader::new(b);
    let (mut k, mut v) = ("", None);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, LEN) => k = utf8(r.bytes()?)?,
            (2, LEN) => v = Some(val(v, r.bytes()?)?),
            (1 | 2, _) => return Err(Rejection::Malformed("a map entry has the wrong wire type")),
            _ => r.skip(field, wire)?,
        }
    }
    Ok((k, v))
}

/// A `TelemetryValue`, merged into `prev` (what earlier occurrences of the
/// same field set): the last field of its oneof wins; none set is null.
fn telemetry_value<'a>(prev: Option<RawValue<'a>>, b: &'a [u8]) -> Result<RawValue<'a>, Rejection> {
    let mut r = Reader::new(b);
    let mut v = prev.unwrap_or(RawValue::Null);
    while let Some((field, wire)) = r.key()? {
        v = match (field, wire) {
            (1, VARINT) => RawValue::Int(r.varint()? as i64),
            (2, I64) => RawValue::Float(f64::from_le_bytes(r.fixed8()?)),
            (3, LEN) => RawValue::Str(utf8(r.bytes()?)?),
            (1..=3, _) => return Err(Rejection::Malformed("a value has the wrong wire type")),
            _ => {
                r.skip(field, wire)?;
                v
            }
        };
    }
    Ok(v)
}

fn utf8(b: &[u8]) -> Result<&str, Rejection> {
    // Names, keys and most values are short ASCII: checked word by word
    // first, which is cheaper than the full decoder's setup per string.
    if b.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(b) });
    }
    std::str::from_utf8(b).map_err(|_| Rejection::Malformed("a string is not UTF-8"))
}

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const I32: u8 = 5;
/// prost's recursion limit.
const MAX_GROUP_DEPTH: u32 = 100;
/// The largest protobuf field number.
const MAX_FIELD: u32 = (1 << 29) - 1;

/// Truncated or invalid wire data (the callers say where).
#[derive(Debug)]
struct Truncated;

impl From<Truncated> for Rejection {
    fn from(_: Truncated) -> Self {
        Rejection::Malformed("truncated or invalid field")
    }
}

/// A cursor over protobuf wire data.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, i: 0 }
    }

    fn varint(&mut self) -> Result<u64, Truncated> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i).ok_or(Truncated)?;
            self.i += 1;
            // The tenth byte holds bit 63 only: more would overflow 64 bits
            // (found by fuzzing: prost refuses such a varint, so must we).
            if shift == 63 && byte > 1 {
                return Err(Truncated);
            }
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err(Truncated)
    }

    /// The next field number and wire type; `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, u8)>, Truncated> {
        if self.i >= self.b.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        let field = u32::try_from(k >> 3).map_err(|_| Truncated)?;
        // Field numbers run from 1 to 2^29 - 1 (prost refuses the others).
        if field == 0 || field > MAX_FIELD {
            return Err(Truncated);
        }
        Ok(Some((field, (k & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self.i.checked_add(n).ok_or(Truncated)?;
        let s = self.b.get(self.i..end).ok_or(Truncated)?;
        self.i = end;
        Ok(s)
    }

    fn fixed8(&mut self) -> Result<[u8; 8], Truncated> {
        Ok(self.take(8)?.try_into().expect("8 bytes"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Truncated> {
        let n = usize::try_from(self.varint()?).map_err(|_| Truncated)?;
        self.take(n)
    }

    /// Skips the value of an unknown field `field`.
    fn skip(&mut self, field: u32, wire: u8) -> Result<(), Truncated> {
        self.skip_nested(field, wire, 0)
    }

    fn skip_nested(&mut self, field: u32, wire: u8, depth: u32) -> Result<(), Truncated> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            I32 => self.take(4).map(drop),
            // A (deprecated) group: fields up to its end tag, nested no
            // deeper than prost allows (the depth is input-controlled).
            START_GROUP if depth < MAX_GROUP_DEPTH => loop {
                let (inner, wire) = self.key()?.ok_or(Truncated)?;
                match wire {
                    END_GROUP if inner == field => return Ok(()),
                    END_GROUP => return Err(Truncated),
                    _ => self.skip_nested(inner, wire, depth + 1)?,
                }
            },
            _ => Err(Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CATALOG;
    use crate::frame::tests::{event, value};
    use crate::frame::validate_frame_event;
    use crate::wire::telemetry_value::Value;
    use crate::wire::{TelemetryEvent, TelemetryEventBatch, TelemetryValue};
    use prost::Message;

    /// Maps compared as sets: prost's `HashMap` has no order.
    fn sorted(mut e: ValidEvent<'_>) -> ValidEvent<'static> {
        e.measurements
            .sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        e.metadata
            .sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        e.into_owned()
    }

    fn both(
        e: &TelemetryEvent,
    ) -> (
        Result<ValidEvent<'static>, Rejection>,
        Result<ValidEvent<'static>, Rejection>,
    ) {
        let bytes = e.encode_to_vec();
        let scanned = EventScratch::new().validate(&CATALOG, &bytes).map(sorted);
        let reference = validate_frame_event(&CATALOG, e).map(sorted);
        (scanned, reference)
    }

    fn a_rich_event() -> TelemetryEvent {
        let mut e = event(&["tool", "execution", "stop"]);
        e.measurements
            .insert("duration".into(), value(Value::IntValue(-9)));
        e.measurements
            .insert("ratio".into(), value(Value::FloatValue(0.25)));
        e.measurements
            .insert("n".into(), value(Value::StringValue(" 7 ".into())));
        e.metadata.insert("tool".into(), "t".into());
        e.metadata.insert("custom".into(), "ü".into());
        e.correlation_id = " c-1 ".into();
        e.timestamp_ns = 1_700_000_000_000_000_000;
        e
    }

    #[test]
    fn same_events_as_prost_then_validate() {
        let mut unset = event(&["python", "call", "stop"]);
        unset
            .measurements
            .insert("duration".into(), TelemetryValue { value: None });
        let mut many = event(&["python", "call", "stop"]);
        for i in 0..65 {
            many.metadata.insert(format!("k{i}"), "v".into());
        }
        for e in [
            a_rich_event(),
            event(&["python", "call", "start"]),
            event(&["python", "nope"]),
            event(&[]),
            event(&["a"; 9]),
            unset,
            many,
        ] {
            let (scanned, reference) = both(&e);
            assert_eq!(scanned, reference, "{e:?}");
        }
    }

    #[test]
    fn a_batch_is_split_with_its_totals() {
        let batch = TelemetryEventBatch {
            events: vec![a_rich_event(), event(&["python", "nope"])],
            dropped_total: 1,
            emitted_total: 2,
            sampled_out_total: 3,
            filtered_out_total: 4,
            disabled_total: 5,
            source_id: 6,
            auth_rejected_total: 7,
        };
        let bytes = batch.encode_to_vec();
        let mut events = vec![];
        let totals = split_batch(&bytes, &mut events).unwrap();
        assert_eq!(
            totals,
            BatchTotals {
                dropped: 1,
                emitted: 2,
                sampled_out: 3,
                filtered_out: 4,
                disabled: 5,
                source_id: 6,
                auth_rejected: 7,
            }
        );
        assert_eq!(events.len(), 2);
        let mut scratch = EventScratch::new();
        assert!(scratch.validate(&CATALOG, events[0]).is_ok());
        assert_eq!(
            scratch.validate(&CATALOG, events[1]).unwrap_err().reason(),
            "unknown_event"
        );
    }

    #[test]
    fn a_malformed_event_is_rejected_alone() {
        let good = a_rich_event().encode_to_vec();
        // Truncated: a length prefix running past the end.
        let mut cut = good.clone();
        cut.truncate(good.len() - 3);
        // Invalid UTF-8 in a name part.
        let bad_utf8 = [0x0a, 0x02, 0xff, 0xfe];
        // event_parts sent as a varint.
        let wrong_wire = [0x08, 0x01];
        let mut scratch = EventScratch::new();
        for bytes in [&cut[..], &bad_utf8[..], &wrong_wire[..]] {
            let r = scratch.validate(&CATALOG, bytes).unwrap_err();
            assert_eq!(r.reason(), "malformed", "{bytes:?}");
        }
        // The same scratch goes on decoding good events.
        assert!(scratch.validate(&CATALOG, &good).is_ok());
    }

    /// Fuzz finding (frame_event): a ten-byte varint whose last byte has
    /// more than bit 63 was truncated silently; prost refuses it.
    #[test]
    fn an_overflowing_varint_is_malformed() {
        let mut bytes = event(&["python", "call", "start"]).encode_to_vec();
        bytes.push(0x20); // timestamp_ns, varint
        bytes.extend([0x80; 9]);
        bytes.push(0x17);
        assert!(TelemetryEvent::decode(&bytes[..]).is_err());
        let r = EventScratch::new().validate(&CATALOG, &bytes).unwrap_err();
        assert_eq!(r.reason(), "malformed");
        // Bit 63 alone is fine: a negative int64.
        *bytes.last_mut().unwrap() = 0x01;
        let e = EventScratch::new().validate(&CATALOG, &bytes);
        assert_eq!(e.unwrap().timestamp_ns, None, "negative: not given");
    }

    /// Fuzz finding (frame_event): a key whose field number is past the
    /// protobuf maximum (2^29 - 1) was skipped as an unknown field; prost
    /// refuses it.
    #[test]
    fn a_field_number_past_the_maximum_is_malformed() {
        let mut bytes = event(&["python", "call", "start"]).encode_to_vec();
        // Field 2^29 (one past the maximum), wire type LEN, one byte.
        bytes.extend([0x82, 0x80, 0x80, 0x80, 0x10, 0x01, 0x00]);
        assert!(TelemetryEvent::decode(&bytes[..]).is_err());
        let r = EventScratch::new().validate(&CATALOG, &bytes).unwrap_err();
        assert_eq!(r.reason(), "malformed");
        // The maximum itself is a valid (unknown, skipped) field.
        let mut ok = event(&["python", "call", "start"]).encode_to_vec();
        ok.extend([0xfa, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x00]);
        assert!(TelemetryEvent::decode(&ok[..]).is_ok());
        assert!(EventScratch::new().validate(&CATALOG, &ok).is_ok());
    }

    /// Fuzz finding (frame_event): a map entry whose `TelemetryValue` comes
    /// twice was read as the last one alone; protobuf merges repeated
    /// message fields, so an empty second value keeps the first.
    #[test]
    fn a_repeated_measurement_value_is_merged() {
        let mut bytes = event(&["python", "call", "stop"]).encode_to_vec();
        // measurements entry: key "m", value {int_value: 18}, then value {}.
        bytes.extend([
            0x12, 0x09, 0x0a, 0x01, b'm', 0x12, 0x02, 0x08, 0x12, 0x12, 0x00,
        ]);
        let decoded = TelemetryEvent::decode(&bytes[..]).unwrap();
        assert_eq!(decoded.measurements["m"].value, Some(Value::IntValue(18)));
        let e = EventScratch::new().validate(&CATALOG, &bytes).unwrap();
        assert_eq!(
            sorted(e),
            sorted(validate_frame_event(&CATALOG, &decoded).unwrap())
        );
    }

    #[test]
    fn a_broken_frame_is_refused_whole() {
        let mut events = vec![];
        for frame in [
            &[0x0a, 0x05, 0x01][..],
            &[0x08, 0x01],
            &[0x10, 0xff],
            &[0x00],
        ] {
            assert!(split_batch(frame, &mut events).is_err(), "{frame:?}");
        }
        assert_eq!(split_batch(&[], &mut events), Ok(BatchTotals::default()));
    }

    #[test]
    fn too_many_entries_are_refused_while_scanning() {
        let mut e = event(&["python", "call", "stop"]);
        for i in 0..100_000 {
            e.metadata.insert(format!("k{i}"), "v".into());
        }
        let bytes = e.encode_to_vec();
        let r = EventScratch::new().validate(&CATALOG, &bytes).unwrap_err();
        assert_eq!(r.reason(), "too_many_metadata");
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        // Two metadata entries with key "tool": "a" then "b".
        let entry = |v: &str| {
            let mut b = vec![0x1a, (6 + 2 + v.len()) as u8, 0x0a, 4];
            b.extend_from_slice(b"tool");
            b.extend_from_slice(&[0x12, v.len() as u8]);
            b.extend_from_slice(v.as_bytes());
            b
        };
        let mut bytes = event(&["python", "call", "start"]).encode_to_vec();
        bytes.extend(entry("a"));
        bytes.extend(entry("b"));
        let e = EventScratch::new().validate(&CATALOG, &bytes).unwrap();
        assert_eq!(e.metadata.len(), 1);
        assert_eq!(e.metadata[0].1, "b");
        let decoded = TelemetryEvent::decode(&bytes[..]).unwrap();
        assert_eq!(decoded.metadata["tool"], "b");
    }
}
