//! `booking-sync status`: every room's sync health, and a summary line.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{InitialSync, RoomStatus};

/// The whole report; `--json` prints it as one object.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Counts over every room.
    pub summary: Summary,
    /// One entry per room, by id.
    pub rooms: Vec<RoomReport>,
}

/// Rooms by state, and how far behind the sync is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Rooms known.
    pub rooms: usize,
    /// Rooms with sync on.
    pub enabled: usize,
    /// Enabled rooms whose initial sync has not started.
    pub pending: usize,
    /// Enabled rooms whose initial sync is running.
    pub running: usize,
    /// Enabled rooms whose initial sync is complete.
    pub complete: usize,
    /// Enabled rooms whose initial sync failed.
    pub failed: usize,
    /// Enabled rooms whose last pass failed.
    pub with_errors: usize,
    /// Seconds since the least recently synced enabled room was last written (rooms
    /// never synced are left out).
    pub lag_seconds: Option<i64>,
    /// Differences full reconciliations repaired, in total.
    pub drift_repaired: i64,
    /// Confirmed meetings whose organizer is not a known user.
    pub unknown_organizers: i64,
    /// Enabled rooms polled because their group found no streaming connection slot.
    pub polled: usize,
}

/// One room's line.
#[derive(Debug, Clone, Serialize)]
pub struct RoomReport {
    /// Mailbox address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Sync on.
    pub sync_enabled: bool,
    /// Coexistence with the booking system on.
    pub coexistence_enabled: bool,
    /// `pending`, `running`, `complete` or `failed`.
    pub initial_sync: &'static str,
    /// How changes reach the service: `stream` (a streaming subscription), `poll`
    /// (no streaming connection slot was free, see `polled_since`) or `-` (neither).
    pub notifications: &'static str,
    /// Since when the room is polled.
    pub polled_since: Option<DateTime<Utc>>,
    /// Why the initial sync failed.
    pub initial_sync_error: Option<String>,
    /// Seconds since the last notification for the room.
    pub last_event_age_seconds: Option<i64>,
    /// When a pass last wrote the room (stream or incremental resync).
    pub last_sync_at: Option<DateTime<Utc>>,
    /// When the last resync of the room succeeded.
    pub last_resync_at: Option<DateTime<Utc>>,
    /// When the last full reconciliation of the room succeeded.
    pub last_full_resync_at: Option<DateTime<Utc>>,
    /// Confirmed meetings.
    pub meetings: i64,
    /// Confirmed meetings of unknown organizers.
    pub unknown_organizers: i64,
    /// Differences full reconciliations repaired.
    pub drift_repaired: i64,
    /// The last error, until a pass succeeds.
    pub last_error: Option<String>,
}

/// Builds the report from the rooms' statuses at `now`.
pub fn report(statuses: &[RoomStatus], now: DateTime<Utc>) -> StatusReport {
    let mut summary = Summary {
        rooms: statuses.len(),
        ..Summary::default()
    };
    for status in statuses.iter().filter(|status| status.sync_enabled) {
        summary.enabled += 1;
        match status.room.initial_sync {
            InitialSync::Pending => summary.pending += 1,
            InitialSync::Running => summary.running += 1,
            InitialSync::Complete => summary.complete += 1,
            InitialSync::Failed => summary.failed += 1,
        }
        if status.last_error.is_some() {
            summary.with_errors += 1;
        }
        if status.polled_since.is_some() {
            summary.polled += 1;
        }
        // Rooms never synced show in the state counts, not in the lag.
        if let Some(at) = status.last_sync_at {
            let age = (now - at).num_seconds();
            summary.lag_seconds = Some(summary.lag_seconds.map_or(age, |lag: i64| lag.max(age)));
        }
    }
    summary.drift_repaired = statuses.iter().map(|status| status.drift_repaired).sum();
    summary.unknown_organizers = statuses
        .iter()
        .map(|status| status.unknown_organizers)
        .sum();
    let rooms = statuses
        .iter()
        .map(|status| RoomReport {
            email: status.room.email.as_str().to_owned(),
            name: status.room.name.clone(),
            sync_enabled: status.sync_enabled,
            coexistence_enabled: status.coexistence_enabled,
            initial_sync: status.room.initial_sync.as_str(),
            notifications: notifications(status),
            polled_since: status.polled_since,
            initial_sync_error: status.initial_sync_error.clone(),
            last_event_age_seconds: status.last_event_at.map(|at| (now - at).num_seconds()),
            last_sync_at: status.last_sync_at,
            last_resync_at: status.last_resync_at,
            last_full_resync_at: status.last_full_resync_at,
            meetings: status.confirmed_meetings,
            unknown_organizers: status.unknown_organizers,
            drift_repaired: status.drift_repaired,
            last_error: status.last_error.clone(),
        })
        .collect();
    StatusReport { summary, rooms }
}

/// The report as text: one line per room, then the summary line.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<5} {:<10} {:<6} {:>10} {:<20} {:<20} {:>8} {:>7}  LAST ERROR",
        "EMAIL",
        "SYNC",
        "INITIAL",
        "VIA",
        "EVENT AGE",
        "LAST RESYNC",
        "LAST FULL RESYNC",
        "MEETINGS",
        "UNKNOWN"
    );
    for room in &report.rooms {
        let initial = match &room.initial_sync_error {
            Some(reason) if room.initial_sync == "failed" => format!("failed ({reason})"),
            _ => room.initial_sync.to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<40} {:<5} {:<10} {:<6} {:>10} {:<20} {:<20} {:>8} {:>7}  {}",
            room.email,
            if room.sync_enabled { "on" } else { "off" },
            initial,
            room.notifications,
            room.last_event_age_seconds
                .map_or_else(|| "-".to_owned(), |age| format!("{age}s")),
            time(room.last_resync_at.or(room.last_sync_at)),
            time(room.last_full_resync_at),
            room.meetings,
            room.unknown_organizers,
            room.last_error.as_deref().unwrap_or("-")
        );
    }
    let summary = &report.summary;
    let _ = writeln!(
        out,
        "{} rooms, {} enabled: {} complete, {} running, {} pending, {} failed; {} with errors; {} polled for want of a streaming connection; lag {}; drift repaired {}; {} meetings of unknown organizers",
        summary.rooms,
        summary.enabled,
        summary.complete,
        summary.running,
        summary.pending,
        summary.failed,
        summary.with_errors,
        summary.polled,
        summary
            .lag_seconds
            .map_or_else(|| "unknown".to_owned(), |lag| format!("{lag}s")),
        summary.drift_repaired,
        summary.unknown_organizers
    );
    out
}

fn notifications(status: &RoomStatus) -> &'static str {
    if status.subscription_id.is_some() {
        "stream"
    } else if status.polled_since.is_some() {
        "poll"
    } else {
        "-"
    }
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MailboxAddress;
    use crate::store::{Room, RoomId};

    fn status(
        id: i64,
        state: InitialSync,
        synced_ago: Option<i64>,
        now: DateTime<Utc>,
    ) -> RoomStatus {
        RoomStatus {
            room: Room {
                id: RoomId(id),
                email: MailboxAddress::new(&format!("room-{id}@example.org")),
                name: format!("Room {id}"),
                initial_sync: state,
            },
            sync_enabled: true,
            has_sync_state: true,
            subscription_id: None,
            last_event_at: None,
            last_sync_at: synced_ago.map(|ago| now - chrono::Duration::seconds(ago)),
            last_error: None,
            last_error_at: None,
            confirmed_meetings: 3,
            coexistence_enabled: false,
            initial_sync_error: (state == InitialSync::Failed)
                .then(|| "mailbox not found".to_owned()),
            last_resync_at: None,
            last_full_resync_at: None,
            drift_repaired: 2,
            unknown_organizers: 1,
            polled_since: None,
        }
    }

    #[test]
    fn the_summary_counts_rooms_by_state_and_takes_the_oldest_sync_as_lag() {
        let now = Utc::now();
        let statuses = vec![
            status(1, InitialSync::Complete, Some(10), now),
            status(2, InitialSync::Complete, Some(70), now),
            status(3, InitialSync::Failed, None, now),
            status(4, InitialSync::Pending, Some(5), now),
        ];
        let mut statuses = statuses;
        statuses[1].polled_since = Some(now);
        statuses[2].subscription_id = Some(crate::domain::SubscriptionId("sub-3".to_owned()));

        let report = report(&statuses, now);
        let text = render(&report);

        assert_eq!(
            (
                report.summary.complete,
                report.summary.failed,
                report.summary.pending
            ),
            (2, 1, 1)
        );
        assert_eq!(report.summary.lag_seconds, Some(70));
        assert_eq!(report.summary.drift_repaired, 8);
        assert_eq!(report.summary.polled, 1);
        assert_eq!(
            report
                .rooms
                .iter()
                .map(|room| room.notifications)
                .collect::<Vec<_>>(),
            vec!["-", "poll", "stream", "-"]
        );
        assert!(
            text.contains("1 polled for want of a streaming connection"),
            "{text}"
        );
        assert!(text.contains("failed (mailbox not found)"), "{text}");
        assert!(text.contains("4 rooms, 4 enabled: 2 complete"), "{text}");
    }
}
