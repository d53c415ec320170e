//! NIF for the stderr fallback: one worker output line in, one verdict out.

use rustler::{Binary, Encoder, Env, Term};
use snakepit_telemetry_core::stderr::{parse_line, StderrLine};

use crate::{atoms, catalog_terms, encode};

/// `:not_telemetry | {:ok, event, measurements, metadata} | {:error, {reason, message}}`.
/// For lines of at most `INLINE_LINE_BYTES` (8 KiB: at most ~0.2 ms here);
/// `PythonCapture` sends longer ones to `stderr_parse_line_dirty`. Lines over
/// `max_stderr_line_bytes` (64 KiB) are refused before parsing.
#[rustler::nif]
fn stderr_parse_line<'a>(env: Env<'a>, line: Binary<'a>) -> Term<'a> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StderrParseLine);
    parse(env, line)
}

/// `stderr_parse_line` on a dirty CPU scheduler: parsing 64 KiB of JSON
/// takes milliseconds, too long for a normal scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn stderr_parse_line_dirty<'a>(env: Env<'a>, line: Binary<'a>) -> Term<'a> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::StderrParseLineDirty);
    parse(env, line)
}

fn parse<'a>(env: Env<'a>, line: Binary<'a>) -> Term<'a> {
    let terms = catalog_terms::get();
    let encoded = parse_line(terms.catalog(), line.as_slice()).and_then(|parsed| match parsed {
        StderrLine::NotTelemetry => Ok(atoms::not_telemetry().encode(env)),
        StderrLine::Event(e) => {
            let (name, measurements, metadata) = encode::event_terms(env, terms, &e, None)?;
            Ok((atoms::ok(), name, measurements, metadata).encode(env))
        }
    });
    encoded.unwrap_or_else(|rejection| {
        let reason = (terms.reason(&rejection), rejection.to_string());
        (atoms::error(), reason).encode(env)
    })
}
