//! Event shapes: a pool of realistic Python-layer events built once from the
//! catalog. Generating an event only picks a template and stamps the time
//! ([`Stamped`]); the sender turns it into a `TelemetryEvent` (a clone) or
//! into protobuf bytes (the template's pre-encoded body plus the timestamp),
//! so generation stays cheap.
//!
//! The pool reads like a worker's log: requests of five events sharing a
//! correlation id (`python.call.start`, `tool.execution.start`,
//! `tool.result_size`, `tool.execution.stop`, `python.call.stop`, or the
//! exception path), with memory/CPU/GC samples (no correlation id) between
//! them. Each event has the catalog's measurements (2–4, sometimes plus a
//! non-allowlisted `custom_gauge`) and 3–6 metadata entries (`tool`,
//! `operation`, `session_id`, sometimes `model`, `result`, `error_type`,
//! `command` or a non-allowlisted `x_extra`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use snakepit_telemetry_core::catalog::CATALOG;
use snakepit_telemetry_core::wire::telemetry_value::Value;
use snakepit_telemetry_core::wire::{TelemetryEvent, TelemetryValue};

use crate::rng::Rng;

/// Index into [`EventPool::names`].
pub type NameId = usize;
/// Index of a template in its [`EventPool`].
pub type TemplateId = u32;

/// A generated event: which template, and when it was generated (unix ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    pub template: TemplateId,
    pub timestamp_ns: i64,
}

/// Names that are not in the catalog, used for `--invalid-ratio`.
pub const INVALID_NAMES: [&str; 4] = [
    "python.unknown.event",
    "tool.execution.bogus",
    "loadgen.invalid.name",
    "python.call",
];

const VALID_TEMPLATES: usize = 4096;
const INVALID_TEMPLATES: usize = 64;

/// Field numbers of `TelemetryEventBatch.events` and `TelemetryEvent.timestamp_ns`.
const BATCH_EVENTS_FIELD: u32 = 1;
const EVENT_TIMESTAMP_FIELD: u32 = 4;

const TOOLS: [&str; 6] = [
    "embed_text",
    "search_index",
    "summarize",
    "classify",
    "tokenize",
    "vector_upsert",
];
const OPERATIONS: [&str; 4] = ["predict", "transform", "fetch", "encode"];
const MODELS: [&str; 3] = ["mini-lm-l6", "bge-small", "gpt2"];
const ERROR_TYPES: [&str; 4] = ["ValueError", "TimeoutError", "KeyError", "RuntimeError"];

const OK_PATH: [&str; 5] = [
    "python.call.start",
    "tool.execution.start",
    "tool.result_size",
    "tool.execution.stop",
    "python.call.stop",
];
const ERROR_PATH: [&str; 5] = [
    "python.call.start",
    "tool.execution.start",
    "tool.execution.exception",
    "python.call.exception",
    "python.error.occurred",
];

/// One prepared event.
#[derive(Debug, Clone)]
pub struct Template {
    name: NameId,
    event: TelemetryEvent,
    /// `event` encoded without its timestamp (proto3 omits a zero field).
    encoded: Box<[u8]>,
}

impl Template {
    fn new(name: NameId, event: TelemetryEvent) -> Template {
        let encoded = event.encode_to_vec().into_boxed_slice();
        Template {
            name,
            event,
            encoded,
        }
    }

    pub fn name(&self) -> NameId {
        self.name
    }

    /// A copy of the event stamped with `timestamp_ns`.
    pub fn instantiate(&self, timestamp_ns: i64) -> TelemetryEvent {
        let mut e = self.event.clone();
        e.timestamp_ns = timestamp_ns;
        e
    }

    /// Appends the event stamped with `timestamp_ns` as one entry of
    /// `TelemetryEventBatch.events`. The timestamp goes after the other
    /// fields, which protobuf allows: decoders see the same event.
    pub fn encode_batch_entry(&self, timestamp_ns: i64, out: &mut Vec<u8>) {
        let ts = timestamp_ns as u64;
        let ts_len = if ts == 0 {
            0
        } else {
            1 + encoded_len_varint(ts)
        };
        encode_key(BATCH_EVENTS_FIELD, WireType::LengthDelimited, out);
        encode_varint((self.encoded.len() + ts_len) as u64, out);
        out.extend_from_slice(&self.encoded);
        if ts != 0 {
            encode_key(EVENT_TIMESTAMP_FIELD, WireType::Varint, out);
            encode_varint(ts, out);
        }
    }
}

/// The prepared events every stream of a server draws from.
#[derive(Debug)]
pub struct EventPool {
    names: Vec<String>,
    /// Valid templates (in request order), then invalid ones.
    templates: Vec<Template>,
    valid: usize,
}

/// The state of one request the pool's events describe.
struct Request {
    correlation_id: String,
    session_id: String,
    tool: &'static str,
    operation: &'static str,
    model: &'static str,
}

impl EventPool {
    /// Builds the pool; the same seed gives the same events (but for
    /// `system_time`, which is the build time).
    pub fn build(seed: u64) -> EventPool {
        let mut names: Vec<String> = CATALOG
            .events
            .iter()
            .filter_map(|e| e.python_name.clone())
            .collect();
        names.extend(INVALID_NAMES.iter().map(|s| s.to_string()));
        let mut pool = EventPool {
            names,
            templates: Vec::new(),
            valid: 0,
        };
        let mut rng = Rng::new(seed);
        while pool.templates.len() < VALID_TEMPLATES {
            pool.push_request(&mut rng);
        }
        pool.valid = pool.templates.len();
        for i in 0..INVALID_TEMPLATES {
            let req = Request::random(&mut rng);
            let name = INVALID_NAMES[i % INVALID_NAMES.len()];
            let t = pool.make_template(&mut rng, name, &["duration", "count"], &req);
            pool.templates.push(t);
        }
        pool
    }

    /// Every name an event of this pool can have (catalog names, then invalid ones).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn template(&self, id: TemplateId) -> &Template {
        &self.templates[id as usize]
    }

    /// The event `s` stands for, as a message.
    pub fn event(&self, s: Stamped) -> TelemetryEvent {
        self.template(s.template).instantiate(s.timestamp_ns)
    }

    fn push_request(&mut self, rng: &mut Rng) {
        let req = Request::random(rng);
        let path = if rng.chance(0.08) {
            ERROR_PATH
        } else {
            OK_PATH
        };
        for name in path {
            self.push_catalog_event(rng, name, &req);
        }
        let sampler = Request {
            correlation_id: String::new(),
            operation: "sample",
            ..req
        };
        if rng.chance(0.2) {
            self.push_catalog_event(rng, "python.memory.sampled", &sampler);
            self.push_catalog_event(rng, "python.cpu.sampled", &sampler);
        }
        if rng.chance(0.05) {
            self.push_catalog_event(rng, "python.gc.completed", &sampler);
        }
    }

    fn push_catalog_event(&mut self, rng: &mut Rng, name: &str, req: &Request) {
        let id = CATALOG
            .ingest_event(name)
            .expect("loadgen names are catalog events");
        let keys: Vec<&str> = CATALOG.events[id as usize]
            .measurements
            .iter()
            .map(String::as_str)
            .collect();
        let t = self.make_template(rng, name, &keys, req);
        self.templates.push(t);
    }

    fn make_template(&self, rng: &mut Rng, name: &str, keys: &[&str], req: &Request) -> Template {
        let mut measurements: HashMap<String, TelemetryValue> = keys
            .iter()
            .map(|k| (k.to_string(), measurement(rng, k)))
            .collect();
        if measurements.len() < 4 && rng.chance(0.1) {
            measurements.insert("custom_gauge".into(), float(rng.unit() * 100.0));
        }
        let event = TelemetryEvent {
            event_parts: name.split('.').map(str::to_string).collect(),
            measurements,
            metadata: metadata(rng, name, req),
            timestamp_ns: 0,
            correlation_id: req.correlation_id.clone(),
        };
        let id = self
            .names
            .iter()
            .position(|n| n == name)
            .expect("name is in the pool");
        Template::new(id, event)
    }
}

impl Request {
    fn random(rng: &mut Rng) -> Request {
        Request {
            correlation_id: format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64()),
            session_id: format!("session-{:03}", rng.between(0, 63)),
            tool: rng.pick(&TOOLS),
            operation: rng.pick(&OPERATIONS),
            model: rng.pick(&MODELS),
        }
    }
}

fn int(v: i64) -> TelemetryValue {
    TelemetryValue {
        value: Some(Value::IntValue(v)),
    }
}

fn float(v: f64) -> TelemetryValue {
    TelemetryValue {
        value: Some(Value::FloatValue(v)),
    }
}

/// A plausible value for a measurement key (durations in ns, as Python's
/// monotonic clock gives them; sometimes a float, as `time.perf_counter` math does).
fn measurement(rng: &mut Rng, key: &str) -> TelemetryValue {
    match key {
        "duration" if rng.chance(0.1) => {
            float(rng.between(20_000, 200_000_000) as f64 + rng.unit())
        }
        "duration" => int(rng.between(20_000, 200_000_000)),
        "system_time" => int(now_ns()),
        "count" => int(1),
        "cpu_percent" => float((rng.unit() * 1000.0).round() / 10.0),
        "rss_bytes" | "vms_bytes" => int(rng.between(100 << 20, 2 << 30)),
        "collected" => int(rng.between(0, 500)),
        "generation" => int(rng.between(0, 2)),
        _ => int(rng.between(64, 1 << 20)),
    }
}

fn metadata(rng: &mut Rng, name: &str, req: &Request) -> HashMap<String, String> {
    let mut m = HashMap::with_capacity(6);
    m.insert("tool".to_string(), req.tool.to_string());
    m.insert("operation".to_string(), req.operation.to_string());
    m.insert("session_id".to_string(), req.session_id.clone());
    let failed = name.ends_with(".exception") || name == "python.error.occurred";
    let finished = failed || name.ends_with(".stop");
    let optional = [
        (
            "x_extra",
            rng.chance(0.1),
            format!("debug-{}", rng.between(0, 9999)),
        ),
        ("error_type", failed, rng.pick(&ERROR_TYPES).to_string()),
        (
            "result",
            finished,
            if failed { "error" } else { "ok" }.to_string(),
        ),
        ("model", rng.chance(0.5), req.model.to_string()),
        ("command", rng.chance(0.3), "execute_tool".to_string()),
    ];
    for (key, present, value) in optional {
        if present && m.len() < 6 {
            m.insert(key.to_string(), value);
        }
    }
    m
}

/// Unix time in nanoseconds.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// One stream's walk through the pool.
#[derive(Debug)]
pub struct Generator {
    pool: Arc<EventPool>,
    rng: Rng,
    cursor: usize,
    invalid_ratio: f64,
}

impl Generator {
    /// Starts at a seed-dependent place so streams do not emit in lockstep.
    pub fn new(pool: Arc<EventPool>, seed: u64, invalid_ratio: f64) -> Generator {
        let mut rng = Rng::new(seed);
        let cursor = (rng.next_u64() % pool.valid as u64) as usize;
        Generator {
            pool,
            rng,
            cursor,
            invalid_ratio,
        }
    }

    pub fn pool(&self) -> &EventPool {
        &self.pool
    }

    /// The next event shape: valid ones in request order, an invalid one
    /// with probability `invalid_ratio`.
    pub fn next_template(&mut self) -> TemplateId {
        let pool = &self.pool;
        if self.invalid_ratio > 0.0 && self.rng.chance(self.invalid_ratio) {
            let invalid = (pool.templates.len() - pool.valid) as u64;
            return (pool.valid as u64 + self.rng.next_u64() % invalid) as TemplateId;
        }
        self.cursor = (self.cursor + 1) % pool.valid;
        self.cursor as TemplateId
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snakepit_telemetry_core::frame::validate_frame_event;
    use snakepit_telemetry_core::wire::TelemetryEventBatch;

    fn events(invalid_ratio: f64, n: usize) -> Vec<TelemetryEvent> {
        let mut g = Generator::new(Arc::new(EventPool::build(1)), 2, invalid_ratio);
        (0..n)
            .map(|_| {
                let template = g.next_template();
                g.pool().event(Stamped {
                    template,
                    timestamp_ns: now_ns(),
                })
            })
            .collect()
    }

    #[test]
    fn every_python_event_of_the_catalog_is_generated_and_valid() {
        let evs = events(0.0, 4096);
        for e in &evs {
            validate_frame_event(&CATALOG, e).unwrap_or_else(|r| panic!("{e:?}: {r:?}"));
        }
        for def in CATALOG.events.iter().filter(|d| d.python_name.is_some()) {
            let name = def.python_name.as_deref().unwrap();
            assert!(
                evs.iter().any(|e| e.event_parts.join(".") == name),
                "{name} never generated"
            );
        }
    }

    #[test]
    fn shapes_are_realistic() {
        let evs = events(0.0, 4096);
        for e in &evs {
            assert!((2..=4).contains(&e.measurements.len()), "{e:?}");
            assert!((3..=6).contains(&e.metadata.len()), "{e:?}");
            assert!(["tool", "operation", "session_id"]
                .iter()
                .all(|k| e.metadata.contains_key(*k)));
            assert!(e.timestamp_ns > 1_600_000_000_000_000_000);
        }
        assert!(evs
            .iter()
            .any(|e| e.measurements.contains_key("custom_gauge")));
        assert!(evs.iter().any(|e| e.metadata.contains_key("x_extra")));
        assert!(evs.iter().any(|e| e.correlation_id.is_empty()));
        assert!(evs.iter().any(|e| e.correlation_id.len() == 32));
        let floats = evs
            .iter()
            .flat_map(|e| e.measurements.values())
            .filter(|v| matches!(v.value, Some(Value::FloatValue(_))))
            .count();
        assert!(floats > 0);
    }

    #[test]
    fn invalid_events_have_names_outside_the_catalog() {
        for name in INVALID_NAMES {
            assert_eq!(CATALOG.ingest_event(name), None, "{name}");
        }
        let evs = events(0.3, 10_000);
        let invalid = evs
            .iter()
            .filter(|e| validate_frame_event(&CATALOG, e).is_err())
            .count();
        assert!((2_500..3_500).contains(&invalid), "{invalid}");
    }

    #[test]
    fn batch_entries_decode_to_the_same_events() {
        let pool = EventPool::build(3);
        let stamped: Vec<Stamped> = (0..pool.templates.len() as TemplateId)
            .map(|template| Stamped {
                template,
                timestamp_ns: now_ns() - template as i64,
            })
            .chain([0, -5].map(|timestamp_ns| Stamped {
                template: 1,
                timestamp_ns,
            }))
            .collect();
        let mut bytes = Vec::new();
        for s in &stamped {
            pool.template(s.template)
                .encode_batch_entry(s.timestamp_ns, &mut bytes);
        }
        let decoded = TelemetryEventBatch::decode(bytes.as_slice()).unwrap();
        let expected: Vec<TelemetryEvent> = stamped.iter().map(|s| pool.event(*s)).collect();
        assert_eq!(decoded.events, expected);
    }
}
