//! A fresh PostgreSQL database per test, dropped when the test ends.

use std::time::Duration;

use booking_sync::config::DatabaseConfig;
use tokio_postgres::NoTls;

/// The server test databases are created on (`BOOKING_SYNC_TEST_DATABASE_URL`, or the
/// local server's `test` database).
pub fn admin_url() -> String {
    std::env::var("BOOKING_SYNC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database named `bs_it_<random>`.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// A URL that connects to it.
    pub url: String,
    /// The server's maintenance URL it was created (and is dropped) with.
    admin: String,
}

impl TestDb {
    /// Creates the database (empty, no migrations) on the shared test server.
    pub async fn create() -> Self {
        Self::create_on(&admin_url()).await
    }

    /// Creates the database (empty, no migrations) on the server of `admin`, a URL of
    /// any database there.
    pub async fn create_on(admin: &str) -> Self {
        let name = format!("bs_it_{}", uuid::Uuid::new_v4().simple());
        run_admin(admin, &format!("CREATE DATABASE {name}")).await;
        let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
        Self {
            url: format!("{base}/{name}"),
            name,
            admin: admin.to_owned(),
        }
    }

    /// Runs statements on it directly, as an operator (or a fault) would.
    pub async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("the test database answers");
        tokio::spawn(connection);
        client.batch_execute(sql).await.expect("statement runs");
    }

    /// The first column of the first row of a query that yields one bigint.
    pub async fn query_i64(&self, sql: &str) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("the test database answers");
        tokio::spawn(connection);
        client.query_one(sql, &[]).await.expect("query runs").get(0)
    }

    /// Database settings pointing at it.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url.clone(),
            password: None,
            pool_size: 8,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin = self.admin.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database")
                .block_on(run_admin(&admin, &sql));
        })
        .join();
    }
}

async fn run_admin(admin: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(admin, NoTls)
        .await
        .expect("PostgreSQL answers at BOOKING_SYNC_TEST_DATABASE_URL (run scripts/test)");
    tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .expect("admin statement runs");
}
