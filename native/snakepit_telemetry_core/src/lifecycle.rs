//! A stream task's life as data: its state, why a connection failed or a
//! stream ended (typed, with a stable snake_case kind Elixir can match and
//! tag metrics with), why the task ended, and the gRPC-layer status events
//! it reports (`[:snakepit, :grpc, ...]` of the catalog). The NIF turns these
//! into terms; nothing here knows the BEAM.

use std::borrow::Cow;

use tonic::Code;

/// Where a stream task is (`:state` in `GrpcStream.stats/1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamState {
    Connecting = 0,
    Open = 1,
    Backoff = 2,
    Ended = 3,
}

impl StreamState {
    pub const ALL: [StreamState; 4] = [
        StreamState::Connecting,
        StreamState::Open,
        StreamState::Backoff,
        StreamState::Ended,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StreamState::Connecting => "connecting",
            StreamState::Open => "open",
            StreamState::Backoff => "backoff",
            StreamState::Ended => "ended",
        }
    }

    /// The state stored as `self as u8`; anything else is `Ended`.
    pub fn from_u8(n: u8) -> StreamState {
        Self::ALL
            .get(usize::from(n))
            .copied()
            .unwrap_or(StreamState::Ended)
    }
}

/// Why a connection attempt failed or an open stream ended.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Disconnect {
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(String),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("connect failed: {0}")]
    ConnectFailed(String),
    #[error("stream open timed out")]
    OpenTimeout,
    #[error("closed by worker")]
    ClosedByWorker,
    /// A frame over `max_frame_bytes`, refused from its length prefix.
    #[error("frame over the limit: {0}")]
    FrameTooLarge(String),
    /// The RPC failed with a gRPC status (the worker's, or the transport's).
    #[error("{code:?}: {message}")]
    Status { code: Code, message: String },
}

impl Disconnect {
    /// A stable snake_case name (the `reason` of `connection.lost` and
    /// `stream.closed`; the full text is their `error_message`).
    pub fn kind(&self) -> &'static str {
        match self {
            Disconnect::InvalidEndpoint(_) => "invalid_endpoint",
            Disconnect::ConnectTimeout => "connect_timeout",
            Disconnect::ConnectFailed(_) => "connect_failed",
            Disconnect::OpenTimeout => "open_timeout",
            Disconnect::ClosedByWorker => "closed_by_worker",
            Disconnect::FrameTooLarge(_) => "frame_too_large",
            Disconnect::Status { code, .. } => status_kind(*code),
        }
    }

    /// Every kind, for documentation and tests.
    pub const KINDS: [&'static str; 23] = [
        "invalid_endpoint",
        "connect_timeout",
        "connect_failed",
        "open_timeout",
        "closed_by_worker",
        "frame_too_large",
        "ok",
        "cancelled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
    ];
}

fn status_kind(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Why a stream task ended (its last message to the owner).
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEnd {
    /// The handle was stopped or dropped (the worker was unregistered).
    Stopped,
    /// The owning process is gone.
    OwnerDown,
    /// The task panicked; the text is the panic message.
    Panic(String),
}

/// A metadata value of a status event.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusValue {
    Text(Cow<'static, str>),
    Int(i64),
    Nil,
}

/// A status event of the catalog's gRPC layer; `event` is the name without
/// `snakepit.grpc.` (`stream.opened`). Every event also carries `node`,
/// `worker_id` and `stream_id` (the NIF adds them).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub event: &'static str,
    pub measurements: Vec<(&'static str, i64)>,
    pub metadata: Vec<(&'static str, StatusValue)>,
}

/// The metadata every status event carries besides its own.
pub const COMMON_METADATA: [&str; 3] = ["node", "worker_id", "stream_id"];

impl Status {
    /// Connected (after `retry_count` failed attempts) in `duration_ns`.
    pub fn connection_established(
        duration_ns: i64,
        system_time: i64,
        python_port: Option<i64>,
        retry_count: i64,
    ) -> Status {
        Status {
            event: "connection.established",
            measurements: vec![("duration", duration_ns), ("system_time", system_time)],
            metadata: vec![
                (
                    "python_port",
                    python_port.map_or(StatusValue::Nil, StatusValue::Int),
                ),
                ("retry_count", StatusValue::Int(retry_count)),
            ],
        }
    }

    /// Connected again after `downtime_ns` without a stream.
    pub fn connection_reconnected(downtime_ns: i64, retry_count: i64) -> Status {
        Status {
            event: "connection.reconnected",
            measurements: vec![("downtime", downtime_ns), ("retry_count", retry_count)],
            metadata: vec![],
        }
    }

    /// The stream opened on `rpc` (`StreamTelemetryBatched`, or
    /// `StreamTelemetry` for a stock peer): a fallback is visible.
    pub fn stream_opened(system_time: i64, rpc: &'static str) -> Status {
        Status {
            event: "stream.opened",
            measurements: vec![("system_time", system_time)],
            metadata: vec![
                ("correlation_id", StatusValue::Nil),
                ("rpc_method", StatusValue::Text(rpc.into())),
            ],
        }
    }

    /// The stream ended: `why` is `None` when the worker was unregistered.
    pub fn stream_closed(duration_ns: i64, message_count: i64, why: Option<&Disconnect>) -> Status {
        Status {
            event: "stream.closed",
            measurements: vec![("duration", duration_ns), ("message_count", message_count)],
            metadata: reason(why.map_or(Ok("unregistered"), Err)),
        }
    }

    /// The connection carrying the stream was lost after `uptime_ns`.
    pub fn connection_lost(uptime_ns: i64, call_count: i64, why: &Disconnect) -> Status {
        Status {
            event: "connection.lost",
            measurements: vec![("uptime", uptime_ns), ("call_count", call_count)],
            metadata: reason(Err(why)),
        }
    }
}

/// `reason` (a stable kind) and `error_message` (the text) of an ending.
fn reason(why: Result<&'static str, &Disconnect>) -> Vec<(&'static str, StatusValue)> {
    match why {
        Ok(kind) => vec![
            ("reason", StatusValue::Text(kind.into())),
            ("error_message", StatusValue::Nil),
        ],
        Err(d) => vec![
            ("reason", StatusValue::Text(d.kind().into())),
            ("error_message", StatusValue::Text(d.to_string().into())),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CATALOG;

    fn every_status() -> Vec<Status> {
        let lost = Disconnect::ClosedByWorker;
        vec![
            Status::connection_established(1, 2, Some(50051), 0),
            Status::connection_established(1, 2, None, 3),
            Status::connection_reconnected(5, 1),
            Status::stream_opened(7, "StreamTelemetry"),
            Status::stream_closed(1, 2, None),
            Status::stream_closed(1, 2, Some(&lost)),
            Status::connection_lost(1, 2, &lost),
        ]
    }

    #[test]
    fn every_status_event_and_key_is_in_the_catalog() {
        for status in every_status() {
            let name: Vec<String> = ["snakepit", "grpc"]
                .into_iter()
                .chain(status.event.split('.'))
                .map(String::from)
                .collect();
            let def = CATALOG
                .events
                .iter()
                .find(|e| e.event == name)
                .unwrap_or_else(|| panic!("{} is not in the catalog", status.event));
            assert_eq!(def.layer, "grpc");
            for (k, _) in &status.measurements {
                assert!(
                    def.measurements.iter().any(|m| m == k),
                    "{}: {k}",
                    status.event
                );
                assert!(CATALOG.measurement_key(k).is_some(), "{k} allowlisted");
            }
            let keys = status.metadata.iter().map(|(k, _)| *k);
            for k in keys.chain(COMMON_METADATA.iter().copied()) {
                if status.event.starts_with("connection.") && k == "stream_id" {
                    continue; // carried by every status, listed for stream events only
                }
                assert!(def.metadata.iter().any(|m| m == k), "{}: {k}", status.event);
                assert!(CATALOG.metadata_key(k).is_some(), "{k} allowlisted");
            }
        }
    }

    #[test]
    fn endings_name_a_stable_kind_and_keep_the_text() {
        let why = Disconnect::Status {
            code: Code::Unavailable,
            message: "worker went away".into(),
        };
        let status = Status::connection_lost(1, 2, &why);
        assert_eq!(
            status.metadata,
            vec![
                ("reason", StatusValue::Text("unavailable".into())),
                (
                    "error_message",
                    StatusValue::Text("Unavailable: worker went away".into())
                ),
            ]
        );
        let closed = Status::stream_closed(1, 2, None);
        assert_eq!(
            closed.metadata[0],
            ("reason", StatusValue::Text("unregistered".into()))
        );
    }

    #[test]
    fn kinds_are_listed_and_distinct() {
        let samples = [
            Disconnect::InvalidEndpoint(String::new()),
            Disconnect::ConnectTimeout,
            Disconnect::ConnectFailed(String::new()),
            Disconnect::OpenTimeout,
            Disconnect::ClosedByWorker,
            Disconnect::FrameTooLarge(String::new()),
        ];
        let codes = (0..=16).map(|c| Disconnect::Status {
            code: Code::from_i32(c),
            message: String::new(),
        });
        let kinds: Vec<&str> = samples
            .iter()
            .cloned()
            .chain(codes)
            .map(|d| d.kind())
            .collect();
        assert_eq!(kinds, Disconnect::KINDS);
    }

    #[test]
    fn states_round_trip_through_u8() {
        for s in StreamState::ALL {
            assert_eq!(StreamState::from_u8(s as u8), s);
        }
        assert_eq!(StreamState::from_u8(200), StreamState::Ended);
    }
}
