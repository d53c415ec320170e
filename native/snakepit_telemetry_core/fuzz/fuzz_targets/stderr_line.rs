//! Arbitrary bytes as one stderr line of a worker (`TELEMETRY:{json}`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| snakepit_telemetry_core_fuzz::fuzz_stderr_line(line));
