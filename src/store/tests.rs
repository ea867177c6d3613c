//! Store tests against the real PostgreSQL server, one fresh database per test.

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};

use super::test_db::TestDb;
use super::*;
use crate::domain::{SubscriptionId, SyncState};

/// A fixed instant plus `hours`.
fn at(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 4, 8, 0, 0)
        .single()
        .expect("valid date")
        + ChronoDuration::hours(hours)
}

fn meeting(
    occurrence_start: Option<DateTime<Utc>>,
    start: DateTime<Utc>,
    subject: &str,
) -> MeetingWrite {
    MeetingWrite {
        occurrence_start,
        subject: subject.to_owned(),
        starts_at: start,
        ends_at: start + ChronoDuration::minutes(30),
        is_all_day: false,
        organizer_email: Some("Organizer@Example.com".to_owned()),
        status: MeetingStatus::Confirmed,
        exception: None,
    }
}

/// A single meeting at hour 1 as item `id`, version (`change_key`, `modified`).
fn single(id: &str, change_key: &str, modified: i64, subject: &str) -> ItemWrite {
    ItemWrite {
        item_id: ItemId::from(id),
        change_key: ChangeKey::from(change_key),
        last_modified: at(modified),
        uid: format!("uid-{id}"),
        window: (at(-24), at(24 * 365)),
        meetings: vec![meeting(None, at(1), subject)],
    }
}

/// A daily series as item `id` with occurrences on the given days (hour 9 each).
fn series(id: &str, change_key: &str, modified: i64, days: &[i64]) -> ItemWrite {
    ItemWrite {
        item_id: ItemId::from(id),
        change_key: ChangeKey::from(change_key),
        last_modified: at(modified),
        uid: format!("uid-{id}"),
        window: (at(-24), at(24 * 30)),
        meetings: days
            .iter()
            .map(|day| {
                let start = at(24 * day + 1);
                meeting(Some(start), start, "Stand-up")
            })
            .collect(),
    }
}

fn batch(room: RoomId, items: Vec<ItemWrite>) -> MailboxBatch {
    MailboxBatch {
        room_id: room,
        expected_sync_state: None,
        new_sync_state: None,
        items,
        removed_items: Vec::new(),
        completes_initial_sync: false,
        origin: ChangeOrigin::Stream,
    }
}

async fn room(db: &TestDb) -> RoomId {
    db.store
        .upsert_room(
            &MailboxAddress::new("room.one@example.com"),
            "Room One",
            true,
        )
        .await
        .expect("room created")
}

async fn only_meeting(db: &TestDb, room: RoomId) -> MeetingRow {
    let mut rows = db.store.meetings(room).await.expect("meetings read");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    rows.remove(0)
}

#[tokio::test]
async fn migrating_twice_applies_everything_once() {
    let db = TestDb::empty().await;

    let first = db.store.migrate().await.expect("first migrate");
    let second = db.store.migrate().await.expect("second migrate");

    assert_eq!(
        first,
        vec![
            "V1__booking_tables",
            "V2__sync_state",
            "V3__resync_notes",
            "V4__services_issues_audit",
            "V5__digest_claims",
            "V6__plan_issue_scope",
            "V7__polled_rooms",
            "V8__exception_versions"
        ]
    );
    assert!(second.is_empty(), "{second:?}");
    assert_eq!(
        db.store.schema_status().await.expect("status"),
        SchemaStatus::Current
    );
}

#[tokio::test]
async fn an_empty_database_is_outdated_and_refused() {
    let db = TestDb::empty().await;

    let status = db.store.schema_status().await.expect("status");
    let required = db.store.require_current_schema().await;

    assert_eq!(
        status,
        SchemaStatus::Outdated {
            pending: vec![
                "V1__booking_tables".to_owned(),
                "V2__sync_state".to_owned(),
                "V3__resync_notes".to_owned(),
                "V4__services_issues_audit".to_owned(),
                "V5__digest_claims".to_owned(),
                "V6__plan_issue_scope".to_owned(),
                "V7__polled_rooms".to_owned(),
                "V8__exception_versions".to_owned(),
            ]
        }
    );
    assert!(matches!(required, Err(StoreError::SchemaOutdated { pending }) if pending.len() == 8));
}

#[tokio::test]
async fn an_edited_applied_migration_stops_migrate() {
    let db = TestDb::migrated().await;
    db.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        .await;

    let migrated = db.store.migrate().await;
    let status = db.store.schema_status().await;

    assert!(
        matches!(migrated, Err(StoreError::SchemaConflict { name }) if name == "V1__booking_tables")
    );
    assert!(matches!(status, Err(StoreError::SchemaConflict { .. })));
}

#[tokio::test]
async fn a_new_meeting_is_inserted_with_every_field() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;

    let outcome = db
        .store
        .apply(&batch(room, vec![single("a", "ck1", 0, "Planning")]))
        .await
        .expect("applied");

    assert_eq!(
        outcome,
        ApplyOutcome {
            inserted: 1,
            ..ApplyOutcome::default()
        }
    );
    let row = only_meeting(&db, room).await;
    assert_eq!(row.room_id, room);
    assert_eq!(row.exchange_uid, "uid-a");
    assert_eq!(row.occurrence_start, None);
    assert_eq!(row.subject, "Planning");
    assert_eq!(
        (row.starts_at, row.ends_at),
        (at(1), at(1) + ChronoDuration::minutes(30))
    );
    assert_eq!(
        row.organizer_email.as_deref(),
        Some("Organizer@Example.com")
    );
    assert_eq!(row.organizer_user_id, None);
    assert_eq!(row.status, MeetingStatus::Confirmed);
    assert_eq!(row.source, MeetingSource::Exchange);
    assert_eq!(row.exchange_item_id, Some(ItemId::from("a")));
    assert_eq!(row.exchange_change_key, Some(ChangeKey::from("ck1")));
    assert_eq!(row.exchange_last_modified, Some(at(0)));
    assert!(row.fetched_at.is_some());
    assert_eq!(db.store.meeting_count().await.expect("count"), 1);
}

#[tokio::test]
async fn a_newer_version_updates_the_row() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(room, vec![single("a", "ck1", 0, "Planning")]))
        .await
        .expect("v1");

    let outcome = db
        .store
        .apply(&batch(
            room,
            vec![single("a", "ck2", 1, "Planning (moved)")],
        ))
        .await
        .expect("v2");

    assert_eq!(
        outcome,
        ApplyOutcome {
            updated: 1,
            ..ApplyOutcome::default()
        }
    );
    let row = only_meeting(&db, room).await;
    assert_eq!(row.subject, "Planning (moved)");
    assert_eq!(row.exchange_change_key, Some(ChangeKey::from("ck2")));
}

#[tokio::test]
async fn replaying_the_same_version_changes_nothing() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    let write = batch(room, vec![single("a", "ck1", 0, "Planning")]);
    db.store.apply(&write).await.expect("first");
    let before = only_meeting(&db, room).await;

    let outcome = db.store.apply(&write).await.expect("replay");

    assert_eq!(
        outcome,
        ApplyOutcome {
            unchanged: 1,
            ..ApplyOutcome::default()
        }
    );
    assert_eq!(only_meeting(&db, room).await, before);
}

#[tokio::test]
async fn an_older_version_never_overwrites_a_newer_one() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(room, vec![single("a", "ck2", 5, "Newest")]))
        .await
        .expect("v2");

    let outcome = db
        .store
        .apply(&batch(room, vec![single("a", "ck1", 1, "Older")]))
        .await
        .expect("v1 late");

    assert_eq!(
        outcome,
        ApplyOutcome {
            stale_skipped: 1,
            ..ApplyOutcome::default()
        }
    );
    assert_eq!(only_meeting(&db, room).await.subject, "Newest");
}

#[tokio::test]
async fn an_equal_timestamp_with_another_change_key_is_written() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(room, vec![single("a", "ck1", 3, "First")]))
        .await
        .expect("first");

    let outcome = db
        .store
        .apply(&batch(room, vec![single("a", "ck1b", 3, "Same second")]))
        .await
        .expect("second");

    assert_eq!(
        outcome,
        ApplyOutcome {
            updated: 1,
            ..ApplyOutcome::default()
        }
    );
    assert_eq!(only_meeting(&db, room).await.subject, "Same second");
}

/// A series (`series_ck` at `series_modified`) whose one occurrence on day 1 is an
/// exception titled `subject`, in version (`exception_ck`, `exception_modified`).
fn series_with_exception(
    series_ck: &str,
    series_modified: i64,
    exception_ck: &str,
    exception_modified: i64,
    subject: &str,
) -> ItemWrite {
    let mut item = series("s", series_ck, series_modified, &[1]);
    item.meetings[0].subject = subject.to_owned();
    item.meetings[0].exception = Some(ExceptionVersion {
        change_key: ChangeKey::from(exception_ck),
        last_modified: at(exception_modified),
    });
    item
}

#[tokio::test]
async fn an_older_exception_never_overwrites_a_newer_one_whatever_its_master() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(
            room,
            vec![series_with_exception(
                "m2",
                4,
                "e2",
                4,
                "Moved to the boardroom",
            )],
        ))
        .await
        .expect("newer exception");

    // A lagging replica: the same master with the exception's older version, and
    // then a newer master that still carries the older exception.
    let same_master = db
        .store
        .apply(&batch(
            room,
            vec![series_with_exception("m2", 4, "e1", 2, "Stand-up (old)")],
        ))
        .await
        .expect("older exception, same master");
    let newer_master = db
        .store
        .apply(&batch(
            room,
            vec![series_with_exception("m3", 6, "e1", 2, "Stand-up (old)")],
        ))
        .await
        .expect("older exception, newer master");

    let skipped = ApplyOutcome {
        stale_skipped: 1,
        ..ApplyOutcome::default()
    };
    assert_eq!((same_master, newer_master), (skipped, skipped));
    let row = only_meeting(&db, room).await;
    assert_eq!(row.subject, "Moved to the boardroom");
    assert_eq!(row.exchange_change_key, Some(ChangeKey::from("m2")));
}

#[tokio::test]
async fn a_newer_exception_is_written_even_under_the_same_master_version() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(
            room,
            vec![series_with_exception("m1", 2, "e1", 2, "First title")],
        ))
        .await
        .expect("first exception");

    let same_second = db
        .store
        .apply(&batch(
            room,
            vec![series_with_exception("m1", 2, "e1b", 2, "Same second")],
        ))
        .await
        .expect("same time, other change key");
    let replay = db
        .store
        .apply(&batch(
            room,
            vec![series_with_exception("m1", 2, "e1b", 2, "Same second")],
        ))
        .await
        .expect("replay");
    let later = db
        .store
        .apply(&batch(
            room,
            vec![series_with_exception("m1", 2, "e2", 3, "Later title")],
        ))
        .await
        .expect("newer exception");

    let updated = ApplyOutcome {
        updated: 1,
        ..ApplyOutcome::default()
    };
    let unchanged = ApplyOutcome {
        unchanged: 1,
        ..ApplyOutcome::default()
    };
    assert_eq!((same_second, replay, later), (updated, unchanged, updated));
    assert_eq!(only_meeting(&db, room).await.subject, "Later title");
}

#[tokio::test]
async fn a_newer_master_without_the_exception_still_replaces_it() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(
            room,
            vec![series_with_exception("m1", 2, "e1", 3, "Exception")],
        ))
        .await
        .expect("exception");

    // The organizer reset the occurrence: the newer master lists no exception.
    let outcome = db
        .store
        .apply(&batch(room, vec![series("s", "m2", 5, &[1])]))
        .await
        .expect("reset occurrence");

    assert_eq!(outcome.updated, 1, "{outcome:?}");
    assert_eq!(only_meeting(&db, room).await.subject, "Stand-up");
}

#[tokio::test]
async fn a_removed_item_is_cancelled_and_cannot_come_back() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(room, vec![single("a", "ck1", 0, "Planning")]))
        .await
        .expect("created");
    let mut removal = batch(room, Vec::new());
    removal.removed_items = vec![ItemId::from("a")];

    let removed = db.store.apply(&removal).await.expect("removed");
    let late = db
        .store
        .apply(&batch(room, vec![single("a", "ck2", 9, "Late fetch")]))
        .await
        .expect("late fetch");

    assert_eq!(
        removed,
        ApplyOutcome {
            cancelled: 1,
            ..ApplyOutcome::default()
        }
    );
    assert_eq!(
        late,
        ApplyOutcome {
            stale_skipped: 1,
            ..ApplyOutcome::default()
        }
    );
    let row = only_meeting(&db, room).await;
    assert_eq!(row.status, MeetingStatus::Cancelled);
    assert_eq!(row.subject, "Planning");
}

#[tokio::test]
async fn a_series_that_lost_occurrences_cancels_them() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(room, vec![series("s", "ck1", 0, &[1, 2, 3, 40])]))
        .await
        .expect("series");

    // Day 2 is deleted from the series; day 40 lies outside the window and stays.
    let outcome = db
        .store
        .apply(&batch(room, vec![series("s", "ck2", 1, &[1, 3])]))
        .await
        .expect("shrunk series");
    let replay_of_old = db
        .store
        .apply(&batch(room, vec![series("s", "ck1", 0, &[1, 2, 3])]))
        .await
        .expect("old version again");

    assert_eq!(
        outcome,
        ApplyOutcome {
            updated: 2,
            cancelled: 1,
            ..ApplyOutcome::default()
        }
    );
    assert_eq!(replay_of_old.cancelled, 0);
    assert_eq!(replay_of_old.inserted + replay_of_old.updated, 0);
    let statuses: Vec<(DateTime<Utc>, MeetingStatus)> = db
        .store
        .meetings(room)
        .await
        .expect("rows")
        .into_iter()
        .map(|row| (row.starts_at, row.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (at(25), MeetingStatus::Confirmed),
            (at(49), MeetingStatus::Cancelled),
            (at(73), MeetingStatus::Confirmed),
            (at(24 * 40 + 1), MeetingStatus::Confirmed),
        ]
    );
}

#[tokio::test]
async fn a_moved_checkpoint_writes_nothing() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    let mut first = batch(room, Vec::new());
    first.new_sync_state = Some(SyncState::from("state-1"));
    db.store.apply(&first).await.expect("checkpoint stored");
    let mut computed_from_scratch = batch(room, vec![single("a", "ck1", 0, "Planning")]);
    computed_from_scratch.new_sync_state = Some(SyncState::from("state-x"));
    computed_from_scratch.completes_initial_sync = true;

    let result = db.store.apply(&computed_from_scratch).await;

    assert!(matches!(result, Err(StoreError::CheckpointMoved { room: moved }) if moved == room));
    assert_eq!(db.store.meeting_count().await.expect("count"), 0);
    assert_eq!(
        db.store.sync_state(room).await.expect("state"),
        Some(SyncState::from("state-1"))
    );
    let rooms = db.store.enabled_rooms().await.expect("rooms");
    assert_eq!(rooms[0].initial_sync, InitialSync::Pending);
}

#[tokio::test]
async fn a_matching_checkpoint_advances_with_the_rows() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    let mut next = batch(room, vec![single("a", "ck1", 0, "Planning")]);
    next.new_sync_state = Some(SyncState::from("state-1"));
    next.completes_initial_sync = true;

    db.store.apply(&next).await.expect("applied");
    let mut after = batch(room, Vec::new());
    after.expected_sync_state = Some(SyncState::from("state-1"));
    db.store
        .apply(&after)
        .await
        .expect("no new state keeps the old one");

    assert_eq!(
        db.store.sync_state(room).await.expect("state"),
        Some(SyncState::from("state-1"))
    );
    let rooms = db.store.enabled_rooms().await.expect("rooms");
    assert_eq!(rooms[0].initial_sync, InitialSync::Complete);
    db.store.reset_sync_state(room).await.expect("reset");
    assert_eq!(db.store.sync_state(room).await.expect("state"), None);
}

#[tokio::test]
async fn room_and_user_addresses_are_case_insensitive() {
    let db = TestDb::migrated().await;

    let first = db
        .store
        .upsert_room(&MailboxAddress::new("Room.A@Example.com"), "A", true)
        .await
        .expect("room");
    // The booking system may write mixed case itself.
    db.execute("INSERT INTO users (email, display_name) VALUES ('Pat@Example.COM', 'Pat')")
        .await;
    let again = db
        .store
        .upsert_room(
            &MailboxAddress::new("room.a@example.com"),
            "A renamed",
            false,
        )
        .await
        .expect("same room");
    let user = db
        .store
        .upsert_user(&MailboxAddress::new("pat@example.com"), "Pat Doe")
        .await
        .expect("same user");
    let found = db
        .store
        .set_room_sync_enabled(&MailboxAddress::new("ROOM.A@example.com"), true)
        .await
        .expect("enabled");
    let missing = db
        .store
        .set_room_sync_enabled(&MailboxAddress::new("nobody@example.com"), true)
        .await
        .expect("no such room");

    assert_eq!(first, again);
    assert!(found);
    assert!(!missing);
    let rooms = db.store.enabled_rooms().await.expect("rooms");
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].name, "A renamed");
    assert_eq!(rooms[0].email, MailboxAddress::new("room.a@example.com"));
    let other = db
        .store
        .upsert_user(&MailboxAddress::new("PAT@example.com"), "Pat")
        .await
        .expect("user again");
    assert_eq!(user, other);
}

#[tokio::test]
async fn organizers_are_linked_to_known_users() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(
            room,
            vec![single("early", "ck1", 0, "Before the user")],
        ))
        .await
        .expect("early meeting");

    let user = db
        .store
        .upsert_user(&MailboxAddress::new("organizer@example.com"), "Org")
        .await
        .expect("user");
    db.store
        .apply(&batch(
            room,
            vec![single("late", "ck1", 0, "After the user")],
        ))
        .await
        .expect("late meeting");

    let links: Vec<Option<UserId>> = db
        .store
        .meetings(room)
        .await
        .expect("rows")
        .into_iter()
        .map(|row| row.organizer_user_id)
        .collect();
    assert_eq!(links, vec![Some(user), Some(user)]);
}

#[tokio::test]
async fn booking_rows_keep_their_content_and_get_exchange_links() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.execute(&format!(
        "INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, source) \
         VALUES ({}, 'uid-a', 'Booked in the app', '{}', '{}', 'booking')",
        room.0,
        at(1).to_rfc3339(),
        at(2).to_rfc3339()
    ))
    .await;

    let outcome = db
        .store
        .apply(&batch(
            room,
            vec![single("a", "ck1", 0, "Exchange subject")],
        ))
        .await
        .expect("applied");

    assert_eq!(outcome.updated, 1);
    let row = only_meeting(&db, room).await;
    assert_eq!(row.source, MeetingSource::Booking);
    assert_eq!(row.subject, "Booked in the app");
    assert_eq!(row.ends_at, at(2));
    assert_eq!(row.exchange_item_id, Some(ItemId::from("a")));
    assert_eq!(row.exchange_change_key, Some(ChangeKey::from("ck1")));
}

#[tokio::test]
async fn duplicate_rows_in_one_batch_keep_the_newest() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;

    let outcome = db
        .store
        .apply(&batch(
            room,
            vec![
                single("a", "ck2", 2, "Newer"),
                single("a", "ck1", 1, "Older"),
            ],
        ))
        .await
        .expect("applied");

    assert_eq!(
        outcome,
        ApplyOutcome {
            inserted: 1,
            stale_skipped: 1,
            ..ApplyOutcome::default()
        }
    );
    assert_eq!(only_meeting(&db, room).await.subject, "Newer");
}

#[tokio::test]
async fn nul_characters_are_dropped_from_text() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;

    db.store
        .apply(&batch(room, vec![single("a", "ck1", 0, "Bad\0subject")]))
        .await
        .expect("applied");

    assert_eq!(only_meeting(&db, room).await.subject, "Badsubject");
}

#[tokio::test]
async fn an_unknown_room_is_not_found() {
    let db = TestDb::migrated().await;

    let applied = db.store.apply(&batch(RoomId(404), Vec::new())).await;
    let recorded = db.store.record_error(RoomId(404), Some("boom")).await;

    assert!(
        matches!(applied, Err(StoreError::NotFound(_))),
        "{applied:?}"
    );
    assert!(
        matches!(recorded, Err(StoreError::NotFound(_))),
        "{recorded:?}"
    );
}

#[tokio::test]
async fn mailbox_notes_are_recorded() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;

    db.store
        .record_subscription(room, Some(&SubscriptionId::from("sub-1")))
        .await
        .expect("subscription");
    db.store
        .record_events(&[(room, at(2)), (room, at(1)), (RoomId(404), at(3))])
        .await
        .expect("events");
    db.store
        .record_events(&[(room, at(0))])
        .await
        .expect("older event");
    db.store
        .record_error(room, Some("throttled"))
        .await
        .expect("error");
    db.store
        .set_initial_sync(room, InitialSync::Failed, Some("mailbox not found"))
        .await
        .expect("initial sync");

    let client = db.store.pool.get().await.expect("connection");
    let row = client
        .query_one(
            "SELECT subscription_id, last_event_at, last_error, last_error_at IS NOT NULL, \
                 initial_sync, initial_sync_error \
             FROM mailbox_sync JOIN rooms ON rooms.id = room_id WHERE room_id = $1",
            &[&room.0],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("sub-1"));
    assert_eq!(row.get::<_, Option<DateTime<Utc>>>(1), Some(at(2)));
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("throttled")
    );
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, InitialSync>(4), InitialSync::Failed);
    assert_eq!(
        row.get::<_, Option<String>>(5).as_deref(),
        Some("mailbox not found")
    );
}

#[tokio::test]
async fn old_tombstones_are_purged() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    let mut removal = batch(room, Vec::new());
    removal.removed_items = vec![ItemId::from("old"), ItemId::from("new")];
    db.store.apply(&removal).await.expect("tombstones");
    db.execute(
        "UPDATE deleted_items SET deleted_at = now() - interval '40 days' \
         WHERE exchange_item_id = 'old'",
    )
    .await;

    let purged = db
        .store
        .purge_tombstones(std::time::Duration::from_secs(30 * 24 * 3600))
        .await
        .expect("purged");

    assert_eq!(purged, 1);
}

/// Makes every meeting insert run `action` for the first `times` rows tried (counted
/// by a sequence, which a rollback does not reset).
async fn inject_failures(db: &TestDb, times: i64, action: &str) {
    db.execute(&format!(
        "CREATE SEQUENCE injected; \
         CREATE FUNCTION inject() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
             IF nextval('injected') <= {times} THEN {action}; END IF; \
             RETURN NEW; \
         END $$; \
         CREATE TRIGGER inject BEFORE INSERT ON meetings \
             FOR EACH ROW EXECUTE FUNCTION inject();"
    ))
    .await;
}

async fn injected_attempts(db: &TestDb) -> i64 {
    let client = db.store.pool.get().await.expect("connection");
    let row = client
        .query_one("SELECT last_value FROM injected", &[])
        .await
        .expect("sequence read");
    row.get(0)
}

#[tokio::test]
async fn a_serialization_failure_is_retried() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    inject_failures(&db, 1, "RAISE EXCEPTION 'injected' USING ERRCODE = '40001'").await;

    let outcome = db
        .store
        .apply(&batch(room, vec![single("a", "ck1", 0, "Planning")]))
        .await
        .expect("applied on the second attempt");

    assert_eq!(outcome.inserted, 1);
    assert_eq!(injected_attempts(&db).await, 2);
}

#[tokio::test]
async fn a_connection_lost_inside_the_transaction_is_retried_on_a_new_one() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    let mut next = batch(room, vec![single("a", "ck1", 0, "Planning")]);
    next.new_sync_state = Some(SyncState::from("state-1"));
    inject_failures(&db, 1, "PERFORM pg_terminate_backend(pg_backend_pid())").await;

    let outcome = db
        .store
        .apply(&next)
        .await
        .expect("applied after reconnecting");

    assert_eq!(outcome.inserted, 1);
    assert_eq!(injected_attempts(&db).await, 2);
    assert_eq!(
        db.store.sync_state(room).await.expect("state"),
        Some(SyncState::from("state-1"))
    );
}

#[tokio::test]
async fn a_lasting_deadlock_ends_as_unavailable_after_a_few_attempts() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    inject_failures(
        &db,
        100,
        "RAISE EXCEPTION 'injected' USING ERRCODE = '40P01'",
    )
    .await;

    let result = db
        .store
        .apply(&batch(room, vec![single("a", "ck1", 0, "Planning")]))
        .await;

    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(injected_attempts(&db).await, i64::from(MAX_ATTEMPTS));
    assert_eq!(db.store.meeting_count().await.expect("count"), 0);
}

#[tokio::test]
async fn a_lasting_error_is_not_retried() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    inject_failures(
        &db,
        100,
        "RAISE EXCEPTION 'injected' USING ERRCODE = '42501'",
    )
    .await;

    let result = db
        .store
        .apply(&batch(room, vec![single("a", "ck1", 0, "Planning")]))
        .await;

    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert_eq!(injected_attempts(&db).await, 1);
}

#[tokio::test]
async fn of_two_batches_from_one_checkpoint_only_one_lands() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    let mut left = batch(room, vec![single("a", "ck1", 0, "Left")]);
    left.new_sync_state = Some(SyncState::from("left"));
    let mut right = batch(room, vec![single("b", "ck1", 0, "Right")]);
    right.new_sync_state = Some(SyncState::from("right"));

    let (left_result, right_result) = tokio::join!(db.store.apply(&left), db.store.apply(&right));

    let moved = [&left_result, &right_result]
        .iter()
        .filter(|result| matches!(result, Err(StoreError::CheckpointMoved { .. })))
        .count();
    assert_eq!(moved, 1, "{left_result:?} {right_result:?}");
    assert_eq!(db.store.meeting_count().await.expect("count"), 1);
    let state = db
        .store
        .sync_state(room)
        .await
        .expect("state")
        .expect("some");
    let subject = only_meeting(&db, room).await.subject;
    assert_eq!(
        state.as_str().to_uppercase()[..1],
        subject[..1].to_uppercase()
    );
}

#[tokio::test]
async fn concurrent_migrations_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let other = db.store.clone();

    let (left, right) = tokio::join!(db.store.migrate(), other.migrate());

    let mut applied = left.expect("left migrate");
    applied.extend(right.expect("right migrate"));
    applied.sort();
    assert_eq!(
        applied,
        vec![
            "V1__booking_tables",
            "V2__sync_state",
            "V3__resync_notes",
            "V4__services_issues_audit",
            "V5__digest_claims",
            "V6__plan_issue_scope",
            "V7__polled_rooms",
            "V8__exception_versions"
        ]
    );
}

#[tokio::test]
async fn a_closed_store_is_unavailable() {
    let db = TestDb::empty().await;
    db.store.ping().await.expect("answers while open");

    db.store.close();
    let result = db.store.ping().await;

    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn connections_carry_the_configured_statement_timeout() {
    let db = TestDb::empty().await;

    let client = db.store.pool.get().await.expect("connection");
    let row = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("shown");

    assert_eq!(row.get::<_, String>(0), "30s");
}

#[tokio::test]
async fn room_statuses_show_every_room_with_its_notes() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .upsert_room(&MailboxAddress::new("off@example.com"), "Off", false)
        .await
        .expect("disabled room");
    let mut first = batch(room, vec![single("a", "ck1", 0, "Planning")]);
    first.new_sync_state = Some(SyncState::from("state-1"));
    db.store.apply(&first).await.expect("applied");
    db.store
        .record_error(room, Some("throttled"))
        .await
        .expect("error");
    db.store.record_error(room, None).await.expect("cleared");

    let statuses = db.store.room_statuses().await.expect("statuses");

    assert_eq!(statuses.len(), 2);
    let on = &statuses[0];
    assert_eq!(on.room.id, room);
    assert!(on.sync_enabled && on.has_sync_state);
    assert_eq!(on.confirmed_meetings, 1);
    assert!(on.last_sync_at.is_some());
    assert_eq!(on.last_error, None);
    assert!(on.last_error_at.is_some());
    assert!(!statuses[1].sync_enabled && !statuses[1].has_sync_state);
}

#[tokio::test]
async fn a_polled_room_shows_no_subscription_until_it_streams_again() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .record_subscription(room, Some(&SubscriptionId::from("sub-1")))
        .await
        .expect("subscribed");

    db.store
        .record_polled(&[(room, true), (RoomId(999), true)])
        .await
        .expect("polled");
    let polled = db.store.room_statuses().await.expect("statuses");
    db.store
        .record_subscription(room, Some(&SubscriptionId::from("sub-2")))
        .await
        .expect("subscribed again");
    let streamed = db.store.room_statuses().await.expect("statuses");

    assert!(polled[0].polled_since.is_some());
    assert_eq!(polled[0].subscription_id, None);
    assert_eq!(streamed[0].polled_since, None);
    assert_eq!(
        streamed[0].subscription_id,
        Some(SubscriptionId::from("sub-2"))
    );
}

#[tokio::test]
async fn a_full_sync_cancels_what_it_no_longer_finds() {
    let db = TestDb::migrated().await;
    let room = room(&db).await;
    db.store
        .apply(&batch(
            room,
            vec![
                single("a", "ck1", 0, "Kept"),
                single("b", "ck1", 0, "Deleted unseen"),
            ],
        ))
        .await
        .expect("before the resync");
    let started = db.store.database_time().await.expect("time");
    db.store
        .apply(&batch(
            room,
            vec![single("c", "ck1", 0, "Created during the resync")],
        ))
        .await
        .expect("streamed meanwhile");

    let cancelled = db
        .store
        .reconcile_full_sync(
            room,
            &[ItemId::from("a")],
            started,
            ChangeOrigin::Resync,
            false,
        )
        .await
        .expect("reconciled");
    let late = db
        .store
        .apply(&batch(room, vec![single("b", "ck2", 5, "Late fetch")]))
        .await
        .expect("late fetch");

    assert_eq!(cancelled.cancelled, 1);
    assert_eq!(late.stale_skipped, 1);
    let rows: Vec<(String, MeetingStatus)> = db
        .store
        .meetings(room)
        .await
        .expect("rows")
        .into_iter()
        .map(|row| (row.subject, row.status))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("Kept".to_owned(), MeetingStatus::Confirmed),
            ("Deleted unseen".to_owned(), MeetingStatus::Cancelled),
            (
                "Created during the resync".to_owned(),
                MeetingStatus::Confirmed
            ),
        ]
    );
}

fn database_config(url: &str) -> crate::config::DatabaseConfig {
    crate::config::DatabaseConfig {
        url: url.to_owned(),
        password: None,
        pool_size: 2,
        statement_timeout: std::time::Duration::from_secs(5),
        connect_timeout: std::time::Duration::from_secs(2),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let result = PgStore::connect(&database_config("postgres://postgres@127.0.0.1:1/none")).await;

    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_missing_database_is_a_lasting_error() {
    let url = format!(
        "postgres://postgres@127.0.0.1:5432/bs_missing_{}",
        uuid::Uuid::new_v4().simple()
    );

    let result = PgStore::connect(&database_config(&url)).await;

    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
}
