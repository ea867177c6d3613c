//! A realistic, seeded booking workload over the room mailboxes.
//!
//! Each step picks a kind of change by the mix's weights and applies it through
//! [`SimControl`], so every step changes the model and emits the same events a client
//! action would: create single meetings in business hours over the next 60 days, edit
//! time or subject, move a meeting to another room (soft delete in the old room, same
//! UID created in the new one), cancel, delete (soft or hard by
//! `SimConfig::soft_delete_ratio`), create daily/weekly/monthly series, make
//! exceptions and delete occurrences. `rate_per_sec` paces the steps (0: flat out).

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc, Weekday};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

use crate::recurrence::{Pattern, RangeEnd, Recurrence};

use super::model::time_zone;
use super::{AppointmentPatch, DeleteMode, MailboxKind, NewAppointment, SimControl, SimError};

/// Subjects the workload books.
const SUBJECTS: [&str; 8] = [
    "Team sync",
    "Quarterly planning",
    "Design review",
    "Customer call",
    "Interview",
    "1:1",
    "Budget review",
    "Retrospective",
];
/// Share of single meetings booked as all-day events.
const ALL_DAY_SHARE: f64 = 0.1;
/// Zones the workload books in.
const ZONES: [&str; 4] = ["Europe/Berlin", "Europe/London", "America/New_York", "UTC"];

/// Relative weights of the kinds of change.
///
/// In JSON a weight left out of a given mix is 0; a workload without `mix` uses
/// [`WorkloadMix::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadMix {
    /// Create a single meeting.
    #[serde(default)]
    pub create: u32,
    /// Change the time or subject of a meeting.
    #[serde(default)]
    pub update: u32,
    /// Move a meeting to another room.
    #[serde(default, rename = "move")]
    pub move_room: u32,
    /// Cancel a meeting.
    #[serde(default)]
    pub cancel: u32,
    /// Delete a meeting (soft or hard).
    #[serde(default)]
    pub delete: u32,
    /// Create a recurring series.
    #[serde(default)]
    pub recurring: u32,
    /// Change or delete one occurrence of a series.
    #[serde(default)]
    pub exception: u32,
}

impl Default for WorkloadMix {
    fn default() -> Self {
        Self {
            create: 40,
            update: 20,
            move_room: 5,
            cancel: 5,
            delete: 10,
            recurring: 10,
            exception: 10,
        }
    }
}

/// A workload to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Number of changes.
    pub changes: usize,
    /// Changes per second; 0 runs as fast as possible.
    #[serde(default)]
    pub rate_per_sec: f64,
    /// Seed of the workload's choices.
    #[serde(default)]
    pub seed: u64,
    /// Weights of the kinds of change.
    #[serde(default)]
    pub mix: WorkloadMix,
    /// HTTP API only: `false` answers at once and runs the workload in the background.
    #[serde(default = "default_wait")]
    pub wait: bool,
}

fn default_wait() -> bool {
    true
}

/// What a workload did, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadReport {
    /// Changes applied.
    pub changes: usize,
    /// Single meetings created.
    pub created: usize,
    /// Meetings changed.
    pub updated: usize,
    /// Meetings moved to another room.
    pub moved: usize,
    /// Meetings cancelled.
    pub cancelled: usize,
    /// Meetings soft-deleted.
    pub soft_deleted: usize,
    /// Meetings hard-deleted.
    pub hard_deleted: usize,
    /// Series created.
    pub recurring: usize,
    /// Exceptions made.
    pub exceptions: usize,
    /// Occurrences deleted.
    pub occurrences_deleted: usize,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

/// Checks that a workload can run.
///
/// # Errors
///
/// [`SimError::Invalid`] without room mailboxes, with an all-zero mix, or a negative rate.
pub fn validate(control: &SimControl, workload: &Workload) -> Result<(), SimError> {
    let mix = &workload.mix;
    let total = mix.create
        + mix.update
        + mix.move_room
        + mix.cancel
        + mix.delete
        + mix.recurring
        + mix.exception;
    if total == 0 {
        return Err(SimError::Invalid("mix has no positive weight".into()));
    }
    if !(workload.rate_per_sec >= 0.0 && workload.rate_per_sec.is_finite()) {
        return Err(SimError::Invalid(
            "rate_per_sec must be 0 or positive".into(),
        ));
    }
    if !control
        .mailboxes()
        .iter()
        .any(|mailbox| mailbox.kind == MailboxKind::Room)
    {
        return Err(SimError::Invalid("there are no room mailboxes".into()));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Update,
    Move,
    Cancel,
    Delete,
    Recurring,
    Exception,
}

/// Runs a workload to completion (or until the simulator shuts down).
///
/// # Errors
///
/// As [`validate`].
pub async fn run(control: &SimControl, workload: Workload) -> Result<WorkloadReport, SimError> {
    validate(control, &workload)?;
    let mailboxes = control.mailboxes();
    let rooms: Vec<String> = mailboxes
        .iter()
        .filter(|m| m.kind == MailboxKind::Room)
        .map(|m| m.email.clone())
        .collect();
    let users: Vec<String> = mailboxes
        .iter()
        .filter(|m| m.kind == MailboxKind::User)
        .map(|m| m.email.clone())
        .collect();
    let mut runner = Runner {
        control,
        rng: SmallRng::seed_from_u64(workload.seed),
        rooms,
        users,
        report: WorkloadReport::default(),
        today: Utc::now().date_naive(),
    };
    let mix = &workload.mix;
    let weights = [
        (Kind::Create, mix.create),
        (Kind::Update, mix.update),
        (Kind::Move, mix.move_room),
        (Kind::Cancel, mix.cancel),
        (Kind::Delete, mix.delete),
        (Kind::Recurring, mix.recurring),
        (Kind::Exception, mix.exception),
    ];
    let total: u32 = weights.iter().map(|(_, weight)| weight).sum();
    let started = tokio::time::Instant::now();
    let shutdown = control.state().shutdown.clone();
    for step in 0..workload.changes {
        if workload.rate_per_sec > 0.0 {
            let due =
                started + std::time::Duration::from_secs_f64(step as f64 / workload.rate_per_sec);
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = shutdown.cancelled() => break,
            }
        } else if step % 256 == 255 {
            // Let streams drain between bursts when running flat out.
            tokio::task::yield_now().await;
        }
        if shutdown.is_cancelled() {
            break;
        }
        let mut pick = runner.rng.gen_range(0..total);
        let mut kind = Kind::Create;
        for (candidate, weight) in weights {
            if pick < weight {
                kind = candidate;
                break;
            }
            pick -= weight;
        }
        runner.step(kind)?;
        runner.report.changes += 1;
    }
    runner.report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(runner.report)
}

struct Runner<'a> {
    control: &'a SimControl,
    rng: SmallRng,
    rooms: Vec<String>,
    users: Vec<String>,
    report: WorkloadReport,
    today: chrono::NaiveDate,
}

impl Runner<'_> {
    fn room(&mut self) -> String {
        self.rooms[self.rng.gen_range(0..self.rooms.len())].clone()
    }

    fn organizer(&mut self, room: &str) -> String {
        self.users
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or_else(|| room.to_owned())
    }

    /// A business-hours slot in the next 60 days, in a random zone.
    fn slot(&mut self) -> (DateTime<Utc>, DateTime<Utc>, String) {
        let zone_name = ZONES[self.rng.gen_range(0..ZONES.len())];
        let zone = time_zone(zone_name)
            .map(|info| info.tz)
            .unwrap_or(chrono_tz::UTC);
        let day = self.today + Duration::days(self.rng.gen_range(1..=60));
        let hour = self.rng.gen_range(8..17);
        let minute = if self.rng.gen_bool(0.5) { 0 } else { 30 };
        let local =
            day.and_time(NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN));
        let start = zone
            .from_local_datetime(&local)
            .earliest()
            .map_or_else(|| local.and_utc(), |time| time.with_timezone(&Utc));
        let minutes = [30, 60, 60, 90, 120][self.rng.gen_range(0..5)];
        (
            start,
            start + Duration::minutes(minutes),
            zone_name.to_owned(),
        )
    }

    /// An all-day slot: local midnight to the next local midnight, in a random zone.
    fn all_day_slot(&mut self) -> (DateTime<Utc>, DateTime<Utc>, String) {
        let zone_name = ZONES[self.rng.gen_range(0..ZONES.len())];
        let zone = time_zone(zone_name).map_or(chrono_tz::UTC, |info| info.tz);
        let day = self.today + Duration::days(self.rng.gen_range(1..=60));
        let midnight = |date: chrono::NaiveDate| {
            let local = date.and_time(NaiveTime::MIN);
            zone.from_local_datetime(&local)
                .earliest()
                .map_or_else(|| local.and_utc(), |time| time.with_timezone(&Utc))
        };
        (
            midnight(day),
            midnight(day + Duration::days(1)),
            zone_name.to_owned(),
        )
    }

    fn appointment(&mut self, room: &str) -> NewAppointment {
        let all_day = self.rng.gen_bool(ALL_DAY_SHARE);
        let (start, end, zone) = if all_day {
            self.all_day_slot()
        } else {
            self.slot()
        };
        let organizer = self.organizer(room);
        let attendee_count = self.rng.gen_range(0..=3).min(self.users.len());
        let attendees = self
            .users
            .choose_multiple(&mut self.rng, attendee_count)
            .cloned()
            .collect();
        NewAppointment {
            subject: SUBJECTS[self.rng.gen_range(0..SUBJECTS.len())].to_owned(),
            start,
            end,
            is_all_day: all_day,
            organizer,
            attendees,
            time_zone: Some(zone),
            recurrence: None,
            location: None,
            uid: None,
        }
    }

    /// A random existing item of a random room: (room, uid, is series, is cancelled).
    fn existing(&mut self, series: Option<bool>) -> Option<(String, String, bool, bool)> {
        for _ in 0..4 {
            let room = self.room();
            let uids: Vec<_> = self
                .control
                .state()
                .model()
                .uids(&room)
                .into_iter()
                .filter(|(_, is_series, _)| matches_filter(series, *is_series))
                .collect();
            if let Some((uid, is_series, cancelled)) = uids.choose(&mut self.rng).cloned() {
                return Some((room, uid, is_series, cancelled));
            }
        }
        None
    }

    fn step(&mut self, kind: Kind) -> Result<(), SimError> {
        match kind {
            Kind::Create => self.create(),
            Kind::Recurring => self.create_series(),
            Kind::Update => match self.existing(None) {
                Some((room, uid, is_series, _)) => self.update(&room, &uid, is_series),
                None => self.create(),
            },
            Kind::Move => match self.existing(Some(false)) {
                Some((room, uid, _, _)) if self.rooms.len() > 1 => self.move_room(&room, &uid),
                _ => self.create(),
            },
            Kind::Cancel => match self.existing(None) {
                Some((room, uid, _, false)) => {
                    self.control.cancel_appointment(&room, &uid)?;
                    self.report.cancelled += 1;
                    Ok(())
                }
                _ => self.create(),
            },
            Kind::Delete => match self.existing(None) {
                Some((room, uid, _, _)) => self.delete(&room, &uid),
                None => self.create(),
            },
            Kind::Exception => match self.existing(Some(true)) {
                Some((room, uid, _, _)) => self.exception(&room, &uid),
                None => self.create_series(),
            },
        }
    }

    fn create(&mut self) -> Result<(), SimError> {
        let room = self.room();
        let appointment = self.appointment(&room);
        self.control.create_appointment(&room, appointment)?;
        self.report.created += 1;
        Ok(())
    }

    fn create_series(&mut self) -> Result<(), SimError> {
        let room = self.room();
        let mut appointment = self.appointment(&room);
        let zone = appointment
            .time_zone
            .as_deref()
            .and_then(|name| time_zone(name).ok())
            .map_or(chrono_tz::UTC, |info| info.tz);
        let start_date = appointment.start.with_timezone(&zone).date_naive();
        let (pattern, end) = match self.rng.gen_range(0..3) {
            0 => (
                Pattern::Daily { interval: 1 },
                RangeEnd::Numbered {
                    count: self.rng.gen_range(5..=10),
                },
            ),
            1 => (
                Pattern::Weekly {
                    interval: self.rng.gen_range(1..=2),
                    days: vec![chrono::Datelike::weekday(&start_date)],
                    first_day_of_week: Weekday::Mon,
                },
                RangeEnd::EndDate {
                    date: start_date + Duration::weeks(self.rng.gen_range(4..=12)),
                },
            ),
            _ => (
                Pattern::AbsoluteMonthly {
                    interval: 1,
                    day_of_month: chrono::Datelike::day(&start_date),
                },
                RangeEnd::Numbered {
                    count: self.rng.gen_range(3..=6),
                },
            ),
        };
        appointment.recurrence = Some(Recurrence {
            pattern,
            start_date,
            end,
        });
        self.control.create_appointment(&room, appointment)?;
        self.report.recurring += 1;
        Ok(())
    }

    fn update(&mut self, room: &str, uid: &str, is_series: bool) -> Result<(), SimError> {
        let mut patch = AppointmentPatch::default();
        if is_series || self.rng.gen_bool(0.5) {
            patch.subject = Some(format!(
                "{} (updated)",
                SUBJECTS[self.rng.gen_range(0..SUBJECTS.len())]
            ));
        } else {
            let (start, end, _) = self.slot();
            patch.start = Some(start);
            patch.end = Some(end);
        }
        self.control.update_appointment(room, uid, patch)?;
        self.report.updated += 1;
        Ok(())
    }

    fn move_room(&mut self, room: &str, uid: &str) -> Result<(), SimError> {
        let Some(appointment) = self.control.state().model().export(room, uid) else {
            return self.create();
        };
        let mut target = self.room();
        while target == room {
            target = self.room();
        }
        if self
            .control
            .state()
            .model()
            .uids(&target)
            .iter()
            .any(|(existing, _, _)| existing == uid)
        {
            return self.create();
        }
        self.control
            .delete_appointment(room, uid, DeleteMode::Soft, None)?;
        self.control.create_appointment(&target, appointment)?;
        self.report.moved += 1;
        Ok(())
    }

    fn delete(&mut self, room: &str, uid: &str) -> Result<(), SimError> {
        let soft = self.rng.gen_bool(
            self.control
                .state()
                .config
                .soft_delete_ratio
                .clamp(0.0, 1.0),
        );
        let mode = if soft {
            self.report.soft_deleted += 1;
            DeleteMode::Soft
        } else {
            self.report.hard_deleted += 1;
            DeleteMode::Hard
        };
        self.control.delete_appointment(room, uid, mode, None)
    }

    fn exception(&mut self, room: &str, uid: &str) -> Result<(), SimError> {
        let now = Utc::now();
        let starts =
            self.control
                .state()
                .model()
                .instance_starts(room, uid, now, now + Duration::days(400));
        let Some(original) = starts.choose(&mut self.rng).copied() else {
            return self.create_series();
        };
        if self.rng.gen_bool(0.3) {
            self.control
                .delete_appointment(room, uid, DeleteMode::Soft, Some(original))?;
            self.report.occurrences_deleted += 1;
            return Ok(());
        }
        let shift = Duration::minutes(30 * self.rng.gen_range(1..=4));
        let truth = self.control.appointments(
            room,
            original - Duration::days(1),
            original + Duration::days(2),
        )?;
        let duration = truth
            .iter()
            .find(|entry| entry.uid == uid && entry.occurrence_start == Some(original))
            .map_or(Duration::hours(1), |entry| entry.end - entry.start);
        let patch = AppointmentPatch {
            subject: Some("Moved occurrence".into()),
            start: Some(original + shift),
            end: Some(original + shift + duration),
            occurrence_start: Some(original),
            ..AppointmentPatch::default()
        };
        self.control.update_appointment(room, uid, patch)?;
        self.report.exceptions += 1;
        Ok(())
    }
}

/// `None` matches everything; `Some(wanted)` matches `wanted` only.
fn matches_filter(filter: Option<bool>, value: bool) -> bool {
    match filter {
        Some(wanted) => wanted == value,
        None => true,
    }
}
