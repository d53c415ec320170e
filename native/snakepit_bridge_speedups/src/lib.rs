//! `snakepit_bridge.telemetry._speedups`: the hot path of the worker's
//! telemetry encoder (`wire.EventEncoder.encode`) in Rust, about four times
//! faster than the Python one (bench f11/f12). Optional: without it the
//! Python encoder does the same work.
//!
//! It takes only the values `telemetry.emit` queues (exact `str` names,
//! keys, metadata values and correlation ids; exact `int` in the int64 range
//! and `float` measurements) and answers `None` for anything else, so every
//! other case keeps its one definition, in Python. It never raises for a
//! value and never calls back into Python code while it reads the events
//! (exact built-in types only), so the dicts cannot change under it.

mod wire;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use wire::Value;

/// Version of the wire mapping this library writes; `wire.py` uses the
/// library only when its own version is the same (a stale build is ignored).
const WIRE_VERSION: u32 = 1;

/// Why an event left the fast path: the caller encodes the batch in Python.
struct NotFast;

type Fast<T> = Result<T, NotFast>;

/// The serialized events as `wire.EventEncoder.encode` returns them: one
/// piece per event (its body; with `framed`, its element of
/// `TelemetryEventBatch.events`: tag, length, body), or `None` when an event
/// is outside the fast path.
#[pyfunction]
fn encode<'py>(
    py: Python<'py>,
    events: &Bound<'py, PyAny>,
    framed: bool,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let Ok(events) = events.cast_exact::<PyList>() else {
        return Ok(None);
    };
    let out = PyList::empty(py);
    // The body is written after room for the longest frame header, which
    // then goes right in front of it: one copy, into the bytes object.
    let mut buf = Vec::with_capacity(256);
    for event in events.iter() {
        buf.clear();
        buf.resize(wire::FRAME_HEADER_MAX, 0);
        if encode_event(&event, &mut buf).is_err() {
            return Ok(None);
        }
        let start = if framed {
            match wire::frame_header_before(&mut buf) {
                Some(start) => start,
                None => return Ok(None),
            }
        } else {
            wire::FRAME_HEADER_MAX
        };
        out.append(PyBytes::new(py, &buf[start..]))?;
    }
    Ok(Some(out))
}

fn encode_event(event: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Fast<()> {
    let event = event.cast_exact::<PyTuple>().map_err(|_| NotFast)?;
    if event.len() != 5 {
        return Err(NotFast);
    }
    let item = |i| event.get_item(i).map_err(|_| NotFast);
    wire::name(out, text(&item(0)?)?);
    for (key, value) in exact_dict(&item(1)?)?.iter() {
        wire::measurement(out, text(&key)?, number(&value)?);
    }
    for (key, value) in exact_dict(&item(2)?)?.iter() {
        wire::metadata(out, text(&key)?, text(&value)?);
    }
    let timestamp_ns = int(&item(3)?)?;
    let correlation_id = item(4)?;
    if correlation_id.is_none() {
        wire::finish(out, timestamp_ns, "");
    } else {
        wire::finish(out, timestamp_ns, text(&correlation_id)?);
    }
    Ok(())
}

fn exact_dict<'a, 'py>(value: &'a Bound<'py, PyAny>) -> Fast<&'a Bound<'py, PyDict>> {
    value.cast_exact::<PyDict>().map_err(|_| NotFast)
}

/// The UTF-8 of an exact `str` (one with a lone surrogate is not fast: the
/// Python encoder replaces those).
fn text<'a>(value: &'a Bound<'_, PyAny>) -> Fast<&'a str> {
    let s = value.cast_exact::<PyString>().map_err(|_| NotFast)?;
    s.to_str().map_err(|_| NotFast)
}

fn int(value: &Bound<'_, PyAny>) -> Fast<i64> {
    let i = value.cast_exact::<PyInt>().map_err(|_| NotFast)?;
    i.extract::<i64>().map_err(|_| NotFast)
}

fn number<'a>(value: &'a Bound<'_, PyAny>) -> Fast<Value<'a>> {
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if value.is_exact_instance_of::<PyString>() {
        return text(value).map(Value::Text);
    }
    int(value).map(Value::Int)
}

#[pymodule]
fn _speedups(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("WIRE_VERSION", WIRE_VERSION)?;
    // What a panic here would raise (a BaseException): wire.py catches it,
    // encodes the batch in Python and stops using this library.
    m.add(
        "PanicException",
        m.py().get_type::<pyo3::panic::PanicException>(),
    )?;
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    Ok(())
}
