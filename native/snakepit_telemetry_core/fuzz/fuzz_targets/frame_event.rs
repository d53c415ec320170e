//! Arbitrary bytes as one frame of `StreamTelemetry` (a `TelemetryEvent`),
//! decoded as the NIF does, checked against prost.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    snakepit_telemetry_core_fuzz::fuzz_event_bytes(frame);
});
