//! The store and configuration as another component sees them: only public API, a
//! configuration built the way the service builds it, and a real PostgreSQL database.

use booking_sync::config::Config;
use booking_sync::domain::{ChangeKey, ItemId, MailboxAddress, SyncState};
use booking_sync::store::{
    ChangeOrigin, InitialSync, ItemWrite, MailboxBatch, MeetingStatus, MeetingWrite, PgStore,
    SchemaStatus, StoreError,
};
use chrono::{Duration, TimeZone, Utc};
use tokio_postgres::NoTls;

/// The server and database test databases are created from.
const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh database `bs_test_<random>`, dropped when the value is dropped.
pub struct StoreTestDb {
    /// Connection URL of the test database.
    pub url: String,
    name: String,
}

impl StoreTestDb {
    /// Creates an empty database.
    pub async fn create() -> Self {
        let name = format!("bs_test_{}", uuid::Uuid::new_v4().simple());
        admin(&format!("CREATE DATABASE {name}")).await;
        Self {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

impl Drop for StoreTestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // The test's runtime cannot be blocked on from here: use a helper thread.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(admin(&sql));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("dropping the test database failed");
        }
    }
}

async fn admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(ADMIN_URL, NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (user postgres, database test)");
    let task = tokio::spawn(connection);
    client.batch_execute(sql).await.expect("admin SQL runs");
    drop(client);
    let _ = task.await;
}

#[tokio::test]
async fn a_room_is_synced_end_to_end_through_the_public_api() {
    let db = StoreTestDb::create().await;
    let config = Config::for_tests(&db.url, "http://127.0.0.1:1/EWS/Exchange.asmx");
    let store = PgStore::connect(&config.database).await.expect("connected");
    assert!(matches!(
        store.require_current_schema().await,
        Err(StoreError::SchemaOutdated { .. })
    ));
    store.migrate().await.expect("migrated");
    assert_eq!(
        store.schema_status().await.expect("status"),
        SchemaStatus::Current
    );
    let room = store
        .upsert_room(
            &MailboxAddress::new("Board.Room@example.com"),
            "Board room",
            true,
        )
        .await
        .expect("room");
    store
        .set_initial_sync(room, InitialSync::Running, None)
        .await
        .expect("running");
    let start = Utc
        .with_ymd_and_hms(2030, 5, 6, 9, 0, 0)
        .single()
        .expect("date");
    let page = MailboxBatch {
        room_id: room,
        expected_sync_state: None,
        new_sync_state: Some(SyncState::from("after-page-1")),
        items: vec![ItemWrite {
            item_id: ItemId::from("item-1"),
            change_key: ChangeKey::from("ck-1"),
            last_modified: start - Duration::days(1),
            uid: "uid-1".to_owned(),
            window: (start - Duration::days(1), start + Duration::days(365)),
            meetings: vec![MeetingWrite {
                occurrence_start: None,
                subject: "Board meeting".to_owned(),
                starts_at: start,
                ends_at: start + Duration::hours(2),
                is_all_day: false,
                organizer_email: Some("chair@example.com".to_owned()),
                status: MeetingStatus::Confirmed,
                exception: None,
            }],
        }],
        removed_items: Vec::new(),
        completes_initial_sync: true,
        origin: ChangeOrigin::Stream,
    };

    let outcome = store.apply(&page).await.expect("applied");

    assert_eq!(outcome.inserted, 1);
    let rooms = store.enabled_rooms().await.expect("rooms");
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].email.as_str(), "board.room@example.com");
    assert_eq!(rooms[0].initial_sync, InitialSync::Complete);
    assert_eq!(
        store.sync_state(room).await.expect("state"),
        Some(SyncState::from("after-page-1"))
    );
    assert_eq!(store.meeting_count().await.expect("count"), 1);
    store.close();
}
