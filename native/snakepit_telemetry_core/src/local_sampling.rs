//! Pattern-scoped sampling for a peer on the stock RPC. A stock (reference)
//! worker applies one sampling rate to every event and ignores the
//! patterns, so `update_sampling(w, 0.0, ["tool.result_size"])` would
//! silence it whole. For such a peer the stream sends the worker rate 1.0
//! without patterns and samples the matching events itself, counting what
//! it leaves out (`nif_sampled_out`). Sampling without patterns, toggles and
//! filters go to the worker as they are.

use crate::glob::{any_matches, Glob};
use crate::settings;
use crate::wire::telemetry_control::Control;
use crate::wire::TelemetryControl;

/// The sampling the stream applies itself.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSampling {
    pub rate: f64,
    patterns: Vec<Glob>,
}

impl LocalSampling {
    /// True when an event named `python_name` passes, given a uniform draw in
    /// `[0, 1)`: events the patterns do not match always pass.
    pub fn keeps(&self, python_name: &str, draw: f64) -> bool {
        draw < self.rate || !any_matches(&self.patterns, python_name)
    }
}

/// What a control means for the stream's own sampling.
#[derive(Debug, Clone, PartialEq)]
pub enum Local {
    /// Not a sampling control: whatever the stream applies stays.
    Unchanged,
    /// The worker samples (no patterns, or a batched peer): stop sampling here.
    Off,
    /// Sample here.
    On(LocalSampling),
}

/// The control to send a peer (`stock`: on the stock RPC) and what it means
/// for the stream's own sampling.
pub fn for_peer(c: &TelemetryControl, stock: bool) -> (TelemetryControl, Local) {
    match &c.control {
        Some(Control::Sampling(s)) if stock && !s.event_patterns.is_empty() => {
            let local = LocalSampling {
                rate: s.sampling_rate.clamp(0.0, 1.0),
                patterns: s.event_patterns.iter().map(|p| Glob::new(p)).collect(),
            };
            (settings::sampling(1.0, Vec::new()), Local::On(local))
        }
        Some(Control::Sampling(_)) => (c.clone(), Local::Off),
        _ => (c.clone(), Local::Unchanged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(rate: f64, patterns: &[&str]) -> TelemetryControl {
        settings::sampling(rate, patterns.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn a_stock_peer_gets_rate_one_and_the_stream_samples_the_patterns() {
        let (sent, local) = for_peer(&sampled(0.0, &["tool.result_size"]), true);
        assert_eq!(sent, sampled(1.0, &[]));
        let Local::On(local) = local else {
            panic!("sampled here")
        };
        assert!(!local.keeps("tool.result_size", 0.0));
        assert!(!local.keeps("tool.result_size", 0.99));
        assert!(local.keeps("python.call.start", 0.99), "other events pass");
    }

    #[test]
    fn the_rate_applies_to_matching_events_only() {
        let (_, Local::On(local)) = for_peer(&sampled(0.25, &["tool.*"]), true) else {
            panic!("sampled here")
        };
        assert!(local.keeps("tool.result_size", 0.1));
        assert!(!local.keeps("tool.result_size", 0.3));
        assert!(local.keeps("python.gc.completed", 0.3));
    }

    #[test]
    fn other_controls_and_batched_peers_go_as_they_are() {
        let patterned = sampled(0.5, &["tool.*"]);
        assert_eq!(for_peer(&patterned, false), (patterned.clone(), Local::Off));
        let plain = sampled(0.5, &[]);
        assert_eq!(for_peer(&plain, true), (plain.clone(), Local::Off));
        let toggle = settings::toggle(false);
        assert_eq!(for_peer(&toggle, true), (toggle.clone(), Local::Unchanged));
        let filter = settings::filter(vec![], vec!["x.*".into()]);
        assert_eq!(for_peer(&filter, true), (filter.clone(), Local::Unchanged));
    }
}
