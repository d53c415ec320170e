//! Control messages from Elixir (built and validated by
//! `Snakepit.Telemetry.Control`) as wire `TelemetryControl` frames. What a
//! stream replays on (re)connect is `snakepit_telemetry_core::settings`.

use rustler::{Atom, NifResult, Term};
use snakepit_telemetry_core::catalog::CATALOG;
use snakepit_telemetry_core::wire::telemetry_control::Control;
use snakepit_telemetry_core::wire::{
    TelemetryControl, TelemetryEventFilter, TelemetrySamplingUpdate, TelemetryToggle,
};

use crate::{atoms, safe_decode};

/// The catalog bounds `Snakepit.Telemetry.Control` applies, enforced again
/// here: `(max_patterns, max_pattern_bytes)`.
fn pattern_bounds() -> (usize, usize) {
    (
        CATALOG.limits.max_patterns,
        CATALOG.limits.max_pattern_bytes,
    )
}

/// `{:toggle, bool} | {:sampling, float, [glob]} | {:filter, [glob], [glob]}`
pub fn decode(term: Term) -> NifResult<TelemetryControl> {
    let (count, bytes) = pattern_bounds();
    let (tag, rest) = match rustler::types::tuple::get_tuple(term)?.as_slice() {
        [tag, rest @ ..] => (tag.decode::<Atom>()?, rest.to_vec()),
        [] => return Err(rustler::Error::BadArg),
    };
    let control = match rest.as_slice() {
        [enabled] if tag == atoms::toggle() => Control::Toggle(TelemetryToggle {
            enabled: enabled.decode()?,
        }),
        [rate, patterns] if tag == atoms::sampling() => {
            let sampling_rate: f64 = rate.decode()?;
            // NaN fails the range check too.
            if !(0.0..=1.0).contains(&sampling_rate) {
                return Err(rustler::Error::BadArg);
            }
            Control::Sampling(TelemetrySamplingUpdate {
                sampling_rate,
                event_patterns: safe_decode::strings(*patterns, count, bytes)?,
            })
        }
        [allow, deny] if tag == atoms::filter() => Control::Filter(TelemetryEventFilter {
            allow: safe_decode::strings(*allow, count, bytes)?,
            deny: safe_decode::strings(*deny, count, bytes)?,
        }),
        _ => return Err(rustler::Error::BadArg),
    };
    Ok(TelemetryControl {
        control: Some(control),
    })
}
