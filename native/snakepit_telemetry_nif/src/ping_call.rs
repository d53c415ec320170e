//! `Ping` to a worker, made on the runtime's threads like a tool call: the
//! caller gets `:ok` at once and later
//! `{:snakepit_ping_result, ref, {:ok, message, round_trip_us} | {:error, reason}}`.

use std::time::{Duration, Instant};

use rustler::{Encoder, Env, LocalPid, NifResult, OwnedEnv, ResourceArc, Term};
use snakepit_telemetry_core::wire::bridge_service_client::BridgeServiceClient;
use snakepit_telemetry_core::wire::PingRequest;

use crate::channel::{grpc_error, ChannelHandle};
use crate::{atoms, runtime, safe_decode};

const MAX_MESSAGE_BYTES: usize = 1024;

#[rustler::nif]
fn ping_call<'a>(
    env: Env<'a>,
    channel: ResourceArc<ChannelHandle>,
    message: Term<'a>,
    timeout_ms: u64,
    reply_to: LocalPid,
    reference: Term<'a>,
) -> NifResult<Term<'a>> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::PingCall);
    let message = safe_decode::string(message, MAX_MESSAGE_BYTES)?;
    let timeout = Duration::from_millis(timeout_ms.clamp(1, 86_400_000));
    let mut owned = OwnedEnv::new();
    let saved_ref = owned.save(reference);
    let auth = channel.auth.clone();
    let mut client = BridgeServiceClient::new(channel.channel());
    runtime::get().spawn(async move {
        let mut request = tonic::Request::new(PingRequest { message });
        request.set_timeout(timeout);
        auth.apply(&mut request);
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, client.ping(request)).await;
        let elapsed = started.elapsed().as_micros() as u64;
        let _ = owned.send_and_clear(&reply_to, |env| {
            let result = match &outcome {
                Err(_) => (atoms::error(), atoms::timeout()).encode(env),
                Ok(Err(status)) => grpc_error(env, status),
                Ok(Ok(reply)) => {
                    (atoms::ok(), reply.get_ref().message.as_str(), elapsed).encode(env)
                }
            };
            let r = saved_ref.load(env);
            (atoms::snakepit_ping_result(), r, result).encode(env)
        });
    });
    Ok(atoms::ok().encode(env))
}
