//! Arbitrary bytes as one frame of `StreamTelemetry` (a `TelemetryEvent`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use snakepit_telemetry_core::wire::TelemetryEvent;

fuzz_target!(|frame: &[u8]| {
    // Undecodable frames are the transport's business (a status error).
    if let Ok(e) = TelemetryEvent::decode(frame) {
        snakepit_telemetry_core_fuzz::fuzz_frame_event(&e);
    }
});
