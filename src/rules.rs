//! Out-of-sync rules: when Exchange and the booking system disagree in a way the sync
//! cannot settle by itself.
//!
//! Each rule is a named, pure decision over one meeting's state before and after a
//! sync write, plus what the booking system attached to it (its services) and what
//! other rooms hold of the same meeting. A rule returns [`Issue`]s: whom to tell, which
//! Exchange version it is about (for deduplication), and whether the meeting's active
//! services must be flagged `needs_attention`.
//!
//! This module does not read or write anything: the store gathers the facts inside
//! the write transaction, calls [`evaluate`], and records what it returns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The named rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// An Exchange change moved a meeting that has active services.
    TimeChangedWithServices,
    /// The meeting moved to another room and had services.
    RoomChangedWithServices,
    /// The meeting was cancelled in Exchange while services were active.
    CancelledWithServices,
    /// A meeting the booking system created has no appointment in the room's calendar
    /// any more, or one at another time.
    BookingMissingInExchange,
    /// The organizer is not a known user by primary SMTP address.
    UnknownOrganizer,
}

impl Rule {
    /// Every rule, in a fixed order.
    pub const ALL: [Self; 5] = [
        Self::TimeChangedWithServices,
        Self::RoomChangedWithServices,
        Self::CancelledWithServices,
        Self::BookingMissingInExchange,
        Self::UnknownOrganizer,
    ];

    /// The rule's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TimeChangedWithServices => "time_changed_with_services",
            Self::RoomChangedWithServices => "room_changed_with_services",
            Self::CancelledWithServices => "cancelled_with_services",
            Self::BookingMissingInExchange => "booking_missing_in_exchange",
            Self::UnknownOrganizer => "unknown_organizer",
        }
    }

    /// Parses a stored rule name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|rule| rule.as_str() == text)
    }
}

/// One meeting row as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingState {
    /// Row id.
    pub id: i64,
    /// Room row id.
    pub room_id: i64,
    /// iCalendar UID.
    pub uid: String,
    /// Original start of a series occurrence.
    pub occurrence_start: Option<DateTime<Utc>>,
    /// Subject line.
    pub subject: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Organizer's address, when known.
    pub organizer_email: Option<String>,
    /// Whether the organizer is a known user.
    pub organizer_known: bool,
    /// Whether the meeting is cancelled.
    pub cancelled: bool,
    /// Whether the booking system owns the row (`source = 'booking'`).
    pub from_booking: bool,
    /// Exchange change key of the version the row holds.
    pub change_key: Option<String>,
}

/// What Exchange holds for a booking-owned meeting (whose row keeps its own times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeCopy {
    /// Nothing was said about it in this write.
    Unchanged,
    /// The appointment is there, at these times.
    At {
        /// Start in Exchange.
        starts_at: DateTime<Utc>,
        /// End in Exchange.
        ends_at: DateTime<Utc>,
    },
    /// The appointment left the room's calendar.
    Removed,
    /// The room's first full sync ended without ever seeing it.
    NeverSeen,
}

/// The same meeting (UID and occurrence) in another room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherRoomCopy {
    /// Its row.
    pub meeting: MeetingState,
    /// Its services that are active or already flagged.
    pub services: u32,
}

/// Everything the rules look at for one meeting row touched by a write.
#[derive(Debug, Clone)]
pub struct MeetingChange {
    /// The row before the write (`None`: inserted).
    pub before: Option<MeetingState>,
    /// The row after the write.
    pub after: MeetingState,
    /// For booking-owned rows: what Exchange holds.
    pub exchange: ExchangeCopy,
    /// The row's services with status `active`.
    pub active_services: u32,
    /// Copies of the meeting in other rooms.
    pub other_rooms: Vec<OtherRoomCopy>,
}

/// Who is told about an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The meeting's organizer (falls back to the fallback owner when unknown).
    Organizer(Option<String>),
    /// The configured fallback owner.
    FallbackOwner,
}

/// One out-of-sync finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The rule that found it.
    pub rule: Rule,
    /// The meeting it is about (for a room change: the row in the room left behind).
    pub meeting: MeetingState,
    /// The meeting as it is now, when it differs from `meeting` (the row in the new room).
    pub now: Option<MeetingState>,
    /// Identifies the Exchange version the issue is about; with the meeting and the
    /// rule it makes the dedupe key.
    pub version: String,
    /// Whom to tell.
    pub audience: Audience,
    /// Whether the services of `meeting` are set to `needs_attention`.
    pub flag_services: bool,
}

impl Issue {
    /// The dedupe key: (meeting, rule, Exchange version). Unknown organizers are keyed
    /// per series, so a series of a hundred occurrences is one issue, not a hundred.
    pub fn dedupe_key(&self) -> String {
        let meeting = &self.meeting;
        let occurrence = match (self.rule, meeting.occurrence_start) {
            (Rule::UnknownOrganizer, _) | (_, None) => "-".to_owned(),
            (_, Some(start)) => start.to_rfc3339(),
        };
        format!(
            "{}|{}|{}|{}|{}",
            meeting.room_id,
            meeting.uid,
            occurrence,
            self.rule.as_str(),
            self.version
        )
    }
}

/// Runs every rule over one changed meeting row.
pub fn evaluate(change: &MeetingChange) -> Vec<Issue> {
    let mut issues = Vec::new();
    issues.extend(time_changed_with_services(change));
    issues.extend(room_changed_with_services(change));
    issues.extend(cancelled_with_services(change));
    issues.extend(booking_missing_in_exchange(change));
    issues.extend(unknown_organizer(change));
    issues
}

fn organizer_of(meeting: &MeetingState) -> Audience {
    Audience::Organizer(meeting.organizer_email.clone())
}

fn version_of(meeting: &MeetingState) -> String {
    meeting.change_key.clone().unwrap_or_default()
}

fn time_changed_with_services(change: &MeetingChange) -> Option<Issue> {
    let before = change.before.as_ref()?;
    let after = &change.after;
    let moved = before.starts_at != after.starts_at || before.ends_at != after.ends_at;
    if !moved || after.cancelled || after.from_booking || change.active_services == 0 {
        return None;
    }
    Some(Issue {
        rule: Rule::TimeChangedWithServices,
        meeting: before.clone(),
        now: Some(after.clone()),
        version: version_of(after),
        audience: organizer_of(after),
        flag_services: true,
    })
}

/// A new row whose meeting another room held with services and has cancelled: the
/// meeting moved here. A copy still confirmed elsewhere is a meeting that books two
/// rooms, not a move; if that copy is cancelled later, `cancelled_with_services` sees
/// this room's copy and reports the move.
fn room_changed_with_services(change: &MeetingChange) -> Option<Issue> {
    let after = &change.after;
    let was_confirmed = change
        .before
        .as_ref()
        .is_some_and(|before| !before.cancelled);
    if after.cancelled || was_confirmed || after.from_booking {
        return None;
    }
    let left = change.other_rooms.iter().find(|copy| {
        copy.services > 0 && copy.meeting.cancelled && copy.meeting.room_id != after.room_id
    })?;
    Some(Issue {
        rule: Rule::RoomChangedWithServices,
        meeting: left.meeting.clone(),
        now: Some(after.clone()),
        version: version_of(after),
        audience: organizer_of(after),
        flag_services: true,
    })
}

fn cancelled_with_services(change: &MeetingChange) -> Option<Issue> {
    let before = change.before.as_ref()?;
    let after = &change.after;
    if before.cancelled || !after.cancelled || after.from_booking || change.active_services == 0 {
        return None;
    }
    let moved_elsewhere = change
        .other_rooms
        .iter()
        .any(|copy| !copy.meeting.cancelled && copy.meeting.room_id != after.room_id);
    let rule = if moved_elsewhere {
        Rule::RoomChangedWithServices
    } else {
        Rule::CancelledWithServices
    };
    let now = change
        .other_rooms
        .iter()
        .find(|copy| moved_elsewhere && !copy.meeting.cancelled)
        .map(|copy| copy.meeting.clone());
    Some(Issue {
        rule,
        meeting: after.clone(),
        now,
        version: version_of(after),
        audience: organizer_of(after),
        flag_services: true,
    })
}

fn booking_missing_in_exchange(change: &MeetingChange) -> Option<Issue> {
    let after = &change.after;
    if !after.from_booking || after.cancelled {
        return None;
    }
    let version = match change.exchange {
        ExchangeCopy::Unchanged => return None,
        ExchangeCopy::At { starts_at, ends_at } => {
            if starts_at == after.starts_at && ends_at == after.ends_at {
                return None;
            }
            format!("at:{}", version_of(after))
        }
        ExchangeCopy::Removed => "removed".to_owned(),
        ExchangeCopy::NeverSeen => "never_seen".to_owned(),
    };
    Some(Issue {
        rule: Rule::BookingMissingInExchange,
        meeting: after.clone(),
        now: None,
        version,
        audience: organizer_of(after),
        flag_services: false,
    })
}

fn unknown_organizer(change: &MeetingChange) -> Option<Issue> {
    let after = &change.after;
    if after.from_booking || after.cancelled || after.organizer_known {
        return None;
    }
    let same_organizer = change
        .before
        .as_ref()
        .is_some_and(|before| before.organizer_email == after.organizer_email && !before.cancelled);
    if same_organizer {
        return None;
    }
    Some(Issue {
        rule: Rule::UnknownOrganizer,
        meeting: after.clone(),
        now: None,
        version: after
            .organizer_email
            .clone()
            .unwrap_or_else(|| "none".to_owned()),
        audience: Audience::FallbackOwner,
        flag_services: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: u32) -> DateTime<Utc> {
        format!("2030-05-06T{hour:02}:00:00Z").parse().unwrap()
    }

    fn meeting() -> MeetingState {
        MeetingState {
            id: 1,
            room_id: 10,
            uid: "uid-1".into(),
            occurrence_start: None,
            subject: "Planning".into(),
            starts_at: at(9),
            ends_at: at(10),
            organizer_email: Some("ann@contoso.example".into()),
            organizer_known: true,
            cancelled: false,
            from_booking: false,
            change_key: Some("ck2".into()),
        }
    }

    fn change(before: Option<MeetingState>, after: MeetingState, services: u32) -> MeetingChange {
        MeetingChange {
            before,
            after,
            exchange: ExchangeCopy::Unchanged,
            active_services: services,
            other_rooms: Vec::new(),
        }
    }

    fn rules(change: &MeetingChange) -> Vec<Rule> {
        evaluate(change)
            .into_iter()
            .map(|issue| issue.rule)
            .collect()
    }

    #[test]
    fn a_moved_meeting_with_services_is_an_issue_and_without_is_not() {
        let mut after = meeting();
        after.starts_at = at(11);
        after.ends_at = at(12);

        assert_eq!(
            rules(&change(Some(meeting()), after.clone(), 1)),
            vec![Rule::TimeChangedWithServices]
        );
        assert!(rules(&change(Some(meeting()), after, 0)).is_empty());
    }

    #[test]
    fn a_cancellation_is_a_room_change_when_another_room_holds_the_meeting() {
        let mut after = meeting();
        after.cancelled = true;
        let mut elsewhere = meeting();
        elsewhere.room_id = 11;
        let mut moved = change(Some(meeting()), after.clone(), 2);
        moved.other_rooms.push(OtherRoomCopy {
            meeting: elsewhere,
            services: 0,
        });

        assert_eq!(
            rules(&change(Some(meeting()), after, 2)),
            vec![Rule::CancelledWithServices]
        );
        assert_eq!(rules(&moved), vec![Rule::RoomChangedWithServices]);
    }

    #[test]
    fn an_unknown_organizer_is_reported_once_per_organizer_and_series() {
        let mut after = meeting();
        after.organizer_known = false;
        let mut next = after.clone();
        next.change_key = Some("ck3".into());
        next.occurrence_start = Some(at(9));

        let first = evaluate(&change(None, after.clone(), 0));
        let again = evaluate(&change(Some(after), next, 0));

        assert_eq!(first.len(), 1);
        assert_eq!(first[0].audience, Audience::FallbackOwner);
        assert!(again.is_empty());
    }

    #[test]
    fn a_booking_meeting_at_the_same_time_in_exchange_is_in_sync() {
        let mut booked = meeting();
        booked.from_booking = true;
        let mut same = change(Some(booked.clone()), booked.clone(), 0);
        same.exchange = ExchangeCopy::At {
            starts_at: at(9),
            ends_at: at(10),
        };
        let mut moved = same.clone();
        moved.exchange = ExchangeCopy::At {
            starts_at: at(13),
            ends_at: at(14),
        };

        assert!(rules(&same).is_empty());
        assert_eq!(rules(&moved), vec![Rule::BookingMissingInExchange]);
    }

    #[test]
    fn rule_names_round_trip() {
        for rule in Rule::ALL {
            assert_eq!(Rule::parse(rule.as_str()), Some(rule));
        }
    }
}
