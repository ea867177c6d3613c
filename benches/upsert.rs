//! Batch upsert throughput of `PgStore::apply`: meeting rows per second for batches of
//! 500 meetings (one series item with 500 occurrences), against the local PostgreSQL
//! server in a throw-away database.
//!
//! Three cases: new rows (insert), a newer version of the same rows (update) and a
//! replay of the stored version (unchanged, the guard refuses every row).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio_postgres::NoTls;

use booking_sync::config::DatabaseConfig;
use booking_sync::domain::{ChangeKey, ItemId, MailboxAddress};
use booking_sync::store::{
    ChangeOrigin, ItemWrite, MailboxBatch, MeetingStatus, MeetingWrite, PgStore, RoomId,
};

/// Meetings per batch.
const BATCH_ROWS: usize = 500;
const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/";

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 8, 0, 0)
        .single()
        .expect("valid date")
}

/// One series item `uid` at `version` with `BATCH_ROWS` daily occurrences.
fn series_batch(room: RoomId, uid: &str, version: i64) -> MailboxBatch {
    let start = base();
    let meetings = (0..BATCH_ROWS)
        .map(|day| {
            let occurrence = start + chrono::Duration::days(day as i64);
            MeetingWrite {
                occurrence_start: Some(occurrence),
                subject: format!("Stand-up {version}"),
                starts_at: occurrence,
                ends_at: occurrence + chrono::Duration::minutes(15),
                is_all_day: false,
                organizer_email: Some(format!("user{}@example.com", day % 50)),
                status: MeetingStatus::Confirmed,
                exception: None,
            }
        })
        .collect();
    MailboxBatch {
        room_id: room,
        expected_sync_state: None,
        new_sync_state: None,
        items: vec![ItemWrite {
            item_id: ItemId(format!("item-{uid}")),
            change_key: ChangeKey(format!("ck-{version}")),
            last_modified: start + chrono::Duration::seconds(version),
            uid: uid.to_owned(),
            window: (start, start + chrono::Duration::days(BATCH_ROWS as i64 + 1)),
            meetings,
        }],
        removed_items: Vec::new(),
        completes_initial_sync: false,
        origin: ChangeOrigin::Stream,
    }
}

async fn admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(ADMIN_URL, NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let task = tokio::spawn(connection);
    client.batch_execute(sql).await.expect("admin SQL runs");
    drop(client);
    let _ = task.await;
}

async fn setup(name: &str) -> (PgStore, RoomId) {
    admin(&format!("CREATE DATABASE {name}")).await;
    let store = PgStore::connect(&DatabaseConfig {
        url: format!("{SERVER_URL}{name}"),
        password: None,
        pool_size: 2,
        statement_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(10),
    })
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    for user in 0..50 {
        store
            .upsert_user(
                &MailboxAddress::new(&format!("user{user}@example.com")),
                "User",
            )
            .await
            .expect("user");
    }
    let room = store
        .upsert_room(
            &MailboxAddress::new("bench.room@example.com"),
            "Bench",
            true,
        )
        .await
        .expect("room");
    (store, room)
}

fn upsert(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let name = format!("bs_bench_{}", uuid::Uuid::new_v4().simple());
    let (store, room) = runtime.block_on(setup(&name));
    let counter = AtomicI64::new(1);

    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(BATCH_ROWS as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("insert_500", |b| {
        b.to_async(&runtime).iter(|| async {
            let uid = format!("new-{}", counter.fetch_add(1, Ordering::Relaxed));
            let outcome = store
                .apply(&series_batch(room, &uid, 1))
                .await
                .expect("apply");
            assert_eq!(outcome.inserted, BATCH_ROWS as u64);
        });
    });
    runtime
        .block_on(store.apply(&series_batch(room, "same", 0)))
        .expect("seed");
    group.bench_function("update_500", |b| {
        b.to_async(&runtime).iter(|| async {
            let version = counter.fetch_add(1, Ordering::Relaxed);
            let outcome = store
                .apply(&series_batch(room, "same", version))
                .await
                .expect("apply");
            assert_eq!(outcome.updated, BATCH_ROWS as u64);
        });
    });
    let latest = counter.load(Ordering::Relaxed) - 1;
    group.bench_function("unchanged_500", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome = store
                .apply(&series_batch(room, "same", latest))
                .await
                .expect("apply");
            assert_eq!(outcome.unchanged, BATCH_ROWS as u64);
        });
    });
    group.finish();

    store.close();
    runtime.block_on(admin(&format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )));
}

criterion_group!(benches, upsert);
criterion_main!(benches);
