//! Atoms shared by several NIF modules.

rustler::atoms! {
    ok,
    error,
    nil,
    not_telemetry,
    correlation_id,
    timestamp_ns,
    native_time_unit,
}
