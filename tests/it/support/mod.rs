//! Shared helpers for the integration tests.

#![allow(dead_code)]

pub mod app;
pub mod daemon;
pub mod db;
pub mod faults;
pub mod proxy;
pub mod smtp_sink;
pub mod xsd;

/// The Python of the project's virtual environment (`BOOKING_SYNC_PYTHON`, default
/// `.venv/bin/python`; `scripts/setup-python-venv.sh` creates it).
pub fn python() -> std::path::PathBuf {
    match std::env::var_os("BOOKING_SYNC_PYTHON") {
        Some(path) => std::path::PathBuf::from(path),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    }
}

/// Logs to the test output when `TEST_LOG` is set (e.g. `TEST_LOG=debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
