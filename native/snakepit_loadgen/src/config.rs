//! What every telemetry stream of one server does (the CLI builds it; tests
//! build it directly).

/// Per-stream generation settings, shared by all streams of a server.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Events emitted per second per stream; 0 = as fast as the client reads.
    pub rate: f64,
    /// Events emitted per stream before the stream ends cleanly; 0 = unlimited.
    pub total: u64,
    /// Most events in one `TelemetryEventBatch` frame.
    pub batch: usize,
    /// Capacity of the queue between the generator and the response stream
    /// (events); when it is full new events are dropped and counted.
    pub queue_capacity: usize,
    /// Answer UNIMPLEMENTED on `StreamTelemetryBatched` (a stock worker).
    pub stock_only: bool,
    /// Ignore sampling patterns, as the reference worker does.
    pub reference_sampling: bool,
    /// Fraction (0.0–1.0) of events given a name that is not in the catalog.
    pub invalid_ratio: f64,
    /// Seed of the event shapes and sampling decisions (streams derive theirs).
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rate: 0.0,
            total: 0,
            batch: 256,
            queue_capacity: 1024,
            stock_only: false,
            reference_sampling: false,
            invalid_ratio: 0.0,
            seed: 0x5eed,
        }
    }
}

impl Config {
    /// Checks the ranges the generator relies on.
    pub fn validate(&self) -> Result<(), String> {
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(format!(
                "rate must be a finite number >= 0, got {}",
                self.rate
            ));
        }
        if !(0.0..=1.0).contains(&self.invalid_ratio) {
            return Err(format!(
                "invalid ratio must be within 0.0..=1.0, got {}",
                self.invalid_ratio
            ));
        }
        if self.batch == 0 {
            return Err("batch must be at least 1".into());
        }
        if self.queue_capacity == 0 {
            return Err("queue capacity must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let bad = [
            Config {
                rate: -1.0,
                ..Config::default()
            },
            Config {
                rate: f64::NAN,
                ..Config::default()
            },
            Config {
                invalid_ratio: 1.5,
                ..Config::default()
            },
            Config {
                batch: 0,
                ..Config::default()
            },
            Config {
                queue_capacity: 0,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
