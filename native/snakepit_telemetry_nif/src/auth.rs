//! The worker token on the wire: `authorization: Bearer <token>` on every
//! RPC the NIF makes (tool calls, Ping, both telemetry RPCs). The worker
//! refuses a call without it (`snakepit_bridge.server.auth`).

use std::fmt;

use tonic::metadata::AsciiMetadataValue;

const KEY: &str = "authorization";
/// Longest token accepted (the worker's limit).
pub const MAX_TOKEN_BYTES: usize = 1024;

/// The header value of a worker's token; empty for a worker without one.
#[derive(Clone, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// `""` means no token. A token is visible ASCII (a header value).
    pub fn new(token: &str) -> Result<Bearer, &'static str> {
        if token.is_empty() {
            return Ok(Bearer(None));
        }
        if token.len() > MAX_TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("token must be at most 1024 visible ASCII characters");
        }
        let mut value = AsciiMetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| "token is not a valid header value")?;
        // Kept out of HPACK's dynamic table and of tonic's debug output.
        value.set_sensitive(true);
        Ok(Bearer(Some(value)))
    }

    pub fn apply<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(KEY, value.clone());
        }
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}
