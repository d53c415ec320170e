//! A stream's generator loop: paces emission (`--rate`), applies the control
//! state, stops at `--total`, and pushes into the bounded queue, dropping
//! and counting what does not fit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::control::{nothing_passes, ControlState, Verdict};
use crate::generator::{now_ns, Generator, Stamped};
use crate::queue::{Closed, EventQueue};
use crate::rng::Rng;
use crate::stats::{Counts, StreamStats};

/// Most events generated between two yields to the scheduler.
const CHUNK: u64 = 256;

/// Why the generator stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `--total` events were emitted.
    TotalReached,
    /// The queue or the control channel closed.
    Closed,
}

pub struct Producer {
    generator: Generator,
    rng: Rng,
    queue: Arc<EventQueue>,
    stats: Arc<StreamStats>,
    /// Events per second; 0 = whenever the queue has room.
    rate: f64,
    /// Events to generate while enabled, in all; 0 = unlimited.
    total: u64,
    generated: u64,
}

/// Emission schedule at a fixed rate, restarted each time emission resumes
/// (so a pause is not followed by a burst).
struct Pacer {
    rate: f64,
    start: Instant,
    done: u64,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        Pacer {
            rate,
            start: Instant::now(),
            done: 0,
        }
    }

    fn due(&self) -> u64 {
        if self.rate == 0.0 {
            return u64::MAX;
        }
        let owed = (self.start.elapsed().as_secs_f64() * self.rate) as u64;
        owed.saturating_sub(self.done)
    }

    fn next_at(&self) -> Instant {
        self.start + Duration::from_secs_f64((self.done + 1) as f64 / self.rate)
    }
}

impl Producer {
    pub fn new(
        generator: Generator,
        seed: u64,
        queue: Arc<EventQueue>,
        stats: Arc<StreamStats>,
        rate: f64,
        total: u64,
    ) -> Producer {
        Producer {
            generator,
            rng: Rng::new(seed),
            queue,
            stats,
            rate,
            total,
            generated: 0,
        }
    }

    /// Runs until `--total` is reached or the queue/control channel closes.
    /// At a fixed rate the events due while toggled off are only counted
    /// (`disabled`); unpaced, nothing happens while off or while nothing
    /// could pass.
    pub async fn run(mut self, mut control: watch::Receiver<ControlState>) -> End {
        loop {
            if control.has_changed().is_err() {
                return End::Closed;
            }
            let (enabled, verdicts) = {
                let state = control.borrow_and_update();
                (state.enabled, state.verdicts(self.generator.pool().names()))
            };
            if self.rate == 0.0 && (!enabled || nothing_passes(&verdicts)) {
                if control.changed().await.is_err() {
                    return End::Closed;
                }
                continue;
            }
            let verdicts = enabled.then_some(verdicts.as_slice());
            if let Some(end) = self.pace(verdicts, &mut control).await {
                return end;
            }
        }
    }

    /// Emits (or, with `verdicts == None`, counts as disabled) the events
    /// due; `None` when the control state changed.
    async fn pace(
        &mut self,
        verdicts: Option<&[Verdict]>,
        control: &mut watch::Receiver<ControlState>,
    ) -> Option<End> {
        let mut pacer = Pacer::new(self.rate);
        loop {
            if control.has_changed().unwrap_or(true) {
                return None;
            }
            let room = if self.rate == 0.0 {
                tokio::select! {
                    r = self.queue.wait_room() => r,
                    _ = control.changed() => return None,
                }
            } else {
                self.queue.room()
            };
            let Ok(room) = room else {
                return Some(End::Closed);
            };
            let due = pacer.due();
            if due == 0 {
                tokio::select! {
                    _ = tokio::time::sleep_until(pacer.next_at()) => {}
                    _ = control.changed() => return None,
                }
                continue;
            }
            let Some(verdicts) = verdicts else {
                self.stats.record(&Counts {
                    emitted: due,
                    disabled: due,
                    ..Counts::default()
                });
                pacer.done += due;
                continue;
            };
            let mut attempts = due.min(CHUNK);
            if self.total > 0 {
                attempts = attempts.min(self.total - self.generated);
            }
            match self.emit(attempts, room, verdicts) {
                Ok(done) => pacer.done += done,
                Err(Closed) => return Some(End::Closed),
            }
            if self.total > 0 && self.generated >= self.total {
                return Some(End::TotalReached);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Generates up to `attempts` events; those that pass go into the queue
    /// while `room` lasts, the rest are dropped. At the unpaced rate it stops
    /// when the room is used up instead (it never drops). Returns the count
    /// generated.
    fn emit(&mut self, attempts: u64, room: usize, verdicts: &[Verdict]) -> Result<u64, Closed> {
        let unpaced = self.rate == 0.0;
        let mut out = Vec::with_capacity(room.min(attempts as usize));
        let mut step = Counts::default();
        while step.emitted < attempts && !(unpaced && out.len() == room) {
            step.emitted += 1;
            let template = self.generator.next_template();
            match verdicts[self.generator.pool().template(template).name()] {
                Verdict::Filtered => step.filtered += 1,
                Verdict::Sample(p) if !self.rng.chance(p) => step.sampled_out += 1,
                _ if out.len() < room => out.push(Stamped {
                    template,
                    timestamp_ns: now_ns(),
                }),
                _ => step.dropped += 1,
            }
        }
        self.generated += step.emitted;
        self.stats.record(&step);
        self.queue.push_all(out)?;
        Ok(step.emitted)
    }
}
