//! What the client asked of a worker's stream through its control frames:
//! on/off, sampling and allow/deny filters, with the Python worker's
//! semantics. The worker side of the controls, for the peers written in
//! Rust: the load generator and the NIF's fake worker for users' tests.

use crate::wire::telemetry_control::Control;
use crate::wire::TelemetryControl;

use crate::glob::{any_matches, Glob};

/// What happens to one event of a given name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Sent (subject to queue room).
    Pass,
    /// Kept with this probability (0.0–1.0), otherwise suppressed by sampling.
    Sample(f64),
    /// Suppressed by the allow/deny filter.
    Filtered,
}

/// The control state of one stream. It starts disabled: a client must send
/// `toggle(true)` before anything is emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlState {
    pub enabled: bool,
    pub sampling_rate: f64,
    sample_patterns: Vec<Glob>,
    allow: Vec<Glob>,
    deny: Vec<Glob>,
    /// As the reference worker does: the sampling rate applies to every
    /// event, its patterns are ignored (`--reference-sampling`).
    pub ignore_sampling_patterns: bool,
}

impl Default for ControlState {
    fn default() -> Self {
        ControlState {
            enabled: false,
            sampling_rate: 1.0,
            sample_patterns: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            ignore_sampling_patterns: false,
        }
    }
}

impl ControlState {
    /// Applies one control frame; an empty frame or a NaN rate is refused
    /// (the state stays as it was). Rates outside 0.0–1.0 are clamped.
    pub fn apply(&mut self, frame: &TelemetryControl) -> Result<(), String> {
        match &frame.control {
            None => Err("control frame without a control".into()),
            Some(Control::Toggle(t)) => {
                self.enabled = t.enabled;
                Ok(())
            }
            Some(Control::Sampling(s)) => {
                if s.sampling_rate.is_nan() {
                    return Err("sampling rate is NaN".into());
                }
                self.sampling_rate = s.sampling_rate.clamp(0.0, 1.0);
                self.sample_patterns = if self.ignore_sampling_patterns {
                    Vec::new()
                } else {
                    globs(&s.event_patterns)
                };
                Ok(())
            }
            Some(Control::Filter(f)) => {
                self.allow = globs(&f.allow);
                self.deny = globs(&f.deny);
                Ok(())
            }
        }
    }

    /// The verdict for an event name (its Python name). Filters come first
    /// (deny wins, an empty allow list allows all); sampling applies to the
    /// names matching its patterns, or to every name when it has none.
    pub fn verdict(&self, name: &str) -> Verdict {
        let allowed = self.allow.is_empty() || any_matches(&self.allow, name);
        if !allowed || any_matches(&self.deny, name) {
            return Verdict::Filtered;
        }
        let sampled = self.sample_patterns.is_empty() || any_matches(&self.sample_patterns, name);
        if sampled && self.sampling_rate < 1.0 {
            Verdict::Sample(self.sampling_rate)
        } else {
            Verdict::Pass
        }
    }

    /// Verdicts for a fixed list of names (computed once per control change,
    /// so the hot loop never matches globs).
    pub fn verdicts(&self, names: &[String]) -> Vec<Verdict> {
        names.iter().map(|n| self.verdict(n)).collect()
    }
}

/// True when no event of any name can get through (nothing to generate).
pub fn nothing_passes(verdicts: &[Verdict]) -> bool {
    verdicts
        .iter()
        .all(|v| matches!(v, Verdict::Filtered) || *v == Verdict::Sample(0.0))
}

fn globs(patterns: &[String]) -> Vec<Glob> {
    patterns.iter().map(|p| Glob::new(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{TelemetryEventFilter, TelemetrySamplingUpdate, TelemetryToggle};

    fn toggle(enabled: bool) -> TelemetryControl {
        TelemetryControl {
            control: Some(Control::Toggle(TelemetryToggle { enabled })),
        }
    }

    fn sampling(rate: f64, patterns: &[&str]) -> TelemetryControl {
        TelemetryControl {
            control: Some(Control::Sampling(TelemetrySamplingUpdate {
                sampling_rate: rate,
                event_patterns: patterns.iter().map(|s| s.to_string()).collect(),
            })),
        }
    }

    fn filter(allow: &[&str], deny: &[&str]) -> TelemetryControl {
        let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        TelemetryControl {
            control: Some(Control::Filter(TelemetryEventFilter {
                allow: strings(allow),
                deny: strings(deny),
            })),
        }
    }

    #[test]
    fn starts_disabled_and_toggles() {
        let mut s = ControlState::default();
        assert!(!s.enabled);
        s.apply(&toggle(true)).unwrap();
        assert!(s.enabled);
        s.apply(&toggle(false)).unwrap();
        assert!(!s.enabled);
    }

    #[test]
    fn sampling_without_patterns_applies_to_all() {
        let mut s = ControlState::default();
        s.apply(&sampling(0.25, &[])).unwrap();
        assert_eq!(s.verdict("tool.result_size"), Verdict::Sample(0.25));
        s.apply(&sampling(1.0, &[])).unwrap();
        assert_eq!(s.verdict("tool.result_size"), Verdict::Pass);
    }

    #[test]
    fn sampling_patterns_limit_which_names_are_sampled() {
        let mut s = ControlState::default();
        s.apply(&sampling(0.0, &["python.*"])).unwrap();
        assert_eq!(s.verdict("python.call.start"), Verdict::Sample(0.0));
        assert_eq!(s.verdict("tool.execution.stop"), Verdict::Pass);
    }

    #[test]
    fn rates_are_clamped_and_nan_refused() {
        let mut s = ControlState::default();
        s.apply(&sampling(7.0, &[])).unwrap();
        assert_eq!(s.sampling_rate, 1.0);
        s.apply(&sampling(-1.0, &[])).unwrap();
        assert_eq!(s.sampling_rate, 0.0);
        assert!(s.apply(&sampling(f64::NAN, &[])).is_err());
        assert_eq!(s.sampling_rate, 0.0);
        assert!(s.apply(&TelemetryControl { control: None }).is_err());
    }

    #[test]
    fn deny_wins_and_empty_allow_allows_all() {
        let mut s = ControlState::default();
        s.apply(&filter(&[], &["tool.*"])).unwrap();
        assert_eq!(s.verdict("tool.result_size"), Verdict::Filtered);
        assert_eq!(s.verdict("python.call.start"), Verdict::Pass);
        s.apply(&filter(&["python.*"], &["python.cpu.*"])).unwrap();
        assert_eq!(s.verdict("python.cpu.sampled"), Verdict::Filtered);
        assert_eq!(s.verdict("python.call.stop"), Verdict::Pass);
        assert_eq!(s.verdict("tool.result_size"), Verdict::Filtered);
    }

    #[test]
    fn nothing_passes_when_all_filtered_or_sampled_to_zero() {
        let names = vec![
            "python.call.start".to_string(),
            "tool.result_size".to_string(),
        ];
        let mut s = ControlState::default();
        assert!(!nothing_passes(&s.verdicts(&names)));
        s.apply(&sampling(0.0, &["python.*"])).unwrap();
        s.apply(&filter(&[], &["tool.*"])).unwrap();
        assert!(nothing_passes(&s.verdicts(&names)));
    }
}
