//! A stream's settings and the worker context it enriches events with,
//! decoded from the map `Snakepit.Telemetry.GrpcStream` passes.

use std::time::Duration;

use rustler::{Atom, Decoder, Env, NifResult, Term};

use crate::auth::{self, Bearer};
use crate::{atoms, safe_decode};

/// Longest string option (endpoint, worker id, pool name) the NIF copies.
const MAX_TEXT: usize = 512;

/// `pool_name` may be an atom (the usual case) or a string.
#[derive(Clone, Debug)]
pub enum Name {
    Atom(Atom),
    Text(String),
    Nil,
}

/// What every event of this stream is enriched with.
#[derive(Clone, Debug)]
pub struct WorkerContext {
    pub node: Atom,
    pub worker_id: String,
    pub pool_name: Name,
    pub python_pid: Option<i64>,
    pub python_port: Option<i64>,
}

/// Which RPC to open (the atoms `:auto`, `:batched`, `:stock`; any other
/// term is refused).
#[derive(Clone, Copy, Debug, PartialEq, rustler::NifUnitEnum)]
pub enum RpcChoice {
    /// Batched, falling back to the stock RPC on UNIMPLEMENTED.
    Auto,
    Batched,
    Stock,
}

#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub stream_id: u64,
    /// `host:port`.
    pub endpoint: String,
    /// TLS to the worker (`None`: plain text, which Elixir allows only for
    /// loopback addresses unless told `insecure: true`).
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    pub rpc: RpcChoice,
    pub max_batch: usize,
    pub credit: usize,
    pub connect_timeout: Duration,
    pub open_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// HTTP/2 ping interval on an idle connection, and how long a ping may
    /// go unanswered before the connection counts as dead.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_frame_bytes: usize,
    /// HTTP/2 stream window (the connection window is twice this).
    pub window_bytes: u32,
    /// The worker's token, sent on every RPC.
    pub auth: Bearer,
    pub context: WorkerContext,
}

fn get<'a, T: Decoder<'a>>(map: Term<'a>, key: &str, default: T) -> NifResult<T> {
    let env = map.get_env();
    match map.map_get(Atom::from_str(env, key)?) {
        Ok(v) if v.decode::<Atom>().ok() == Some(atoms::nil()) => Ok(default),
        Ok(v) => v.decode(),
        Err(_) => Ok(default),
    }
}

/// `{:error, {:invalid_option, {key, why}}}` for the caller.
fn invalid(key: &str, why: &str) -> rustler::Error {
    rustler::Error::Term(Box::new((
        atoms::invalid_option(),
        (key.to_string(), why.to_string()),
    )))
}

/// A tuning value Elixir must pass (`GrpcStream.Registration` owns the
/// defaults and documented bounds): missing, mistyped or outside what the
/// task can run on (`lo..=hi`) is an error, never a clamp or a default.
fn required<'a, T>(map: Term<'a>, key: &str, lo: T, hi: T) -> NifResult<T>
where
    T: Decoder<'a> + PartialOrd,
{
    let value = map
        .map_get(Atom::from_str(map.get_env(), key)?)
        .map_err(|_| invalid(key, "missing"))?;
    let n: T = value.decode().map_err(|_| invalid(key, "not an integer"))?;
    if n < lo || n > hi {
        return Err(invalid(key, "out of range"));
    }
    Ok(n)
}

fn ms(map: Term, key: &str) -> NifResult<Duration> {
    Ok(Duration::from_millis(required(map, key, 1, 86_400_000)?))
}

/// A bounded string option (see [`MAX_TEXT`]).
fn text(map: Term, key: &str) -> NifResult<String> {
    let env = map.get_env();
    match map.map_get(Atom::from_str(env, key)?) {
        Ok(v) if v.decode::<Atom>().ok() == Some(atoms::nil()) => Ok(String::new()),
        Ok(v) => safe_decode::string(v, MAX_TEXT),
        Err(_) => Ok(String::new()),
    }
}

impl StreamConfig {
    /// Decodes the options map. Every tuning key is required (Elixir fills in
    /// the defaults); unknown keys are ignored. Only fixed keys are looked
    /// up, so no atom comes from input.
    pub fn decode(env: Env, stream_id: u64, map: Term) -> NifResult<StreamConfig> {
        let endpoint = text(map, "endpoint")?;
        let printable = endpoint.bytes().all(|b| b.is_ascii_graphic());
        if endpoint.is_empty() || endpoint.contains('/') || !printable {
            return Err(rustler::Error::Term(Box::new("endpoint must be host:port")));
        }
        let rpc: RpcChoice = map
            .map_get(Atom::from_str(env, "rpc")?)
            .map_err(|_| invalid("rpc", "missing"))?
            .decode()
            .map_err(|_| invalid("rpc", "not :auto, :batched or :stock"))?;
        let pool_name = match map.map_get(atoms::pool_name()) {
            Ok(t) if t.is_atom() && t.decode::<Atom>()? != atoms::nil() => Name::Atom(t.decode()?),
            Ok(t) if t.is_binary() => Name::Text(safe_decode::string(t, MAX_TEXT)?),
            _ => Name::Nil,
        };
        let token = match map.map_get(Atom::from_str(env, "token")?) {
            Ok(v) if v.is_binary() => safe_decode::string(v, auth::MAX_TOKEN_BYTES)?,
            _ => String::new(),
        };
        let auth = Bearer::new(&token).map_err(|e| rustler::Error::Term(Box::new(e)))?;
        Ok(StreamConfig {
            stream_id,
            tls: crate::tls::decode(map.map_get(Atom::from_str(env, "tls")?).ok())?,
            endpoint,
            rpc,
            max_batch: required(map, "max_batch", 1, 65_536)?,
            credit: required(map, "credit", 1, 1_024)?,
            connect_timeout: ms(map, "connect_timeout_ms")?,
            open_timeout: ms(map, "open_timeout_ms")?,
            backoff_initial: ms(map, "backoff_initial_ms")?,
            backoff_max: ms(map, "backoff_max_ms")?,
            keepalive_interval: ms(map, "keepalive_interval_ms")?,
            keepalive_timeout: ms(map, "keepalive_timeout_ms")?,
            max_frame_bytes: required(map, "max_frame_bytes", 1_024, 1 << 30)?,
            // h2's largest window is 2^31 - 1.
            window_bytes: required(map, "window_bytes", 1, i32::MAX as u32)?,
            auth,
            context: WorkerContext {
                node: get(map, "node", Atom::from_str(env, "nonode@nohost")?)?,
                worker_id: text(map, "worker_id")?,
                pool_name,
                python_pid: get(map, "python_pid", None)?,
                python_port: get(map, "python_port", None)?,
            },
        })
    }
}
