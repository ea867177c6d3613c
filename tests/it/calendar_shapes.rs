//! Calendar shapes end to end: every recurrence pattern, exceptions, deleted
//! occurrences, series edits, time zones, all-day meetings, moves, cancellations and
//! unknown organizers, each compared with the simulator's expanded truth.

use std::time::Duration;

use booking_sync::checker::{compare_room, Convergence};
use booking_sync::domain::MailboxAddress;
use booking_sync::recurrence::{DaySelector, Pattern, RangeEnd, Recurrence, WeekIndex};
use booking_sync::sim::{AppointmentPatch, DeleteMode, NewAppointment};
use booking_sync::store::{MeetingRow, MeetingStatus};
use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::support::app::{TestApp, TestOptions};

const CONVERGE: Duration = Duration::from_secs(30);
const ROOM: &str = "room-001@contoso.example";
const OTHER_ROOM: &str = "room-002@contoso.example";
const ORGANIZER: &str = "user-001@contoso.example";

async fn app() -> TestApp {
    TestApp::spawn(TestOptions {
        rooms: 2,
        users: 2,
        queue_capacity: 16,
        ..TestOptions::default()
    })
    .await
}

/// A local wall-clock time in `zone`, `days` from today, as an instant.
fn local(zone: Tz, days: i64, hour: u32) -> DateTime<Utc> {
    let date = (Utc::now() + Span::days(days))
        .with_timezone(&zone)
        .date_naive();
    at_local(zone, date, hour)
}

fn at_local(zone: Tz, date: NaiveDate, hour: u32) -> DateTime<Utc> {
    zone.from_local_datetime(&date.and_time(NaiveTime::from_hms_opt(hour, 0, 0).expect("time")))
        .single()
        .expect("an unambiguous local time")
        .with_timezone(&Utc)
}

fn series(
    subject: &str,
    start: DateTime<Utc>,
    zone: Tz,
    pattern: Pattern,
    end: RangeEnd,
) -> NewAppointment {
    NewAppointment {
        subject: subject.to_owned(),
        start,
        end: start + Span::hours(1),
        is_all_day: false,
        organizer: ORGANIZER.to_owned(),
        location: None,
        attendees: Vec::new(),
        time_zone: Some(zone.name().to_owned()),
        recurrence: Some(Recurrence {
            pattern,
            start_date: start.with_timezone(&zone).date_naive(),
            end,
        }),
        uid: None,
    }
}

fn single(subject: &str, start: DateTime<Utc>) -> NewAppointment {
    NewAppointment {
        subject: subject.to_owned(),
        start,
        end: start + Span::hours(1),
        is_all_day: false,
        organizer: ORGANIZER.to_owned(),
        location: None,
        attendees: Vec::new(),
        time_zone: None,
        recurrence: None,
        uid: None,
    }
}

fn window(app: &TestApp) -> (DateTime<Utc>, DateTime<Utc>) {
    let now = Utc::now();
    (
        now - Span::days(i64::from(app.config.sync.window_past_days)),
        now + Span::days(i64::from(app.config.sync.window_future_days)),
    )
}

async fn rows_of(app: &TestApp, room: &str, uid: &str) -> Vec<MeetingRow> {
    let room = app
        .store
        .enabled_rooms()
        .await
        .expect("rooms")
        .into_iter()
        .find(|r| r.email == MailboxAddress::new(room))
        .expect("room exists");
    let mut rows: Vec<MeetingRow> = app
        .store
        .meetings(room.id)
        .await
        .expect("meetings")
        .into_iter()
        .filter(|row| row.exchange_uid == uid)
        .collect();
    rows.sort_by_key(|row| row.starts_at);
    rows
}

/// Compares one meeting's rows in `room` with the simulator's truth.
async fn compare_uid(app: &TestApp, room: &str, uid: &str) -> Convergence {
    let window = window(app);
    let truth: Vec<_> = app
        .control
        .appointments(room, window.0, window.1)
        .expect("truth")
        .into_iter()
        .filter(|entry| entry.uid == uid)
        .collect();
    let rows = rows_of(app, room, uid).await;
    compare_room(&truth, &rows, window)
}

/// Waits until the rows of `uid` match the truth and returns them.
async fn converged_rows(app: &TestApp, room: &str, uid: &str) -> Vec<MeetingRow> {
    let started = tokio::time::Instant::now();
    loop {
        let result = compare_uid(app, room, uid).await;
        if result.converged() && result.expected > 0 {
            break;
        }
        if started.elapsed() >= CONVERGE {
            let window = window(app);
            let truth: Vec<_> = app
                .control
                .appointments(room, window.0, window.1)
                .expect("truth")
                .into_iter()
                .filter(|entry| entry.uid == uid)
                .map(|e| (e.occurrence_start, e.start))
                .collect();
            let rows: Vec<_> = rows_of(app, room, uid)
                .await
                .into_iter()
                .map(|r| (r.occurrence_start, r.starts_at, r.status))
                .collect();
            panic!("{uid} in {room} did not converge: {result:?}\ntruth {truth:?}\nrows {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let whole = app.wait_converged(CONVERGE).await;
    assert!(whole.converged(), "{whole:?}");
    rows_of(app, room, uid).await
}

fn confirmed(rows: &[MeetingRow]) -> Vec<&MeetingRow> {
    rows.iter()
        .filter(|row| row.status == MeetingStatus::Confirmed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_series_has_one_row_per_day() {
    let app = app().await;
    let start = local(Tz::UTC, 1, 8);
    let created = app
        .control
        .create_appointment(
            ROOM,
            series(
                "Daily sync",
                start,
                Tz::UTC,
                Pattern::Daily { interval: 1 },
                RangeEnd::Numbered { count: 10 },
            ),
        )
        .expect("series");

    let rows = converged_rows(&app, ROOM, &created.uid).await;

    assert_eq!(confirmed(&rows).len(), 10);
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row.starts_at, start + Span::days(index as i64));
        assert_eq!(row.occurrence_start, Some(row.starts_at));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_series_on_several_days_has_a_row_on_each_of_them() {
    let app = app().await;
    let zone = Tz::Europe__Paris;
    let start = local(zone, 1, 10);
    let created = app
        .control
        .create_appointment(
            ROOM,
            series(
                "Team meeting",
                start,
                zone,
                Pattern::Weekly {
                    interval: 1,
                    days: vec![Weekday::Mon, Weekday::Wed, Weekday::Fri],
                    first_day_of_week: Weekday::Mon,
                },
                RangeEnd::Numbered { count: 9 },
            ),
        )
        .expect("series");

    let rows = converged_rows(&app, ROOM, &created.uid).await;

    assert_eq!(confirmed(&rows).len(), 9);
    for row in &rows {
        let weekday = row.starts_at.with_timezone(&zone).weekday();
        assert!(
            matches!(weekday, Weekday::Mon | Weekday::Wed | Weekday::Fri),
            "{row:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_series_by_date_and_by_weekday_land_on_the_right_days() {
    let app = app().await;
    let zone = Tz::America__New_York;
    let by_date = app
        .control
        .create_appointment(
            ROOM,
            series(
                "Month end review",
                local(zone, 1, 15),
                zone,
                Pattern::AbsoluteMonthly {
                    interval: 1,
                    day_of_month: 31,
                },
                RangeEnd::Numbered { count: 6 },
            ),
        )
        .expect("monthly by date");
    let by_weekday = app
        .control
        .create_appointment(
            ROOM,
            series(
                "Second Tuesday",
                local(zone, 1, 11),
                zone,
                Pattern::RelativeMonthly {
                    interval: 1,
                    days_of_week: DaySelector::Weekday(Weekday::Tue),
                    index: WeekIndex::Second,
                },
                RangeEnd::Numbered { count: 6 },
            ),
        )
        .expect("monthly by weekday");

    let weekday_rows = converged_rows(&app, ROOM, &by_weekday.uid).await;
    let date_rows = converged_rows(&app, ROOM, &by_date.uid).await;

    assert_eq!(confirmed(&date_rows).len(), 6);
    for row in &date_rows {
        let day = row.starts_at.with_timezone(&zone).date_naive();
        let next = day + Span::days(1);
        assert!(
            day.day() == 31 || next.month() != day.month(),
            "day 31 is clamped to the month's last day: {day}"
        );
    }
    assert_eq!(confirmed(&weekday_rows).len(), 6);
    for row in &weekday_rows {
        let day = row.starts_at.with_timezone(&zone).date_naive();
        assert_eq!(day.weekday(), Weekday::Tue);
        assert!((8..=14).contains(&day.day()), "second Tuesday: {day}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_keep_their_own_times_and_subject_and_deleted_occurrences_are_cancelled() {
    let app = app().await;
    let start = local(Tz::UTC, 1, 9);
    let created = app
        .control
        .create_appointment(
            ROOM,
            series(
                "Daily stand-up",
                start,
                Tz::UTC,
                Pattern::Daily { interval: 1 },
                RangeEnd::Numbered { count: 5 },
            ),
        )
        .expect("series");
    converged_rows(&app, ROOM, &created.uid).await;

    let moved = start + Span::days(1);
    app.control
        .update_appointment(
            ROOM,
            &created.uid,
            AppointmentPatch {
                subject: Some("Stand-up (late)".to_owned()),
                start: Some(moved + Span::hours(4)),
                end: Some(moved + Span::hours(5)),
                occurrence_start: Some(moved),
                ..AppointmentPatch::default()
            },
        )
        .expect("exception");
    let deleted = start + Span::days(3);
    app.control
        .delete_appointment(ROOM, &created.uid, DeleteMode::Soft, Some(deleted))
        .expect("occurrence deleted");

    let rows = converged_rows(&app, ROOM, &created.uid).await;

    assert_eq!(rows.len(), 5, "{rows:?}");
    let exception = rows
        .iter()
        .find(|row| row.occurrence_start == Some(moved))
        .expect("exception row");
    assert_eq!(exception.subject, "Stand-up (late)");
    assert_eq!(exception.starts_at, moved + Span::hours(4));
    let gone = rows
        .iter()
        .find(|row| row.occurrence_start == Some(deleted))
        .expect("deleted occurrence row");
    assert_eq!(gone.status, MeetingStatus::Cancelled);
    assert_eq!(confirmed(&rows).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_series_adds_moves_and_cancels_occurrences() {
    let app = app().await;
    let start = local(Tz::UTC, 1, 9);
    let created = app
        .control
        .create_appointment(
            ROOM,
            series(
                "Planning",
                start,
                Tz::UTC,
                Pattern::Daily { interval: 2 },
                RangeEnd::Numbered { count: 4 },
            ),
        )
        .expect("series");
    converged_rows(&app, ROOM, &created.uid).await;

    let new_start = start + Span::hours(2);
    app.control
        .update_appointment(
            ROOM,
            &created.uid,
            AppointmentPatch {
                start: Some(new_start),
                end: Some(new_start + Span::minutes(30)),
                recurrence: Some(Recurrence {
                    pattern: Pattern::Daily { interval: 1 },
                    start_date: new_start.date_naive(),
                    end: RangeEnd::Numbered { count: 3 },
                }),
                ..AppointmentPatch::default()
            },
        )
        .expect("series edited");

    let rows = converged_rows(&app, ROOM, &created.uid).await;

    let live = confirmed(&rows);
    assert_eq!(live.len(), 3, "{rows:?}");
    for (index, row) in live.iter().enumerate() {
        assert_eq!(row.starts_at, new_start + Span::days(index as i64));
        assert_eq!(row.ends_at, row.starts_at + Span::minutes(30));
    }
    assert!(
        rows.iter()
            .filter(|row| row.status == MeetingStatus::Cancelled)
            .all(|row| !live
                .iter()
                .any(|l| l.occurrence_start == row.occurrence_start)),
        "the old occurrences are cancelled: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_ending_series_is_materialised_to_the_end_of_the_window() {
    let app = app().await;
    let start = local(Tz::UTC, 0, 23);
    let created = app
        .control
        .create_appointment(
            ROOM,
            series(
                "Weekly forever",
                start,
                Tz::UTC,
                Pattern::Weekly {
                    interval: 1,
                    days: vec![start.weekday()],
                    first_day_of_week: Weekday::Mon,
                },
                RangeEnd::NoEnd,
            ),
        )
        .expect("series");

    let rows = converged_rows(&app, ROOM, &created.uid).await;

    let (_, end) = window(&app);
    let last = rows.last().expect("rows").starts_at;
    assert!(
        end - last <= Span::days(8),
        "last row {last}, window end {end}"
    );
    assert!(rows.len() >= 52, "{} rows", rows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_day_meetings_in_a_non_utc_zone_span_local_midnights() {
    let app = app().await;
    let zone = Tz::Asia__Tokyo;
    let day = (Utc::now() + Span::days(3))
        .with_timezone(&zone)
        .date_naive();
    let start = at_local(zone, day, 0);
    let created = app
        .control
        .create_appointment(
            ROOM,
            NewAppointment {
                is_all_day: true,
                end: at_local(zone, day + Span::days(2), 0),
                time_zone: Some(zone.name().to_owned()),
                ..single("Offsite", start)
            },
        )
        .expect("all-day");

    let rows = converged_rows(&app, ROOM, &created.uid).await;

    assert_eq!(rows.len(), 1);
    assert!(rows[0].is_all_day);
    assert_eq!(rows[0].starts_at, start);
    assert_eq!(rows[0].starts_at.with_timezone(&zone).date_naive(), day);
    assert_eq!(rows[0].ends_at - rows[0].starts_at, Span::days(2));
}

/// The first daylight-saving change in Berlin at least two weeks from now.
fn next_dst_change() -> NaiveDate {
    let soon = Utc::now().date_naive() + Span::days(14);
    let last_sunday = |year: i32, month: u32| {
        let first_next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)
        }
        .expect("date");
        let mut day = first_next - Span::days(1);
        while day.weekday() != Weekday::Sun {
            day -= Span::days(1);
        }
        day
    };
    let year = soon.year();
    [
        last_sunday(year, 3),
        last_sunday(year, 10),
        last_sunday(year + 1, 3),
        last_sunday(year + 1, 10),
    ]
    .into_iter()
    .find(|day| *day > soon)
    .expect("a change within two years")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_crossing_a_dst_change_keeps_its_local_time() {
    let app = app().await;
    let zone = Tz::Europe__Berlin;
    let change = next_dst_change();
    let first = change - Span::days(7);
    let start = at_local(zone, first, 9);
    let created = app
        .control
        .create_appointment(
            ROOM,
            series(
                "Across the change",
                start,
                zone,
                Pattern::Daily { interval: 7 },
                RangeEnd::Numbered { count: 3 },
            ),
        )
        .expect("series");

    let rows = converged_rows(&app, ROOM, &created.uid).await;

    assert_eq!(rows.len(), 3);
    for (index, row) in rows.iter().enumerate() {
        let date = first + Span::days(7 * index as i64);
        assert_eq!(row.starts_at, at_local(zone, date, 9), "{row:?}");
        assert_eq!(
            row.starts_at.with_timezone(&zone).time(),
            NaiveTime::from_hms_opt(9, 0, 0).expect("time")
        );
    }
    assert_ne!(
        rows[0].starts_at.time(),
        rows[2].starts_at.time(),
        "the UTC time shifts by the DST change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_moved_to_another_room_is_cancelled_in_one_and_confirmed_in_the_other() {
    let app = app().await;
    let start = local(Tz::UTC, 2, 13);
    let created = app
        .control
        .create_appointment(ROOM, single("Moving", start))
        .expect("created");
    converged_rows(&app, ROOM, &created.uid).await;

    app.control
        .delete_appointment(ROOM, &created.uid, DeleteMode::Soft, None)
        .expect("left room A");
    app.control
        .create_appointment(
            OTHER_ROOM,
            NewAppointment {
                uid: Some(created.uid.clone()),
                ..single("Moving", start)
            },
        )
        .expect("entered room B");

    let in_b = converged_rows(&app, OTHER_ROOM, &created.uid).await;
    let in_a = rows_of(&app, ROOM, &created.uid).await;

    assert_eq!(in_a.len(), 1);
    assert_eq!(in_a[0].status, MeetingStatus::Cancelled);
    assert_eq!(in_b.len(), 1);
    assert_eq!(in_b[0].status, MeetingStatus::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_series_cancels_every_row() {
    let app = app().await;
    let start = local(Tz::UTC, 1, 16);
    let created = app
        .control
        .create_appointment(
            ROOM,
            series(
                "Cancelled soon",
                start,
                Tz::UTC,
                Pattern::Daily { interval: 1 },
                RangeEnd::Numbered { count: 3 },
            ),
        )
        .expect("series");
    converged_rows(&app, ROOM, &created.uid).await;

    app.control
        .cancel_appointment(ROOM, &created.uid)
        .expect("cancelled");

    let rows = converged_rows(&app, ROOM, &created.uid).await;

    assert_eq!(rows.len(), 3);
    assert!(rows
        .iter()
        .all(|row| row.status == MeetingStatus::Cancelled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_organizer_leaves_the_user_empty_and_is_counted() {
    let app = app().await;
    let created = app
        .control
        .create_appointment(
            ROOM,
            NewAppointment {
                organizer: "Stranger@Elsewhere.Example".to_owned(),
                ..single("Visitor", local(Tz::UTC, 2, 10))
            },
        )
        .expect("created");
    let known = app
        .control
        .create_appointment(
            ROOM,
            NewAppointment {
                organizer: "USER-002@contoso.example".to_owned(),
                ..single("Colleague", local(Tz::UTC, 2, 12))
            },
        )
        .expect("created");

    let stranger = converged_rows(&app, ROOM, &created.uid).await;
    let colleague = converged_rows(&app, ROOM, &known.uid).await;

    assert_eq!(stranger[0].organizer_user_id, None);
    assert_eq!(
        stranger[0].organizer_email.as_deref(),
        Some("stranger@elsewhere.example")
    );
    assert!(
        colleague[0].organizer_user_id.is_some(),
        "matched case-insensitively"
    );
    let statuses = app.store.room_statuses().await.expect("statuses");
    let room = statuses
        .iter()
        .find(|status| status.room.email == MailboxAddress::new(ROOM))
        .expect("room status");
    assert_eq!(room.unknown_organizers, 1);
}
