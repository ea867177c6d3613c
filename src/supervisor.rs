//! The supervisor: samples the service's state once a second into gauges and the
//! systemd status line, and pings the systemd watchdog while every core loop makes
//! progress.
//!
//! The watchdog ping is tied to the core loops' heartbeats ([`crate::health`]), not to
//! a timer of its own: when any loop stalls the pings stop and systemd restarts the
//! service. An unreachable database or Exchange is no stall (a restart cannot fix
//! them); readiness and the metrics report those. Its loop waits on a one-second tick
//! and on cancellation, which `app` fires last, after the drain.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::health::Health;
use crate::metrics as m;
use crate::systemd;

/// How often the state is sampled.
const TICK: Duration = Duration::from_secs(1);
/// How often readiness (with its database round trip) is evaluated for the gauge.
const READINESS_INTERVAL: Duration = Duration::from_secs(5);

/// Runs until `cancel` fires. `watchdog` is the timeout systemd enforces, if any;
/// pings go out at a third of it.
pub async fn run(health: Health, watchdog: Option<Duration>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pings = watchdog.map(WatchdogPings::new);
    let mut last_readiness: Option<Instant> = None;
    let mut last_status = String::new();
    let mut stalled_before = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => break,
        }
        sample(&health);
        let stalled = health.heartbeats.stalled(health.stall_after);
        match (stalled, stalled_before) {
            (Some((name, age)), false) => {
                error!(
                    core_loop = name,
                    seconds = age.as_secs(),
                    "A core loop stopped making progress; the watchdog is no longer pinged"
                );
            }
            (None, true) => info!("Every core loop makes progress again"),
            _ => {}
        }
        stalled_before = stalled.is_some();
        if let Some(pings) = pings.as_mut() {
            if pings.due(stalled.is_some()) {
                systemd::watchdog();
            }
        }
        let line = status_line(&health, stalled);
        if line != last_status {
            systemd::status(&line);
            last_status = line;
        }
        if last_readiness.is_none_or(|at| at.elapsed() >= READINESS_INTERVAL) {
            last_readiness = Some(Instant::now());
            let ready = health.readiness().await.is_ok();
            metrics::gauge!(m::READY).set(if ready { 1.0 } else { 0.0 });
        }
    }
}

/// When to ping the watchdog: at a third of its timeout, never while a loop is stalled.
#[derive(Debug)]
pub struct WatchdogPings {
    every: Duration,
    last: Option<Instant>,
}

impl WatchdogPings {
    /// Pings for a watchdog that fires after `timeout` without one.
    pub fn new(timeout: Duration) -> Self {
        Self {
            every: timeout / 3,
            last: None,
        }
    }

    /// Whether to ping now; records the ping when it says yes.
    pub fn due(&mut self, stalled: bool) -> bool {
        if stalled || self.last.is_some_and(|at| at.elapsed() < self.every) {
            return false;
        }
        self.last = Some(Instant::now());
        true
    }
}

/// Sets the gauges that are read from state rather than counted at events.
pub fn sample(health: &Health) {
    metrics::gauge!(m::SYNC_LAG).set(health.lag().as_secs_f64());
    metrics::gauge!(m::QUEUE_DEPTH).set(health.queue.len() as f64);
    let (_, enabled) = health.rooms.coverage();
    metrics::gauge!(m::ROOMS_ENABLED).set(enabled as f64);
    let counts = health.rooms.initial_sync_counts();
    for (state, count) in m::INITIAL_SYNC_STATES.iter().zip(counts) {
        metrics::gauge!(m::ROOMS_BY_INITIAL_SYNC, "state" => *state).set(count as f64);
    }
    for (name, age) in health.heartbeats.ages() {
        metrics::gauge!(m::LOOP_PROGRESS_AGE, "loop" => name).set(age.as_secs_f64());
    }
}

/// `systemctl status` line: coverage, queue and lag (and a stall, if any).
fn status_line(health: &Health, stalled: Option<(&'static str, Duration)>) -> String {
    let (covered, enabled) = health.rooms.coverage();
    let mut line = format!(
        "subscriptions {covered}/{enabled}, queue {}, lag {}s",
        health.queue.len(),
        health.lag().as_secs()
    );
    let polled = health.rooms.polled_count();
    if polled > 0 {
        line.push_str(&format!(
            ", {polled} polled for want of a streaming connection"
        ));
    }
    if let Some((name, age)) = stalled {
        line.push_str(&format!(", {name} stalled for {}s", age.as_secs()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Heartbeats, LOOP_WORKERS};

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_pinged_only_while_every_loop_makes_progress() {
        let heartbeats = Heartbeats::default();
        let worker = heartbeats.register(LOOP_WORKERS);
        let stall_after = Duration::from_secs(10);
        let mut pings = WatchdogPings::new(Duration::from_secs(30));
        let mut sent = Vec::new();

        // 60 s of progress, then the worker stops beating for 60 s, then resumes.
        for second in 0..180u64 {
            if !(60..120).contains(&second) {
                worker.beat();
            }
            if pings.due(heartbeats.stalled(stall_after).is_some()) {
                sent.push(second);
            }
            tokio::time::sleep(TICK).await;
        }

        assert_eq!(
            sent,
            vec![0, 10, 20, 30, 40, 50, 60, 120, 130, 140, 150, 160, 170]
        );
    }
}
