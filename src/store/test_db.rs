//! A throw-away PostgreSQL database per test, created on the local server and dropped
//! when the test ends (also when it fails).

use std::time::Duration;

use tokio_postgres::NoTls;

use super::PgStore;
use crate::config::DatabaseConfig;

/// The server and database the test databases are created from.
const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Where each test database lives (the name is appended).
const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/";

/// A fresh database named `bs_test_<random>` with a store connected to it.
pub(crate) struct TestDb {
    name: String,
    pub(crate) store: PgStore,
}

impl TestDb {
    /// An empty database (no migrations applied).
    pub(crate) async fn empty() -> Self {
        let name = format!("bs_test_{}", uuid::Uuid::new_v4().simple());
        admin(&format!("CREATE DATABASE {name}")).await;
        let store = PgStore::connect(&config(&name))
            .await
            .expect("connect to the test database");
        Self { name, store }
    }

    /// A database with every migration applied.
    pub(crate) async fn migrated() -> Self {
        let db = Self::empty().await;
        db.store.migrate().await.expect("migrate the test database");
        db
    }

    /// Runs raw SQL against the test database (for arranging rows the store never
    /// writes, such as booking-owned meetings).
    pub(crate) async fn execute(&self, sql: &str) {
        let client = self.store.pool.get().await.expect("a pooled connection");
        client.batch_execute(sql).await.expect("test SQL runs");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.store.close();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on: a helper
        // thread with its own runtime drops the database.
        let joined = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database")
                .block_on(admin(&sql));
        })
        .join();
        if joined.is_err() && !std::thread::panicking() {
            panic!("dropping the test database failed");
        }
    }
}

fn config(name: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: format!("{SERVER_URL}{name}"),
        password: None,
        pool_size: 4,
        statement_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
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
