//! Protobuf wire encoding of one telemetry event, from plain Rust values.
//! The same bytes as `snakepit_bridge/telemetry/wire.py` writes (field
//! order included): the Python tests compare the two byte for byte.
//!
//! `TelemetryEvent`: `event_parts` (1, one per dotted part), `measurements`
//! (2, map entries `{1: key, 2: TelemetryValue}`), `metadata` (3, map
//! entries `{1: key, 2: value}`), `timestamp_ns` (4, varint; left out when
//! 0), `correlation_id` (5; left out when empty).

/// A measurement value in the encoder's fast path.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Int(i64),
    Float(f64),
    Text(&'a str),
}

/// Appends the varint of `v`.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes of the varint of `v`.
fn varint_len(v: u64) -> usize {
    // 1 byte per started 7 bits; 0 still takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A length-delimited field: tag, length, payload.
fn field(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Length of a length-delimited field whose payload has `len` bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Starts an event: its name's parts.
pub fn name(out: &mut Vec<u8>, name: &str) {
    for part in name.split('.') {
        field(out, 0x0A, part.as_bytes());
    }
}

/// One `measurements` entry.
pub fn measurement(out: &mut Vec<u8>, key: &str, value: Value<'_>) {
    // TelemetryValue: int_value (1, varint), float_value (2, double),
    // string_value (3, string). Negative ints as two's complement (int64).
    let value_len = match value {
        Value::Int(i) => 1 + varint_len(i as u64),
        Value::Float(_) => 9,
        Value::Text(s) => field_len(s.len()),
    };
    out.push(0x12);
    varint(out, (field_len(key.len()) + field_len(value_len)) as u64);
    field(out, 0x0A, key.as_bytes());
    out.push(0x12);
    varint(out, value_len as u64);
    match value {
        Value::Int(i) => {
            out.push(0x08);
            varint(out, i as u64);
        }
        Value::Float(f) => {
            out.push(0x11);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Text(s) => field(out, 0x1A, s.as_bytes()),
    }
}

/// One `metadata` entry.
pub fn metadata(out: &mut Vec<u8>, key: &str, value: &str) {
    out.push(0x1A);
    varint(out, (field_len(key.len()) + field_len(value.len())) as u64);
    field(out, 0x0A, key.as_bytes());
    field(out, 0x12, value.as_bytes());
}

/// Ends an event: its timestamp and correlation id (each left out when
/// zero / empty).
pub fn finish(out: &mut Vec<u8>, timestamp_ns: i64, correlation_id: &str) {
    if timestamp_ns != 0 {
        out.push(0x20);
        varint(out, timestamp_ns as u64);
    }
    if !correlation_id.is_empty() {
        field(out, 0x2A, correlation_id.as_bytes());
    }
}

/// Bytes kept free in front of a body for its frame header (tag and the
/// varint of a length below 2^35).
pub const FRAME_HEADER_MAX: usize = 6;

/// `buf` is [`FRAME_HEADER_MAX`] free bytes, then an event's body: writes
/// the tag and length that make the body one element of
/// `TelemetryEventBatch.events` right in front of it, and returns where
/// that element starts (`None` for a body of 2^35 bytes or more).
pub fn frame_header_before(buf: &mut [u8]) -> Option<usize> {
    let body_len = buf.len().checked_sub(FRAME_HEADER_MAX)? as u64;
    let start = (FRAME_HEADER_MAX - 1).checked_sub(varint_len(body_len))?;
    buf[start] = 0x0A;
    let mut v = body_len;
    let mut at = start + 1;
    while v >= 0x80 {
        buf[at] = (v as u8 & 0x7F) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    Some(start)
}
