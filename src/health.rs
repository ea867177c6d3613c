//! Liveness and readiness: core-loop heartbeats and the readiness verdict.
//!
//! Every task of a core loop (room refresh, each streaming group, each worker) holds a
//! [`Heartbeat`] and beats it whenever it gets round its loop: after each message,
//! page or wake-up, and at least every [`IDLE_TICK`] while it waits for input. A loop
//! whose stalest task has not beaten for longer than the stall limit is stalled: the
//! supervisor then stops the systemd watchdog pings and `/readyz` answers 503. Waiting
//! on Exchange or PostgreSQL is not a stall (those waits are bounded by timeouts and
//! the loop goes round again); a task stuck in a wait that never ends is.
//!
//! [`Health::readiness`] is the one place that decides whether the service is ready:
//! the database answers with a current schema, the streams cover every enabled room,
//! and no core loop is stalled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::pipeline::queue::WorkQueue;
use crate::pipeline::rooms::RoomDirectory;
use crate::store::{PgStore, SchemaStatus};
use crate::sync::lock;

/// The longest a waiting task goes without beating its heartbeat.
pub const IDLE_TICK: Duration = Duration::from_secs(1);
/// The limit for the database part of the readiness check.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The room refresh loop.
pub const LOOP_ROOMS: &str = "rooms";
/// The streaming groups.
pub const LOOP_STREAMS: &str = "streams";
/// The workers.
pub const LOOP_WORKERS: &str = "workers";

/// The heartbeats of every running core-loop task.
#[derive(Default)]
pub struct Heartbeats {
    /// Registered slots; a slot whose [`Heartbeat`] was dropped is pruned on read.
    slots: Mutex<Vec<Weak<Slot>>>,
}

struct Slot {
    name: &'static str,
    last: Mutex<Instant>,
}

/// One task's heartbeat. Dropping it unregisters the task (a task that ended is not
/// stalled).
pub struct Heartbeat {
    slot: Arc<Slot>,
}

impl Heartbeats {
    /// Registers a task of the loop `name`, counted as having just beaten.
    pub fn register(&self, name: &'static str) -> Heartbeat {
        let slot = Arc::new(Slot {
            name,
            last: Mutex::new(Instant::now()),
        });
        lock(&self.slots).push(Arc::downgrade(&slot));
        Heartbeat { slot }
    }

    /// Per loop, the time since its stalest task last beat.
    pub fn ages(&self) -> BTreeMap<&'static str, Duration> {
        let now = Instant::now();
        let mut slots = lock(&self.slots);
        slots.retain(|slot| slot.strong_count() > 0);
        let mut ages = BTreeMap::new();
        for slot in slots.iter().filter_map(Weak::upgrade) {
            let age = now.saturating_duration_since(*lock(&slot.last));
            let entry = ages.entry(slot.name).or_insert(age);
            *entry = (*entry).max(age);
        }
        ages
    }

    /// The first loop whose stalest task has not beaten within `limit`, with its age.
    pub fn stalled(&self, limit: Duration) -> Option<(&'static str, Duration)> {
        self.ages().into_iter().find(|(_, age)| *age > limit)
    }
}

impl Heartbeat {
    /// Records that the task went round its loop.
    pub fn beat(&self) {
        *lock(&self.slot.last) = Instant::now();
    }
}

/// What the readiness check reads.
#[derive(Clone)]
pub struct Health {
    /// Checked for reachability and schema.
    pub store: PgStore,
    /// The synced rooms and their subscriptions.
    pub rooms: Arc<RoomDirectory>,
    /// The work queue (for the status line).
    pub queue: Arc<WorkQueue>,
    /// The core loops' heartbeats.
    pub heartbeats: Arc<Heartbeats>,
    /// How long a core loop may go without progress before it counts as stalled.
    pub stall_after: Duration,
}

impl Health {
    /// `Ok` with a one-line summary when ready, else `Err` with the first reason.
    pub async fn readiness(&self) -> Result<String, String> {
        let database = tokio::time::timeout(DATABASE_CHECK_TIMEOUT, async {
            self.store.ping().await?;
            self.store.schema_status().await
        })
        .await;
        match database {
            Ok(Ok(SchemaStatus::Current)) => {}
            Ok(Ok(_)) => return Err("database schema is not current".into()),
            Ok(Err(_)) | Err(_) => return Err("database unreachable".into()),
        }
        let (subscribed, enabled) = self.rooms.coverage();
        if subscribed < enabled {
            return Err(format!(
                "streams cover {subscribed} of {enabled} enabled rooms"
            ));
        }
        if let Some((name, age)) = self.heartbeats.stalled(self.stall_after) {
            return Err(format!(
                "core loop {name} made no progress for {}s",
                age.as_secs()
            ));
        }
        Ok(format!(
            "ready: streams cover {subscribed} of {enabled} enabled rooms"
        ))
    }

    /// Age of the oldest queued change that is not committed yet.
    pub fn lag(&self) -> Duration {
        self.queue
            .oldest_event_at()
            .map_or(Duration::ZERO, |at| at.elapsed())
    }
}

/// Waits `duration`, beating `heartbeat` at least every [`IDLE_TICK`]; `false` when
/// `cancel` fired first.
pub async fn idle(heartbeat: &Heartbeat, duration: Duration, cancel: &CancellationToken) -> bool {
    let until = Instant::now() + duration;
    loop {
        heartbeat.beat();
        let now = Instant::now();
        if now >= until {
            return true;
        }
        let next = until.min(now + IDLE_TICK);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = cancel.cancelled() => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_is_stalled_when_its_stalest_task_stops_beating() {
        let heartbeats = Heartbeats::default();
        let busy = heartbeats.register(LOOP_WORKERS);
        let stuck = heartbeats.register(LOOP_WORKERS);
        let rooms = heartbeats.register(LOOP_ROOMS);

        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            busy.beat();
            rooms.beat();
        }

        assert_eq!(
            heartbeats.stalled(Duration::from_secs(5)),
            Some((LOOP_WORKERS, Duration::from_secs(10)))
        );
        assert_eq!(heartbeats.stalled(Duration::from_secs(15)), None);
        drop(stuck);
        assert_eq!(heartbeats.stalled(Duration::from_secs(5)), None);
        assert_eq!(heartbeats.ages().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ended_is_not_stalled() {
        let heartbeats = Heartbeats::default();
        drop(heartbeats.register(LOOP_STREAMS));

        tokio::time::sleep(Duration::from_secs(60)).await;

        assert_eq!(heartbeats.stalled(Duration::from_secs(1)), None);
        assert!(heartbeats.ages().is_empty());
    }
}
