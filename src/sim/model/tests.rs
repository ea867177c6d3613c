//! Unit tests of the calendar model.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{NaiveDate, Weekday};

use super::*;

fn model() -> Model {
    let mut model = Model::new(42);
    for (email, kind) in [
        ("room-a@contoso.example", MailboxKind::Room),
        ("room-b@contoso.example", MailboxKind::Room),
        ("user-a@contoso.example", MailboxKind::User),
    ] {
        model
            .add_mailbox(NewMailbox {
                email: email.into(),
                display_name: email.into(),
                kind,
                aliases: Vec::new(),
            })
            .unwrap();
    }
    model
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn meeting(start: &str, end: &str, zone: &str, recurrence: Option<Recurrence>) -> NewAppointment {
    NewAppointment {
        subject: "Meeting".into(),
        start: at(start),
        end: at(end),
        is_all_day: false,
        organizer: "user-a@contoso.example".into(),
        attendees: Vec::new(),
        time_zone: Some(zone.into()),
        recurrence,
        location: None,
        uid: None,
    }
}

fn rule(pattern: Pattern, start: &str, end: RangeEnd) -> Recurrence {
    Recurrence {
        pattern,
        start_date: start.parse::<NaiveDate>().unwrap(),
        end,
    }
}

fn starts(model: &Model, from: &str, to: &str) -> Vec<String> {
    model
        .truth("room-a@contoso.example", at(from), at(to))
        .unwrap()
        .iter()
        .map(|entry| entry.start.format("%Y-%m-%dT%H:%MZ").to_string())
        .collect()
}

#[test]
fn weekly_series_keeps_local_time_across_daylight_saving() {
    let mut model = model();
    let weekly = rule(
        Pattern::Weekly {
            interval: 2,
            days: vec![Weekday::Mon],
            first_day_of_week: Weekday::Mon,
        },
        "2030-03-18",
        RangeEnd::Numbered { count: 3 },
    );
    model
        .create(
            "room-a@contoso.example",
            meeting(
                "2030-03-18T08:00:00Z",
                "2030-03-18T09:00:00Z",
                "Europe/Berlin",
                Some(weekly),
            ),
        )
        .unwrap();

    let starts = starts(&model, "2030-03-01T00:00:00Z", "2030-06-01T00:00:00Z");

    assert_eq!(
        starts,
        [
            "2030-03-18T08:00Z",
            "2030-04-01T07:00Z",
            "2030-04-15T07:00Z"
        ]
    );
}

#[test]
fn monthly_series_on_the_31st_falls_back_to_the_last_day_of_short_months() {
    let mut model = model();
    let monthly = rule(
        Pattern::AbsoluteMonthly {
            interval: 1,
            day_of_month: 31,
        },
        "2030-01-31",
        RangeEnd::EndDate {
            date: "2030-03-31".parse().unwrap(),
        },
    );
    model
        .create(
            "room-a@contoso.example",
            meeting(
                "2030-01-31T10:00:00Z",
                "2030-01-31T11:00:00Z",
                "UTC",
                Some(monthly),
            ),
        )
        .unwrap();

    let starts = starts(&model, "2030-01-01T00:00:00Z", "2030-12-31T00:00:00Z");

    assert_eq!(
        starts,
        [
            "2030-01-31T10:00Z",
            "2030-02-28T10:00Z",
            "2030-03-31T10:00Z"
        ]
    );
}

#[test]
fn daily_series_with_deleted_occurrence_and_exception_shows_in_the_truth() {
    let mut model = model();
    let daily = rule(
        Pattern::Daily { interval: 1 },
        "2030-05-01",
        RangeEnd::Numbered { count: 3 },
    );
    let (series, _) = model
        .create(
            "room-a@contoso.example",
            meeting(
                "2030-05-01T09:00:00Z",
                "2030-05-01T10:00:00Z",
                "UTC",
                Some(daily),
            ),
        )
        .unwrap();
    model
        .delete(
            "room-a@contoso.example",
            &series.uid,
            DeleteMode::Soft,
            Some(at("2030-05-02T09:00:00Z")),
        )
        .unwrap();
    let patch = AppointmentPatch {
        start: Some(at("2030-05-03T15:00:00Z")),
        end: Some(at("2030-05-03T16:00:00Z")),
        occurrence_start: Some(at("2030-05-03T09:00:00Z")),
        ..AppointmentPatch::default()
    };
    model
        .update("room-a@contoso.example", &series.uid, patch, false)
        .unwrap();

    let truth = model
        .truth(
            "room-a@contoso.example",
            at("2030-05-01T00:00:00Z"),
            at("2030-05-05T00:00:00Z"),
        )
        .unwrap();

    assert_eq!(truth.len(), 2);
    assert_eq!(truth[1].occurrence_start, Some(at("2030-05-03T09:00:00Z")));
    assert_eq!(truth[1].start, at("2030-05-03T15:00:00Z"));
}

#[test]
fn sync_state_of_another_mailbox_or_tampered_is_rejected() {
    let mut model = model();
    model
        .create(
            "room-a@contoso.example",
            meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None),
        )
        .unwrap();
    let state = model.sync(0, None, 10, &[]).unwrap().sync_state;
    let mut tampered = BASE64.decode(&state).unwrap();
    tampered[12] ^= 1;

    assert!(model.sync(0, Some(&state), 10, &[]).is_ok());
    assert!(model.sync(1, Some(&state), 10, &[]).is_err());
    assert!(model
        .sync(0, Some(&BASE64.encode(tampered)), 10, &[])
        .is_err());
    assert!(model.sync(0, Some("%%%"), 10, &[]).is_err());
}

#[test]
fn an_item_created_and_deleted_since_the_state_is_not_reported() {
    let mut model = model();
    let state = model.sync(0, None, 10, &[]).unwrap().sync_state;
    let (created, _) = model
        .create(
            "room-a@contoso.example",
            meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None),
        )
        .unwrap();
    model
        .delete(
            "room-a@contoso.example",
            &created.uid,
            DeleteMode::Hard,
            None,
        )
        .unwrap();

    let page = model.sync(0, Some(&state), 10, &[]).unwrap();

    assert!(page.changes.is_empty());
    assert!(page.includes_last_item_in_range);
}

#[test]
fn every_change_gives_a_new_change_key_and_a_later_last_modified_time() {
    let mut model = model();
    let (created, _) = model
        .create(
            "room-a@contoso.example",
            meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None),
        )
        .unwrap();
    let before = model.lookup(&created.item_id).unwrap().1;

    let (updated, events) = model
        .update(
            "room-a@contoso.example",
            &created.uid,
            AppointmentPatch::default(),
            true,
        )
        .unwrap();
    let after = model.lookup(&created.item_id).unwrap().1;

    assert_ne!(created.change_key, updated.change_key);
    assert!(after.last_modified > before.last_modified);
    let kinds: Vec<EventKind> = events.events.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Modified,
            EventKind::Modified,
            EventKind::Modified
        ]
    );
}

#[test]
fn ids_decode_and_tampered_ids_are_malformed() {
    let mut model = model();
    let (created, _) = model
        .create(
            "room-b@contoso.example",
            meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None),
        )
        .unwrap();
    let mut bytes = BASE64.decode(&created.item_id).unwrap();
    bytes[15] ^= 0x10;

    let parts = model.decode_item_id(&created.item_id).unwrap();

    assert_eq!(parts.mailbox, 1);
    assert_eq!(
        model.lookup(&BASE64.encode(bytes)).unwrap_err(),
        LookupError::Malformed
    );
    assert_eq!(
        model.lookup("not an id").unwrap_err(),
        LookupError::Malformed
    );
}

#[test]
fn the_same_seed_mints_the_same_uids() {
    let mut first = model();
    let mut second = model();
    let appointment = meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None);

    let a = first
        .create("room-a@contoso.example", appointment.clone())
        .unwrap()
        .0;
    let b = second
        .create("room-a@contoso.example", appointment)
        .unwrap()
        .0;

    assert_eq!(a.uid, b.uid);
    assert_eq!(a.item_id, b.item_id);
    assert!(a.uid.starts_with("040000008200E00074C5B7101A82E008"));
}

#[test]
fn all_day_series_ends_at_local_midnight_across_daylight_saving() {
    let mut model = model();
    let daily = rule(
        Pattern::Daily { interval: 1 },
        "2030-03-30",
        RangeEnd::Numbered { count: 2 },
    );
    let mut appointment = meeting(
        "2030-03-29T23:00:00Z",
        "2030-03-30T23:00:00Z",
        "Europe/Berlin",
        Some(daily),
    );
    appointment.is_all_day = true;
    model.create("room-a@contoso.example", appointment).unwrap();

    let truth = model
        .truth(
            "room-a@contoso.example",
            at("2030-03-29T00:00:00Z"),
            at("2030-04-02T00:00:00Z"),
        )
        .unwrap();

    let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        truth.iter().map(|entry| (entry.start, entry.end)).collect();
    assert_eq!(
        spans,
        [
            (at("2030-03-29T23:00:00Z"), at("2030-03-30T23:00:00Z")),
            // 31 March 2030 is the day clocks go forward: 23 hours long.
            (at("2030-03-30T23:00:00Z"), at("2030-03-31T22:00:00Z")),
        ]
    );
}

#[test]
fn relative_patterns_pick_the_indexed_day_of_the_month() {
    let mut model = model();
    let second_tuesday = rule(
        Pattern::RelativeMonthly {
            interval: 1,
            days_of_week: crate::recurrence::DaySelector::Weekday(Weekday::Tue),
            index: crate::recurrence::WeekIndex::Second,
        },
        "2030-01-01",
        RangeEnd::Numbered { count: 3 },
    );
    let last_weekday = rule(
        Pattern::RelativeYearly {
            month: 11,
            days_of_week: crate::recurrence::DaySelector::Weekdays,
            index: crate::recurrence::WeekIndex::Last,
        },
        "2030-01-01",
        RangeEnd::Numbered { count: 2 },
    );
    model
        .create(
            "room-a@contoso.example",
            meeting(
                "2030-01-08T12:00:00Z",
                "2030-01-08T13:00:00Z",
                "UTC",
                Some(second_tuesday),
            ),
        )
        .unwrap();
    model
        .create(
            "room-a@contoso.example",
            meeting(
                "2030-11-29T08:00:00Z",
                "2030-11-29T09:00:00Z",
                "UTC",
                Some(last_weekday),
            ),
        )
        .unwrap();

    let starts = starts(&model, "2030-01-01T00:00:00Z", "2032-01-01T00:00:00Z");

    assert_eq!(
        starts,
        [
            "2030-01-08T12:00Z",
            "2030-02-12T12:00Z",
            "2030-03-12T12:00Z",
            "2030-11-29T08:00Z",
            "2031-11-28T08:00Z",
        ]
    );
}

#[test]
fn an_exception_keeps_its_own_version_when_the_master_changes_later() {
    let mut model = model();
    let daily = rule(
        Pattern::Daily { interval: 1 },
        "2030-05-01",
        RangeEnd::Numbered { count: 3 },
    );
    let (series, _) = model
        .create(
            "room-a@contoso.example",
            meeting(
                "2030-05-01T09:00:00Z",
                "2030-05-01T10:00:00Z",
                "UTC",
                Some(daily),
            ),
        )
        .unwrap();
    let exception = AppointmentPatch {
        subject: Some("Moved".to_owned()),
        occurrence_start: Some(at("2030-05-02T09:00:00Z")),
        ..AppointmentPatch::default()
    };
    model
        .update("room-a@contoso.example", &series.uid, exception, false)
        .unwrap();
    let listed = |model: &Model| {
        let (_, master) = model.lookup(&series.item_id).unwrap();
        master.modified_occurrences[0].clone()
    };
    let first = listed(&model);
    let (_, before) = model.lookup(&first.item_id).unwrap();

    let retitle = AppointmentPatch {
        subject: Some("Renamed series".to_owned()),
        ..AppointmentPatch::default()
    };
    model
        .update("room-a@contoso.example", &series.uid, retitle, false)
        .unwrap();
    let (_, master) = model.lookup(&series.item_id).unwrap();
    let (_, after) = model.lookup(&first.item_id).unwrap();

    assert_eq!(
        first.change_key.as_deref(),
        Some(before.change_key.as_str())
    );
    assert_ne!(before.change_key, master.change_key);
    assert_eq!(
        (after.change_key.as_str(), after.last_modified),
        (before.change_key.as_str(), before.last_modified)
    );
    assert!(master.last_modified > after.last_modified);
    assert_eq!(listed(&model).change_key, first.change_key);
}
