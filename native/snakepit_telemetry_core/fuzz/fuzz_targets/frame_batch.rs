//! Arbitrary bytes as one frame of `StreamTelemetryBatched`
//! (a `TelemetryEventBatch`); every event is validated on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use snakepit_telemetry_core::wire::TelemetryEventBatch;

fuzz_target!(|frame: &[u8]| {
    if let Ok(batch) = TelemetryEventBatch::decode(frame) {
        for e in &batch.events {
            snakepit_telemetry_core_fuzz::fuzz_frame_event(e);
        }
    }
});
