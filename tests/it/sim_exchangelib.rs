//! The simulator against exchangelib, a widely used real EWS client.
//!
//! Runs `tests/conformance/exchangelib_conformance.py` with the Python of the project's
//! virtual environment (`BOOKING_SYNC_PYTHON`, default `.venv/bin/python`; create it with
//! `scripts/setup-python-venv.sh`). A missing interpreter fails the test.

use std::path::PathBuf;
use std::time::Duration;

use booking_sync::domain::MailboxAddress;
use booking_sync::sim::auth::{AuthConfig, AuthMode, BasicAccount, ImpersonationScope};
use booking_sync::sim::{SimConfig, Simulator};

const SERVICE_ACCOUNT: &str = "svc-booking@contoso.example";
const SERVICE_PASSWORD: &str = "conformance-secret";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

use crate::support::python;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchangelib_reads_versions_calendars_syncs_and_streams_from_the_simulator() {
    let python = python();
    assert!(
        python.exists(),
        "no Python interpreter at {}: run scripts/setup-python-venv.sh (or set BOOKING_SYNC_PYTHON)",
        python.display()
    );
    let config = SimConfig {
        rooms: 3,
        users: 2,
        minute: Duration::from_secs(3),
        heartbeat_interval: Duration::from_secs(1),
        auth: AuthConfig {
            mode: AuthMode::Basic,
            accounts: vec![BasicAccount {
                username: SERVICE_ACCOUNT.to_owned(),
                password: SERVICE_PASSWORD.to_owned(),
                impersonation: ImpersonationScope::Only(
                    (1..=3)
                        .map(|number| {
                            MailboxAddress::new(&format!("room-{number:03}@contoso.example"))
                        })
                        .collect(),
                ),
            }],
            ..AuthConfig::default()
        },
        ..SimConfig::default()
    };
    let simulator = Simulator::start(config).await.expect("simulator starts");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance/exchangelib_conformance.py");

    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .env("SIM_EWS_URL", simulator.ews_url())
        .env("SIM_CONTROL_URL", simulator.base_url())
        .env("SIM_USERNAME", SERVICE_ACCOUNT)
        .env("SIM_PASSWORD", SERVICE_PASSWORD)
        .env("SIM_ROOM", "room-002@contoso.example")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .expect("the conformance script finishes in time")
        .expect("the conformance script starts");
    simulator.shutdown().await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exchangelib conformance failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("exchangelib conformance passed"),
        "{stdout}"
    );
}
