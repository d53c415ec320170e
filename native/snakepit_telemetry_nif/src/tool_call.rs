//! `ExecuteTool` calls to a worker, made on the runtime's threads. The caller
//! gets `:ok` at once and later a message
//! `{:snakepit_tool_result, ref, {:ok, result, info} | {:error, reason}}`.
//! Parameters and results travel as the reference encodes them: JSON bytes
//! inside `google.protobuf.Any` with the `StringValue` type URL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prost_types::Any;
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, OwnedEnv, ResourceArc, Term};
use snakepit_telemetry_core::catalog::CATALOG;
use snakepit_telemetry_core::wire::bridge_service_client::BridgeServiceClient;
use snakepit_telemetry_core::wire::{ExecuteToolRequest, ExecuteToolResponse};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::auth::Bearer;
use crate::channel::ChannelHandle;
use crate::{atoms, json_term, runtime};

pub const JSON_TYPE_URL: &str = "type.googleapis.com/google.protobuf.StringValue";

struct CallOpts {
    session_id: String,
    correlation_id: String,
    timeout: Duration,
    metadata: HashMap<String, String>,
}

fn call_opts(opts: Term) -> NifResult<CallOpts> {
    let get = |k: Atom| opts.map_get(k).ok();
    Ok(CallOpts {
        session_id: get(atoms::session_id())
            .map(|t| t.decode())
            .transpose()?
            .unwrap_or_default(),
        correlation_id: get(atoms::correlation_id())
            .map(|t| t.decode())
            .transpose()?
            .unwrap_or_default(),
        timeout: Duration::from_millis(
            get(atoms::timeout_ms())
                .map(|t| t.decode())
                .transpose()?
                .unwrap_or(CATALOG.defaults.tool_timeout_ms),
        ),
        metadata: get(atoms::metadata())
            .map(|t| t.decode())
            .transpose()?
            .unwrap_or_default(),
    })
}

/// Largest request the worker accepts (grpcio's default receive limit, the
/// catalog's `max_frame_bytes`).
fn max_request_bytes() -> usize {
    CATALOG.defaults.max_frame_bytes
}
const MAX_TOOL_NAME_BYTES: usize = 256;

/// Starts a tool call; the result arrives as a message to `reply_to`.
/// Returns `:ok`, or `{:error, {:invalid_params, text}}` when a parameter
/// cannot be encoded as JSON or the parameters exceed 4 MiB.
///
/// On a dirty CPU scheduler: encoding parameters is work in proportion to
/// their size, which a caller chooses (a normal scheduler would be held for
/// milliseconds by a few MB).
#[rustler::nif(schedule = "DirtyCpu")]
fn tool_call<'a>(
    env: Env<'a>,
    channel: ResourceArc<ChannelHandle>,
    tool: Term<'a>,
    params: Term<'a>,
    opts: Term<'a>,
    reply_to: LocalPid,
    reference: Term<'a>,
) -> NifResult<Term<'a>> {
    let _cpu = crate::nif_clock::Timed::start(crate::nif_clock::Nif::ToolCall);
    let opts = call_opts(opts)?;
    let tool = crate::safe_decode::string(tool, MAX_TOOL_NAME_BYTES)?;
    let mut parameters = HashMap::new();
    let mut size = 0usize;
    for (k, v) in params.decode::<rustler::MapIterator>()? {
        let key = match json_term::to_json(k, 0) {
            Ok(serde_json::Value::String(s)) => s,
            _ => return Ok(invalid("parameter names must be atoms or strings").encode(env)),
        };
        match json_term::to_json(v, 0) {
            Ok(json) => {
                let value = serde_json::to_vec(&json).expect("a Value serializes");
                size += key.len() + value.len();
                if size > max_request_bytes() {
                    return Ok(invalid("parameters exceed 4 MiB").encode(env));
                }
                parameters.insert(
                    key,
                    Any {
                        type_url: JSON_TYPE_URL.into(),
                        value,
                    },
                );
            }
            Err(e) => return Ok(invalid(&format!("{key}: {e}")).encode(env)),
        }
    }
    let mut metadata = opts.metadata.clone();
    if !opts.correlation_id.is_empty() {
        metadata.insert("correlation_id".into(), opts.correlation_id.clone());
    }
    let request = ExecuteToolRequest {
        session_id: opts.session_id.clone(),
        tool_name: tool,
        parameters,
        metadata,
        ..Default::default()
    };
    let mut owned = OwnedEnv::new();
    let saved_ref = owned.save(reference);
    let auth = channel.auth.clone();
    let channel = channel.channel();
    runtime::get().spawn(async move {
        let outcome = execute(channel, request, &opts, &auth).await;
        let _ = owned.send_and_clear(&reply_to, |env| {
            let r = saved_ref.load(env);
            (atoms::snakepit_tool_result(), r, outcome.encode_with(env)).encode(env)
        });
    });
    Ok(atoms::ok().encode(env))
}

fn invalid(text: &str) -> impl Encoder + '_ {
    (atoms::error(), (atoms::invalid_params(), text))
}

enum Outcome {
    Ok(ExecuteToolResponse, Duration),
    ToolFailed(ExecuteToolResponse, Duration),
    Grpc(tonic::Status),
    Timeout,
}

async fn execute(
    channel: Channel,
    request: ExecuteToolRequest,
    opts: &CallOpts,
    auth: &Bearer,
) -> Outcome {
    let mut client = BridgeServiceClient::new(channel);
    let mut req = tonic::Request::new(request);
    req.set_timeout(opts.timeout);
    auth.apply(&mut req);
    if let Ok(v) = MetadataValue::try_from(opts.correlation_id.as_str()) {
        if !opts.correlation_id.is_empty() {
            req.metadata_mut().insert("x-snakepit-correlation-id", v);
        }
    }
    let started = Instant::now();
    match tokio::time::timeout(opts.timeout, client.execute_tool(req)).await {
        Err(_) => Outcome::Timeout,
        Ok(Err(status)) => Outcome::Grpc(status),
        Ok(Ok(resp)) => {
            let resp = resp.into_inner();
            if resp.success {
                Outcome::Ok(resp, started.elapsed())
            } else {
                Outcome::ToolFailed(resp, started.elapsed())
            }
        }
    }
}

impl Outcome {
    fn encode_with<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Outcome::Ok(resp, elapsed) => {
                let result = match &resp.result {
                    Some(any) => decode_any(env, any),
                    None => atoms::nil().encode(env),
                };
                (atoms::ok(), result, info(env, resp, *elapsed)).encode(env)
            }
            Outcome::ToolFailed(resp, elapsed) => (
                atoms::error(),
                (
                    atoms::tool_error(),
                    resp.error_message.as_str(),
                    info(env, resp, *elapsed),
                ),
            )
                .encode(env),
            Outcome::Grpc(status) => crate::channel::grpc_error(env, status),
            Outcome::Timeout => (atoms::error(), atoms::timeout()).encode(env),
        }
    }
}

/// `%{execution_time_ms, round_trip_us, metadata, binary_result}`
fn info<'a>(env: Env<'a>, resp: &ExecuteToolResponse, elapsed: Duration) -> Term<'a> {
    let pairs = [
        (
            atoms::execution_time_ms().encode(env),
            resp.execution_time_ms.encode(env),
        ),
        (
            atoms::round_trip_us().encode(env),
            (elapsed.as_micros() as u64).encode(env),
        ),
        (atoms::metadata().encode(env), resp.metadata.encode(env)),
        (
            atoms::binary_result().encode(env),
            binary(env, &resp.binary_result),
        ),
    ];
    Term::map_from_pairs(env, &pairs).expect("unique keys")
}

fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut b = rustler::NewBinary::new(env, bytes.len());
    b.as_mut_slice().copy_from_slice(bytes);
    Term::from(b)
}

/// JSON inside `Any` becomes terms; anything else is returned as raw bytes.
fn decode_any<'a>(env: Env<'a>, any: &Any) -> Term<'a> {
    match serde_json::from_slice::<serde_json::Value>(&any.value) {
        Ok(v) => json_term::to_term(env, &v),
        Err(_) => binary(env, &any.value),
    }
}
