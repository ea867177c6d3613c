//! The `booking-sync` binary as a process: SIGTERM drains and exits 0; after SIGKILL
//! the next start loses nothing.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use booking_sync::sim::NewAppointment;
use chrono::{Duration as Span, Utc};

use crate::support::app::{TestApp, TestOptions};

const BINARY: &str = env!("CARGO_BIN_EXE_booking-sync");

fn write_config(app: &TestApp, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("booking-sync.toml");
    let mut file = std::fs::File::create(&path).expect("config file");
    write!(
        file,
        r#"[database]
url = "{db}"
pool_size = 4

[exchange]
url = "{ews}"
auth = "none"

[subscriptions]
heartbeat_timeout = "10s"

[pipeline]
coalesce_window = "100ms"

[sync]
room_refresh_interval = "500ms"

[http]
listen = "127.0.0.1:0"
"#,
        db = app.db.url,
        ews = app.sim.ews_url()
    )
    .expect("config written");
    path
}

/// A service process, killed when dropped so a failing test leaves nothing running.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_service(config: &std::path::Path) -> Service {
    Service(
        Command::new(BINARY)
            .arg("--config")
            .arg(config)
            .arg("run")
            .arg("--grace-seconds")
            .arg("5")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts"),
    )
}

fn signal(service: &Service, name: &str) {
    let child = &service.0;
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

fn wait_exit(service: &mut Service, timeout: Duration) -> Option<std::process::ExitStatus> {
    let started = std::time::Instant::now();
    while started.elapsed() < timeout {
        if let Some(status) = service.0.try_wait().expect("wait works") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn booking(index: i64) -> NewAppointment {
    // Exchange keeps times to the second; whole minutes keep the truth comparable.
    let now = Utc::now();
    let today = now
        .date_naive()
        .and_hms_opt(8, 0, 0)
        .expect("a valid time")
        .and_utc();
    let start = today + Span::days(2) + Span::minutes(index * 45);
    NewAppointment {
        subject: format!("Booking {index}"),
        start,
        end: start + Span::minutes(30),
        is_all_day: false,
        organizer: "user-002@contoso.example".to_owned(),
        location: None,
        attendees: Vec::new(),
        time_zone: None,
        recurrence: None,
        uid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero_and_sigkill_loses_nothing_on_restart() {
    let app = TestApp::prepare(TestOptions::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&app, &dir);
    let room = "room-002@contoso.example";

    // Running, then SIGKILL in the middle of a stream of bookings.
    let mut child = spawn_service(&config);
    for index in 0..30 {
        app.control
            .create_appointment(room, booking(index))
            .expect("created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&child, "KILL");
    wait_exit(&mut child, Duration::from_secs(10)).expect("killed");

    // Changes while nothing runs.
    for index in 30..40 {
        app.control
            .create_appointment(room, booking(index))
            .expect("created while down");
    }

    // Restart: everything arrives.
    let mut child = spawn_service(&config);
    let result = app.wait_converged(Duration::from_secs(30)).await;
    assert!(result.converged(), "{result:?}");
    assert!(result.expected >= 40, "{result:?}");

    // SIGTERM: drains and exits 0.
    app.control
        .create_appointment(room, booking(40))
        .expect("created");
    signal(&child, "TERM");
    let status =
        wait_exit(&mut child, Duration::from_secs(15)).expect("stops within the grace period");
    assert_eq!(status.code(), Some(0));

    // What the drain did not finish is still picked up by the next start.
    let mut child = spawn_service(&config);
    let result = app.wait_converged(Duration::from_secs(30)).await;
    signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(15));
    assert!(result.converged(), "{result:?}");
}

#[test]
fn run_refuses_an_out_of_date_schema_and_says_to_migrate() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(crate::support::db::TestDb::create());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{}\"\n\n[exchange]\nurl = \"http://127.0.0.1:9/EWS/Exchange.asmx\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
            db.url
        ),
    )
    .expect("config written");

    let output = Command::new(BINARY)
        .arg("--config")
        .arg(&path)
        .arg("run")
        .output()
        .expect("runs");

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("booking-sync migrate"), "{stderr}");
    drop(db);
}

#[test]
fn a_bad_configuration_exits_78_naming_every_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[database]\nurl = \"postgres://x/y\"\npool_size = 0\n\n[exchange]\nurl = \"ftp://nowhere\"\nbogus = 1\n").expect("written");

    let output = Command::new(BINARY)
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .expect("runs");

    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bogus"), "{stderr}");
    assert!(stderr.contains("pool_size"), "{stderr}");
    assert!(stderr.contains("url"), "{stderr}");
}

#[test]
fn the_demo_converges_and_reports_json() {
    let output = Command::new(BINARY)
        .args(["demo", "--rooms", "20", "--changes", "2000", "--json"])
        .env("DATABASE_URL", crate::support::db::admin_url())
        .output()
        .expect("demo runs");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|err| {
        panic!(
            "last line is JSON ({err}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(report["converged"], true, "{report}");
    assert_eq!(report["missing"], 0);
    assert_eq!(report["unexpected"], 0);
    assert_eq!(report["stale"], 0);
    assert_eq!(report["rooms"], 20);
    assert_eq!(report["changes"], 2000);
    assert!(report["meetings_expected"].as_u64().unwrap_or(0) > 0);
    assert!(output.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_serves_until_sigterm() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("address").port()
    };
    let mut service = Service(
        Command::new(BINARY)
            .args([
                "simulate",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--rooms",
                "3",
                "--users",
                "2",
                "--seed",
                "5",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the simulator starts"),
    );
    let url = format!("http://127.0.0.1:{port}/_sim/mailboxes");
    let mut mailboxes = None;
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(&url).await {
            let body = response.text().await.expect("a body");
            mailboxes = Some(serde_json::from_str::<serde_json::Value>(&body).expect("JSON"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mailboxes = mailboxes.expect("the control API answers");

    assert_eq!(mailboxes.as_array().map(Vec::len), Some(5), "{mailboxes}");
    signal(&service, "TERM");
    let status = wait_exit(&mut service, Duration::from_secs(10)).expect("stops on SIGTERM");
    assert_eq!(status.code(), Some(0));
}
