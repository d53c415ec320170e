//! Decoding of caller terms that never panics and never does unbounded
//! work on a scheduler. rustler's `Vec<T>` decoder panics on an improper
//! list and `String` copies whatever it is given; the Elixir side bounds its
//! arguments, and these bound them again, so a direct call of a NIF with any
//! term at all gets `badarg` or an error, never a panic.

use rustler::{Binary, Error, NifResult, Term};

/// The elements of a proper list of at most `max` elements; walks at most
/// `max + 1` cells. `Err(BadArg)` for an improper list, a longer one or a
/// non-list.
pub fn list<'a>(term: Term<'a>, max: usize) -> NifResult<Vec<Term<'a>>> {
    let mut items = Vec::new();
    let mut rest = term;
    loop {
        if rest.is_empty_list() {
            return Ok(items);
        }
        if items.len() == max {
            return Err(Error::BadArg);
        }
        let (head, tail) = rest.list_get_cell()?;
        items.push(head);
        rest = tail;
    }
}

/// A UTF-8 string of at most `max_bytes`, checked before it is copied.
pub fn string(term: Term<'_>, max_bytes: usize) -> NifResult<String> {
    let bin: Binary = term.decode()?;
    if bin.len() > max_bytes {
        return Err(Error::BadArg);
    }
    std::str::from_utf8(bin.as_slice())
        .map(str::to_owned)
        .map_err(|_| Error::BadArg)
}

/// Strings of at most `max_bytes` each, in a list of at most `max`.
pub fn strings(term: Term<'_>, max: usize, max_bytes: usize) -> NifResult<Vec<String>> {
    list(term, max)?
        .into_iter()
        .map(|t| string(t, max_bytes))
        .collect()
}
