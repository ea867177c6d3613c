//! Shared helpers for the integration tests.

#![allow(dead_code)]

pub mod app;
pub mod daemon;
pub mod db;
pub mod faults;
pub mod proxy;
pub mod xsd;

/// Logs to the test output when `TEST_LOG` is set (e.g. `TEST_LOG=debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
