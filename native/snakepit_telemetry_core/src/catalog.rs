//! The event catalog, compiled in from `priv/catalog/telemetry_catalog.json`,
//! the single file that Elixir and Python read too.

use rustc_hash::FxHashMap;

use once_cell::sync::Lazy;
use serde::Deserialize;

/// The catalog file, embedded at compile time (build.rs reruns on change).
pub const CATALOG_JSON: &str = include_str!("../../../priv/catalog/telemetry_catalog.json");

/// Index of an event in [`Catalog::events`].
pub type EventId = u16;
/// Index of a key in the measurement or metadata allowlist.
pub type KeyId = u16;

#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    pub max_event_parts: usize,
    pub max_event_name_bytes: usize,
    pub max_measurements: usize,
    pub max_metadata: usize,
    pub max_key_bytes: usize,
    pub max_metadata_value_bytes: usize,
    pub max_correlation_id_bytes: usize,
    pub max_stderr_line_bytes: usize,
    /// Sampling and filter patterns per list, and bytes per pattern.
    pub max_patterns: usize,
    pub max_pattern_bytes: usize,
}

/// Defaults both ends of a worker's connection agree on (the Python worker
/// reads the same section).
#[derive(Debug, Clone, Deserialize)]
pub struct Defaults {
    pub max_frame_bytes: usize,
    pub max_batch_events: usize,
    pub max_delay_ms: u64,
    pub tool_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventDef {
    /// Elixir event name, e.g. `["snakepit", "python", "call", "start"]`.
    pub event: Vec<String>,
    pub layer: String,
    /// Present for events that Python workers may emit.
    #[serde(default)]
    pub python_name: Option<String>,
    pub measurements: Vec<String>,
    pub metadata: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct CatalogFile {
    version: u32,
    limits: Limits,
    defaults: Defaults,
    rejection_reasons: Vec<String>,
    duration_keys_ns: Vec<String>,
    measurement_keys: Vec<String>,
    metadata_keys: Vec<String>,
    events: Vec<EventDef>,
}

/// The parsed catalog with lookup tables.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub version: u32,
    pub limits: Limits,
    pub defaults: Defaults,
    /// The reason names Elixir counts rejections under (the catalog's list;
    /// a test holds `Rejection::REASONS` to it).
    pub rejection_reasons: Vec<String>,
    pub events: Vec<EventDef>,
    pub measurement_keys: Vec<String>,
    pub metadata_keys: Vec<String>,
    duration_keys: Vec<bool>,
    /// Python name and dotted Elixir name of every Python-layer event.
    /// Fx hashing: these tables are fixed at build time, so a worker's keys
    /// can only be looked up, never inserted, and cannot lengthen a probe;
    /// SipHash's flooding defence would buy nothing here and cost about 5%
    /// of the ingest (perf, `bench/ingest_micro.sh`).
    ingest_names: FxHashMap<String, EventId>,
    measurement_index: FxHashMap<String, KeyId>,
    metadata_index: FxHashMap<String, KeyId>,
}

/// Events and keys an application adds to the catalog at start
/// (`config :snakepit_telemetry, events: [...]`): Python-layer events with
/// their Python and Elixir names, and keys allowlisted for every event.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    #[serde(default)]
    pub events: Vec<ExtensionEvent>,
    #[serde(default)]
    pub measurement_keys: Vec<String>,
    #[serde(default)]
    pub metadata_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionEvent {
    /// Elixir event name, e.g. `["my_app", "prediction"]`.
    pub event: Vec<String>,
    /// The name Python code emits, e.g. `my_app.prediction`.
    pub python_name: String,
    #[serde(default)]
    pub measurements: Vec<String>,
    #[serde(default)]
    pub metadata: Vec<String>,
}

/// Bounds of an extension, so a configuration cannot grow the tables
/// without limit (ids are u16).
pub const MAX_EXTENSION_EVENTS: usize = 1024;
pub const MAX_EXTENSION_KEYS: usize = 1024;

/// The catalog every path validates against.
pub static CATALOG: Lazy<Catalog> =
    Lazy::new(|| Catalog::parse(CATALOG_JSON).expect("the embedded catalog is valid"));

fn index(keys: &[String]) -> FxHashMap<String, KeyId> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), i as KeyId))
        .collect()
}

impl Catalog {
    /// Parses a catalog document; errors name what is wrong with it.
    pub fn parse(json: &str) -> Result<Catalog, String> {
        let file: CatalogFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut ingest_names = FxHashMap::default();
        for (id, def) in file.events.iter().enumerate() {
            if let Some(py) = &def.python_name {
                ingest_names.insert(py.clone(), id as EventId);
                ingest_names.insert(def.event.join("."), id as EventId);
            }
        }
        let duration_keys = file
            .measurement_keys
            .iter()
            .map(|k| file.duration_keys_ns.contains(k))
            .collect();
        Ok(Catalog {
            version: file.version,
            measurement_index: index(&file.measurement_keys),
            metadata_index: index(&file.metadata_keys),
            limits: file.limits,
            defaults: file.defaults,
            rejection_reasons: file.rejection_reasons,
            duration_keys,
            ingest_names,
            measurement_keys: file.measurement_keys,
            metadata_keys: file.metadata_keys,
            events: file.events,
        })
    }

    /// This catalog plus an application's events and keys. Errors name the
    /// first definition that is wrong: a name that clashes with an event
    /// already there, a malformed name or key, too many of them.
    pub fn extended(&self, ext: &Extension) -> Result<Catalog, String> {
        if ext.events.len() > MAX_EXTENSION_EVENTS {
            return Err(format!("more than {MAX_EXTENSION_EVENTS} events"));
        }
        let mut c = self.clone();
        let event_keys = ext.events.iter().flat_map(|e| e.measurements.iter());
        let measurement: Vec<&String> = ext.measurement_keys.iter().chain(event_keys).collect();
        let event_meta = ext.events.iter().flat_map(|e| e.metadata.iter());
        let metadata: Vec<&String> = ext.metadata_keys.iter().chain(event_meta).collect();
        if measurement.len() + metadata.len() > MAX_EXTENSION_KEYS {
            return Err(format!("more than {MAX_EXTENSION_KEYS} keys"));
        }
        for key in measurement {
            c.add_measurement_key(key)?;
        }
        for key in metadata {
            c.add_metadata_key(key)?;
        }
        for def in &ext.events {
            c.add_event(def)?;
        }
        Ok(c)
    }

    fn check_name(&self, what: &str, name: &str) -> Result<(), String> {
        let ok = !name.is_empty()
            && name.len() <= self.limits.max_key_bytes
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{what} {name:?}: lowercase letters, digits and _, at most {} bytes",
                self.limits.max_key_bytes
            ))
        }
    }

    fn add_measurement_key(&mut self, key: &str) -> Result<(), String> {
        self.check_name("measurement key", key)?;
        if self.measurement_index.contains_key(key) {
            return Ok(());
        }
        self.measurement_index
            .insert(key.to_owned(), self.measurement_keys.len() as KeyId);
        self.measurement_keys.push(key.to_owned());
        // An application's measurements arrive as sent (no unit conversion).
        self.duration_keys.push(false);
        Ok(())
    }

    fn add_metadata_key(&mut self, key: &str) -> Result<(), String> {
        self.check_name("metadata key", key)?;
        if !self.metadata_index.contains_key(key) {
            self.metadata_index
                .insert(key.to_owned(), self.metadata_keys.len() as KeyId);
            self.metadata_keys.push(key.to_owned());
        }
        Ok(())
    }

    fn add_event(&mut self, def: &ExtensionEvent) -> Result<(), String> {
        let py = &def.python_name;
        let parts: Vec<&str> = py.split('.').collect();
        if parts.len() < 2 || parts.len() > self.limits.max_event_parts {
            return Err(format!(
                "python_name {py:?}: 2 to {} dot-separated parts",
                self.limits.max_event_parts
            ));
        }
        for part in &parts {
            self.check_name("python_name part", part)?;
        }
        if def.event.is_empty() || def.event.len() > self.limits.max_event_parts {
            return Err(format!(
                "event {:?}: 1 to {} parts",
                def.event, self.limits.max_event_parts
            ));
        }
        for part in &def.event {
            self.check_name("event name part", part)?;
        }
        let dotted = def.event.join(".");
        if py.len() > self.limits.max_event_name_bytes
            || dotted.len() > self.limits.max_event_name_bytes
        {
            return Err(format!(
                "event {py:?}: names at most {} bytes",
                self.limits.max_event_name_bytes
            ));
        }
        if def.event.first().map(String::as_str) == Some("snakepit") {
            return Err(format!(
                "event {dotted:?}: the snakepit prefix is the library's"
            ));
        }
        for name in [py.as_str(), dotted.as_str()] {
            if self.ingest_names.contains_key(name)
                || self.events.iter().any(|e| e.event.join(".") == name)
            {
                return Err(format!("event {name:?} is already in the catalog"));
            }
        }
        let id = self.events.len() as EventId;
        self.ingest_names.insert(py.clone(), id);
        self.ingest_names.insert(dotted, id);
        self.events.push(EventDef {
            event: def.event.clone(),
            layer: "python".into(),
            python_name: Some(py.clone()),
            measurements: def.measurements.clone(),
            metadata: def.metadata.clone(),
        });
        Ok(())
    }

    /// Looks up an event a worker may emit, by Python name (`tool.result_size`)
    /// or dotted Elixir name (`snakepit.python.tool.result_size`).
    pub fn ingest_event(&self, dotted: &str) -> Option<EventId> {
        self.ingest_names.get(dotted).copied()
    }

    pub fn measurement_key(&self, key: &str) -> Option<KeyId> {
        self.measurement_index.get(key).copied()
    }

    pub fn metadata_key(&self, key: &str) -> Option<KeyId> {
        self.metadata_index.get(key).copied()
    }

    /// True when Python sends this measurement in nanoseconds (a duration).
    pub fn is_duration(&self, key: KeyId) -> bool {
        self.duration_keys[key as usize]
    }

    /// The canonical summary that Elixir and Python compute too; a test
    /// compares the three to prove they read the same file.
    pub fn summary_json(&self) -> String {
        let mut events: Vec<String> = self.events.iter().map(|e| e.event.join(".")).collect();
        let mut python_map: Vec<String> = self
            .events
            .iter()
            .filter_map(|e| {
                let py = e.python_name.as_ref()?;
                Some(format!("{py}=>{}", e.event.join(".")))
            })
            .collect();
        let mut measurement_keys = self.measurement_keys.clone();
        let mut metadata_keys = self.metadata_keys.clone();
        events.sort();
        python_map.sort();
        measurement_keys.sort();
        metadata_keys.sort();
        // serde_json's default map is a BTreeMap, so keys come out sorted.
        serde_json::json!({
            "events": events,
            "python_map": python_map,
            "measurement_keys": measurement_keys,
            "metadata_keys": metadata_keys,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(json: &str) -> Extension {
        serde_json::from_str(json).expect("extension json")
    }

    #[test]
    fn an_extension_adds_events_and_keys() {
        let e = ext(
            r#"{"events": [{"event": ["my_app", "prediction"], "python_name": "my_app.prediction",
            "measurements": ["score", "duration"], "metadata": ["customer_id"]}],
            "metadata_keys": ["tenant"]}"#,
        );
        let c = CATALOG.extended(&e).unwrap();
        let id = c.ingest_event("my_app.prediction").unwrap();
        assert_eq!(
            c.ingest_event("my_app.prediction"),
            c.ingest_event("my_app.prediction")
        );
        assert_eq!(c.events[id as usize].event, vec!["my_app", "prediction"]);
        assert!(c.measurement_key("score").is_some());
        assert!(c.metadata_key("customer_id").is_some() && c.metadata_key("tenant").is_some());
        // duration was there already: still converted; score is not.
        assert!(c.is_duration(c.measurement_key("duration").unwrap()));
        assert!(!c.is_duration(c.measurement_key("score").unwrap()));
        assert_eq!(c.events.len(), CATALOG.events.len() + 1);
        // The library's catalog is untouched.
        assert!(CATALOG.ingest_event("my_app.prediction").is_none());
    }

    #[test]
    fn bad_extensions_are_refused_with_the_reason() {
        for (json, why) in [
            (
                r#"{"events": [{"event": ["x", "y"], "python_name": "tool.result_size"}]}"#,
                "already",
            ),
            (
                r#"{"events": [{"event": ["snakepit", "python", "call", "start"], "python_name": "a.b"}]}"#,
                "snakepit",
            ),
            (
                r#"{"events": [{"event": ["x", "y"], "python_name": "nodots"}]}"#,
                "parts",
            ),
            (
                r#"{"events": [{"event": ["x", "Y"], "python_name": "x.y"}]}"#,
                "lowercase",
            ),
            (
                r#"{"events": [{"event": ["x", "y"], "python_name": "x.y", "metadata": ["bad key"]}]}"#,
                "metadata key",
            ),
            (r#"{"measurement_keys": [""]}"#, "measurement key"),
            (
                r#"{"events": [{"event": ["a", "b"], "python_name": "a.b"}, {"event": ["a", "b"], "python_name": "c.d"}]}"#,
                "already",
            ),
        ] {
            let err = CATALOG.extended(&ext(json)).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
        assert!(serde_json::from_str::<Extension>(r#"{"colour": 1}"#).is_err());
    }

    #[test]
    fn the_rejection_reasons_are_the_catalog_list() {
        assert_eq!(
            CATALOG.rejection_reasons,
            crate::validate::Rejection::REASONS.to_vec()
        );
    }

    #[test]
    fn embedded_catalog_parses_with_all_three_layers() {
        let c = &*CATALOG;
        for layer in ["infrastructure", "python", "grpc"] {
            assert!(c.events.iter().any(|e| e.layer == layer), "{layer}");
        }
        assert_eq!(c.events.len(), 37);
    }

    #[test]
    fn python_names_map_onto_elixir_events() {
        let c = &*CATALOG;
        let id = c.ingest_event("tool.execution.stop").unwrap();
        assert_eq!(
            c.events[id as usize].event,
            ["snakepit", "python", "tool", "execution", "stop"]
        );
        let id = c.ingest_event("python.call.start").unwrap();
        assert_eq!(
            c.ingest_event("snakepit.python.call.start"),
            Some(id),
            "dotted Elixir name is accepted too"
        );
    }

    #[test]
    fn only_python_layer_events_can_be_ingested() {
        assert_eq!(CATALOG.ingest_event("snakepit.pool.initialized"), None);
        assert_eq!(CATALOG.ingest_event("pool.initialized"), None);
    }

    #[test]
    fn every_event_key_is_in_the_allowlists() {
        let c = &*CATALOG;
        for e in &c.events {
            for k in &e.measurements {
                assert!(c.measurement_key(k).is_some(), "{k}");
            }
            for k in &e.metadata {
                assert!(c.metadata_key(k).is_some(), "{k}");
            }
        }
    }

    #[test]
    fn durations_are_flagged() {
        let c = &*CATALOG;
        assert!(c.is_duration(c.measurement_key("duration").unwrap()));
        assert!(!c.is_duration(c.measurement_key("bytes").unwrap()));
    }

    #[test]
    fn summary_is_sorted_json() {
        let s: serde_json::Value = serde_json::from_str(&CATALOG.summary_json()).unwrap();
        let events = s["events"].as_array().unwrap();
        assert_eq!(events.len(), 37);
        assert!(events.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
    }

    #[test]
    fn a_broken_catalog_is_an_error_not_a_panic() {
        assert!(Catalog::parse("{\"version\": 1}").is_err());
    }
}
