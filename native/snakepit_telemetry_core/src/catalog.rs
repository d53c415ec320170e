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
#[derive(Debug)]
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
