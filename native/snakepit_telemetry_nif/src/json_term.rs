//! Erlang terms <-> JSON, for tool parameters and results (the reference
//! encodes each as JSON bytes inside `google.protobuf.Any`).
//!
//! Terms to JSON: maps (atom or string keys), lists, UTF-8 binaries,
//! integers, floats, `true`/`false`/`nil`, other atoms as strings. Anything
//! else (tuples, pids, non-UTF-8 binaries) is an error, as is nesting deeper
//! than `MAX_DEPTH`. JSON to terms: objects become maps with string keys (no
//! atoms are created), `null` becomes `nil`.

use rustler::{Atom, Encoder, Env, Term, TermType};
use serde_json::{Map, Number, Value};

use crate::atoms;

const MAX_DEPTH: usize = 64;

pub fn to_json(term: Term, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deeply".into());
    }
    Ok(match term.get_type() {
        TermType::Atom => {
            let atom: Atom = term.decode().map_err(|_| "bad atom")?;
            if atom == atoms::nil() {
                Value::Null
            } else if atom == atoms::true_() {
                Value::Bool(true)
            } else if atom == atoms::false_() {
                Value::Bool(false)
            } else {
                Value::String(term.atom_to_string().map_err(|_| "bad atom")?)
            }
        }
        TermType::Binary => {
            let s: String = term.decode().map_err(|_| "binary is not UTF-8 text")?;
            Value::String(s)
        }
        TermType::Integer => match term.decode::<i64>() {
            Ok(i) => Value::from(i),
            Err(_) => Value::from(term.decode::<u64>().map_err(|_| "integer out of range")?),
        },
        TermType::Float => {
            let f: f64 = term.decode().map_err(|_| "bad float")?;
            Value::Number(Number::from_f64(f).ok_or("non-finite float")?)
        }
        TermType::List => {
            let items = crate::safe_decode::list(term, usize::MAX).map_err(|_| "improper list")?;
            Value::Array(
                items
                    .into_iter()
                    .map(|t| to_json(t, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        TermType::Map => {
            let mut out = Map::new();
            for (k, v) in term
                .decode::<rustler::MapIterator>()
                .map_err(|_| "bad map")?
            {
                out.insert(key_text(k)?, to_json(v, depth + 1)?);
            }
            Value::Object(out)
        }
        other => return Err(format!("cannot encode {other:?} as JSON")),
    })
}

fn key_text(k: Term) -> Result<String, String> {
    match k.get_type() {
        TermType::Atom => k.atom_to_string().map_err(|_| "bad atom key".into()),
        TermType::Binary => k.decode().map_err(|_| "map key is not UTF-8 text".into()),
        TermType::Integer => Ok(k.decode::<i64>().map_err(|_| "bad key")?.to_string()),
        _ => Err("map keys must be atoms, strings or integers".into()),
    }
}

pub fn to_term<'a>(env: Env<'a>, v: &Value) -> Term<'a> {
    match v {
        Value::Null => atoms::nil().encode(env),
        Value::Bool(b) => b.encode(env),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.encode(env),
            (None, Some(u)) => u.encode(env),
            _ => n.as_f64().unwrap_or(0.0).encode(env),
        },
        Value::String(s) => s.encode(env),
        Value::Array(items) => items
            .iter()
            .map(|i| to_term(env, i))
            .collect::<Vec<_>>()
            .encode(env),
        Value::Object(map) => {
            let pairs: Vec<(Term, Term)> = map
                .iter()
                .map(|(k, v)| (k.encode(env), to_term(env, v)))
                .collect();
            Term::map_from_pairs(env, &pairs).expect("JSON object keys are unique")
        }
    }
}
