//! Command-line flags of the `snakepit_loadgen` binary.

use std::net::SocketAddr;

use clap::Parser;

use crate::config::Config;

/// A load-generating Snakepit BridgeService: streams realistic Python-layer
/// telemetry over gRPC for benchmarks and fault tests.
///
/// Prints exactly one line, `LISTENING <port>`, to stdout once bound (logs go
/// to stderr), then serves until stdin closes, SIGTERM/SIGINT arrives or
/// --duration-s elapses, and exits 0 after a graceful shutdown.
///
/// Each telemetry stream (StreamTelemetry: one event per frame;
/// StreamTelemetryBatched: TelemetryEventBatch frames carrying the running
/// totals emitted/dropped/sampled_out/filtered_out/disabled) gets its own
/// generator. It sends nothing until the client sends toggle(enabled=true),
/// and honours toggle, sampling(rate, patterns) and filter(allow, deny)
/// frames at any time (fnmatch globs over Python names like
/// `tool.execution.stop`; deny wins; empty allow = all; sampling applies to
/// the names matching its patterns, or to all when there are none). Events
/// suppressed by sampling, filters or the toggle are counted apart from drops.
/// When the client closes its control stream the event stream ends too.
/// Per-stream counts are logged to stderr when a stream closes.
#[derive(Debug, Parser)]
#[command(name = "snakepit_loadgen", version, about, long_about)]
pub struct Args {
    /// Address to serve on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Events per second per stream, before the toggle, sampling and filters
    /// (while toggled off they are only counted, in disabled_total). Events
    /// that find the queue full are dropped and counted (dropped_total), as
    /// in the Python worker. 0 = as fast as the client reads: the generator
    /// refills the queue whenever it has room, never drops, and idles while
    /// toggled off or while nothing could pass.
    #[arg(long, default_value_t = 0.0, value_name = "R", value_parser = parse_rate)]
    pub rate: f64,

    /// Events generated per stream while enabled (before sampling/filters),
    /// then the stream ends cleanly (status OK); 0 = unlimited.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub total: u64,

    /// Most events per StreamTelemetryBatched frame.
    #[arg(long, default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,

    /// Capacity (events) of each stream's queue between generator and sender.
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_size: u32,

    /// Behave like a stock worker: StreamTelemetryBatched answers UNIMPLEMENTED.
    #[arg(long)]
    pub stock_only: bool,

    /// Behave like the reference worker's sampling: the rate applies to every
    /// event and sampling patterns are ignored (with --stock-only, a
    /// reference-like peer).
    #[arg(long)]
    pub reference_sampling: bool,

    /// Fraction (0.0-1.0) of events with a name outside the catalog (rejection tests).
    #[arg(long, default_value_t = 0.0, value_name = "F", value_parser = parse_ratio)]
    pub invalid_ratio: f64,

    /// Shut down after this many seconds; 0 = no limit.
    #[arg(long, default_value_t = 0.0, value_name = "S", value_parser = parse_rate)]
    pub duration_s: f64,

    /// Keep serving when stdin closes (e.g. when started with </dev/null).
    #[arg(long)]
    pub ignore_stdin: bool,

    /// Seed of the event shapes and sampling decisions.
    #[arg(long, default_value_t = 0x5eed, value_name = "N")]
    pub seed: u64,
}

impl Args {
    pub fn config(&self) -> Config {
        Config {
            rate: self.rate,
            total: self.total,
            batch: self.batch as usize,
            queue_capacity: self.queue_size as usize,
            stock_only: self.stock_only,
            reference_sampling: self.reference_sampling,
            invalid_ratio: self.invalid_ratio,
            seed: self.seed,
        }
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a finite number >= 0, got {s:?}")),
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number within 0.0..=1.0, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let a = Args::try_parse_from(["snakepit_loadgen"]).unwrap();
        assert_eq!(a.listen.to_string(), "127.0.0.1:0");
        assert_eq!(a.config(), Config::default());
        assert_eq!(a.config().validate(), Ok(()));
    }

    #[test]
    fn all_flags() {
        let a = Args::try_parse_from([
            "snakepit_loadgen",
            "--listen",
            "127.0.0.1:5000",
            "--rate",
            "1000",
            "--total",
            "10",
            "--batch",
            "64",
            "--queue-size",
            "16",
            "--stock-only",
            "--invalid-ratio",
            "0.1",
            "--duration-s",
            "2.5",
            "--ignore-stdin",
            "--seed",
            "9",
        ])
        .unwrap();
        let c = a.config();
        assert_eq!(
            (c.rate, c.total, c.batch, c.queue_capacity),
            (1000.0, 10, 64, 16)
        );
        assert!(c.stock_only && a.ignore_stdin);
        assert_eq!((c.invalid_ratio, a.duration_s, c.seed), (0.1, 2.5, 9));
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            ["--rate", "-1"],
            ["--invalid-ratio", "2"],
            ["--batch", "0"],
            ["--queue-size", "0"],
            ["--listen", "nope"],
        ] {
            let mut argv = vec!["snakepit_loadgen"];
            argv.extend(args);
            assert!(Args::try_parse_from(&argv).is_err(), "{args:?}");
        }
    }
}
