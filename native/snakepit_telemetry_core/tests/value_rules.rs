//! Rust's side of the value rules table (`priv/catalog/value_rules.json`):
//! every case a path can carry goes through the gRPC path (a protobuf
//! `TelemetryEvent` decoded by `scan`) and the stderr path (a `TELEMETRY:`
//! line), and what validation makes of it is what the table says Elixir
//! receives. Python and Elixir check the same table.

use std::collections::HashMap;

use prost::Message;
use serde_json::Value as Json;
use snakepit_telemetry_core::catalog::CATALOG;
use snakepit_telemetry_core::scan::EventScratch;
use snakepit_telemetry_core::stderr::{parse_line, StderrLine, PREFIX};
use snakepit_telemetry_core::validate::{Key, Number, Rejection, ValidEvent};
use snakepit_telemetry_core::wire::telemetry_value::Value;
use snakepit_telemetry_core::wire::{TelemetryEvent, TelemetryValue};

const RULES: &str = include_str!("../../../priv/catalog/value_rules.json");
const EVENT: &str = "tool.result_size";

#[derive(Debug, PartialEq)]
enum Outcome {
    Value(Json),
    Dropped,
    Refused,
}

fn rules() -> Json {
    serde_json::from_str(RULES).expect("value_rules.json is JSON")
}

/// A case's input or expected value: JSON, or `{"repeat": s, "times": n}`.
fn value(spec: &Json) -> Json {
    match spec {
        Json::Object(o) if o.contains_key("repeat") => {
            let times = o["times"].as_u64().expect("times") as usize;
            Json::String(o["repeat"].as_str().expect("repeat").repeat(times))
        }
        other => other.clone(),
    }
}

fn expected(case: &Json) -> Outcome {
    match &case["expect"] {
        Json::String(s) if s == "dropped" => Outcome::Dropped,
        Json::String(s) if s == "refused" => Outcome::Refused,
        Json::Object(o) => Outcome::Value(value(&o["value"])),
        other => panic!("bad expect {other}"),
    }
}

fn cases<'r>(rules: &'r Json, kind: &str, path: &str) -> Vec<&'r Json> {
    let all = rules[kind].as_array().expect("a list of cases");
    let picked: Vec<_> = all
        .iter()
        .filter(|c| c["paths"].as_array().unwrap().iter().any(|p| p == path))
        .collect();
    assert!(!picked.is_empty(), "no {kind} cases for {path}");
    picked
}

fn number_json(n: Number) -> Json {
    match n {
        Number::Int(i) => Json::from(i),
        Number::Float(f) => Json::from(f),
    }
}

fn other_key<'e>(key: &'e Key<'_>) -> &'e str {
    match key {
        Key::Other(k) => k,
        Key::Known(_) => panic!("the test keys are not allowlisted"),
    }
}

/// What Elixir receives under key `k` of a validated event.
fn outcome(result: Result<ValidEvent<'_>, Rejection>, measurement: bool) -> Outcome {
    let event = match result {
        Ok(event) => event,
        Err(Rejection::InvalidMeasurement(_)) if measurement => return Outcome::Refused,
        Err(other) => panic!("unexpected rejection {other:?}"),
    };
    let found = if measurement {
        let m = event.measurements.iter().find(|(k, _)| other_key(k) == "k");
        m.map(|&(_, n)| number_json(n))
    } else {
        let m = event.metadata.iter().find(|(k, _)| other_key(k) == "k");
        m.map(|(_, v)| Json::String(v.to_string()))
    };
    found.map_or(Outcome::Dropped, Outcome::Value)
}

fn grpc(input: &Json, measurement: bool) -> Outcome {
    let mut event = TelemetryEvent {
        event_parts: EVENT.split('.').map(String::from).collect(),
        ..Default::default()
    };
    if measurement {
        let v = match input {
            Json::String(s) => Value::StringValue(s.clone()),
            Json::Number(n) if n.is_i64() => Value::IntValue(n.as_i64().unwrap()),
            Json::Number(n) => Value::FloatValue(n.as_f64().unwrap()),
            other => panic!("the gRPC wire cannot carry {other}"),
        };
        let v = TelemetryValue { value: Some(v) };
        event.measurements = HashMap::from([("k".to_string(), v)]);
    } else {
        let s = input.as_str().expect("gRPC metadata is text").to_string();
        event.metadata = HashMap::from([("k".to_string(), s)]);
    }
    let bytes = event.encode_to_vec();
    outcome(EventScratch::new().validate(&CATALOG, &bytes), measurement)
}

fn stderr(input: &Json, measurement: bool) -> Outcome {
    let field = if measurement {
        "measurements"
    } else {
        "metadata"
    };
    let line = format!(
        "{PREFIX}{}",
        serde_json::json!({ "event": EVENT, field: { "k": input } })
    );
    let result = parse_line(&CATALOG, line.as_bytes()).map(|parsed| match parsed {
        StderrLine::Event(event) => event,
        StderrLine::NotTelemetry => panic!("not telemetry: {line}"),
    });
    outcome(result, measurement)
}

fn check(kind: &str, path: &str, run: fn(&Json, bool) -> Outcome) {
    let rules = rules();
    let failures: Vec<String> = cases(&rules, kind, path)
        .into_iter()
        .filter_map(|case| {
            let got = run(&value(&case["input"]), kind == "measurements");
            let want = expected(case);
            (got != want).then(|| format!("{}: got {got:?}, want {want:?}", case["case"]))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{kind} on {path}:\n{}",
        failures.join("\n")
    );
}

#[test]
fn grpc_measurements_follow_the_table() {
    check("measurements", "grpc", grpc);
}

#[test]
fn grpc_metadata_follows_the_table() {
    check("metadata", "grpc", grpc);
}

#[test]
fn stderr_measurements_follow_the_table() {
    check("measurements", "stderr", stderr);
}

#[test]
fn stderr_metadata_follows_the_table() {
    check("metadata", "stderr", stderr);
}
