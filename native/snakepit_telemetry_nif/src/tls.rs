//! TLS to a worker on another host: the optional `tls` map of a stream's
//! options and of `channel_open`, `%{ca: pem, cert: pem | nil, key: pem |
//! nil, server_name: string | nil}` (Elixir reads the files). The server's
//! certificate is verified against `ca` only; `cert` + `key` are the client
//! identity for mTLS. rustls (ring), so no OpenSSL is linked.

use rustler::{Atom, NifResult, Term};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{atoms, safe_decode};

/// A PEM bundle is at most this big (a CA chain of a few certificates).
const MAX_PEM_BYTES: usize = 256 * 1024;
const MAX_NAME_BYTES: usize = 253;

fn error(text: &'static str) -> rustler::Error {
    rustler::Error::Term(Box::new(text))
}

fn pem<'a>(map: Term<'a>, key: &str) -> NifResult<Option<Vec<u8>>> {
    let env = map.get_env();
    match map.map_get(Atom::from_str(env, key)?) {
        Ok(v) if v.is_binary() => {
            let bin: rustler::Binary = v.decode()?;
            if bin.len() > MAX_PEM_BYTES {
                return Err(error("a PEM value exceeds 256 KiB"));
            }
            Ok(Some(bin.as_slice().to_vec()))
        }
        Ok(v) if v.decode::<Atom>().ok() == Some(atoms::nil()) => Ok(None),
        Ok(_) => Err(error("a PEM value must be a binary")),
        Err(_) => Ok(None),
    }
}

/// `None` for `nil` or a missing key; the config otherwise.
pub fn decode(tls: Option<Term>) -> NifResult<Option<ClientTlsConfig>> {
    let Some(map) = tls.filter(|t| t.is_map()) else {
        return Ok(None);
    };
    let ca = pem(map, "ca")?.ok_or_else(|| error("tls needs a CA certificate (ca)"))?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    match (pem(map, "cert")?, pem(map, "key")?) {
        (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(cert, key)),
        (None, None) => {}
        _ => return Err(error("tls needs both cert and key, or neither")),
    }
    let env = map.get_env();
    if let Ok(name) = map.map_get(Atom::from_str(env, "server_name")?) {
        if name.is_binary() {
            config = config.domain_name(safe_decode::string(name, MAX_NAME_BYTES)?);
        }
    }
    Ok(Some(config))
}

/// The endpoint for `host:port`: `https` with `tls`, `http` without.
pub fn endpoint(host_port: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{host_port}"))
        .map_err(|e| format!("bad endpoint: {e}"))?;
    match tls {
        Some(config) => endpoint
            .tls_config(config.clone())
            .map_err(|e| format!("bad tls config: {e}")),
        None => Ok(endpoint),
    }
}
