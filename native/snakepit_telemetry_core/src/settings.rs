//! The settings a telemetry stream sends when it opens: the complete state
//! of every control, not only what Elixir changed. A worker keeps settings
//! across streams (and so might an intruder's, an earlier registration's or
//! another worker id's); sending all of them on every (re)connect means
//! nothing left over survives, and a restarted worker is tuned exactly as
//! Elixir last set it.

use crate::wire::telemetry_control::Control;
use crate::wire::{
    TelemetryControl, TelemetryEventFilter, TelemetrySamplingUpdate, TelemetryToggle,
};

pub fn toggle(enabled: bool) -> TelemetryControl {
    control(Control::Toggle(TelemetryToggle { enabled }))
}

pub fn sampling(sampling_rate: f64, event_patterns: Vec<String>) -> TelemetryControl {
    control(Control::Sampling(TelemetrySamplingUpdate {
        sampling_rate,
        event_patterns,
    }))
}

pub fn filter(allow: Vec<String>, deny: Vec<String>) -> TelemetryControl {
    control(Control::Filter(TelemetryEventFilter { allow, deny }))
}

fn control(c: Control) -> TelemetryControl {
    TelemetryControl { control: Some(c) }
}

/// The latest setting of each kind Elixir sent.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Settings {
    enabled: Option<bool>,
    sampling: Option<TelemetryControl>,
    filter: Option<TelemetryControl>,
}

impl Settings {
    pub fn record(&mut self, c: &TelemetryControl) {
        match &c.control {
            Some(Control::Toggle(t)) => self.enabled = Some(t.enabled),
            Some(Control::Sampling(_)) => self.sampling = Some(c.clone()),
            Some(Control::Filter(_)) => self.filter = Some(c.clone()),
            None => {}
        }
    }

    /// The sampling control last set, if any.
    pub fn sampling(&self) -> Option<&TelemetryControl> {
        self.sampling.as_ref()
    }

    /// `toggle(true)` first (the contract), then every setting in full: the
    /// sampling and the filter as last set, or their defaults (every event,
    /// nothing denied), and `toggle(false)` last when telemetry is off.
    pub fn opening_frames(&self) -> Vec<TelemetryControl> {
        let mut frames = vec![
            toggle(true),
            self.sampling
                .clone()
                .unwrap_or_else(|| sampling(1.0, Vec::new())),
            self.filter
                .clone()
                .unwrap_or_else(|| filter(Vec::new(), Vec::new())),
        ];
        if self.enabled == Some(false) {
            frames.push(toggle(false));
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_stream_sends_every_setting_at_its_default() {
        assert_eq!(
            Settings::default().opening_frames(),
            vec![toggle(true), sampling(1.0, vec![]), filter(vec![], vec![])]
        );
    }

    #[test]
    fn recorded_settings_replace_the_defaults_and_off_comes_last() {
        let mut s = Settings::default();
        s.record(&sampling(0.25, vec!["python.*".into()]));
        s.record(&toggle(false));
        s.record(&sampling(0.5, vec![]));
        assert_eq!(
            s.opening_frames(),
            vec![
                toggle(true),
                sampling(0.5, vec![]),
                filter(vec![], vec![]),
                toggle(false)
            ]
        );
        s.record(&toggle(true));
        s.record(&filter(
            vec!["tool.*".into()],
            vec!["tool.result_size".into()],
        ));
        assert_eq!(
            s.opening_frames(),
            vec![
                toggle(true),
                sampling(0.5, vec![]),
                filter(vec!["tool.*".into()], vec!["tool.result_size".into()])
            ]
        );
    }
}
