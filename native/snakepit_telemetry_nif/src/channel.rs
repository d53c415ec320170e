//! A lazily connected HTTP/2 channel to one worker, shared by its tool calls
//! and pings, with the worker's token.

use std::time::Duration;

use rustler::{Atom, Encoder, Env, NifResult, ResourceArc, Term};
use tonic::transport::Channel;

use crate::auth::Bearer;
use crate::{atoms, runtime};

pub struct ChannelHandle {
    // tonic's Channel is Send but not Sync; resources must be both.
    channel: std::sync::Mutex<Channel>,
    pub auth: Bearer,
}

impl ChannelHandle {
    /// A clone of the channel (cheap: it shares the connection).
    pub fn channel(&self) -> Channel {
        self.channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[rustler::resource_impl]
impl rustler::Resource for ChannelHandle {}

/// Opens (lazily) a channel to `host:port` whose calls carry `token` (`""`:
/// none), over TLS when `tls` is a map (see `tls`): `{:ok, channel}`.
///
/// On a dirty CPU scheduler: the TLS configuration parses its PEM here (a
/// 256 KiB CA bundle took 2.7 ms of a normal scheduler).
#[rustler::nif(schedule = "DirtyCpu")]
fn channel_open<'a>(
    endpoint: String,
    connect_timeout_ms: u64,
    token: String,
    tls: Term<'a>,
) -> NifResult<(Atom, ResourceArc<ChannelHandle>)> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::ChannelOpen);
    let auth = Bearer::new(&token).map_err(|e| rustler::Error::Term(Box::new(e)))?;
    let tls = crate::tls::decode(Some(tls))?;
    let ep = crate::tls::endpoint(&endpoint, tls.as_ref())
        .map_err(|e| rustler::Error::Term(Box::new(e)))?
        .connect_timeout(Duration::from_millis(connect_timeout_ms))
        .tcp_nodelay(true);
    // connect_lazy spawns its worker on the current runtime: enter ours.
    let _guard = runtime::get().enter();
    let channel = ep.connect_lazy();
    Ok((
        atoms::ok(),
        ResourceArc::new(ChannelHandle {
            channel: std::sync::Mutex::new(channel),
            auth,
        }),
    ))
}

/// `{:error, {:grpc_error, code, message}}` of a failed call.
pub fn grpc_error<'a>(env: Env<'a>, status: &tonic::Status) -> Term<'a> {
    (
        atoms::error(),
        (
            atoms::grpc_error(),
            format!("{:?}", status.code()),
            status.message(),
        ),
    )
        .encode(env)
}
