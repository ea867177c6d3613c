//! Operating the service: metrics that pass promtool, readiness that follows the
//! database, the systemd notify protocol, a drain on SIGTERM, and secrets that never
//! leave the credential files.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use booking_sync::domain::MailboxAddress;
use booking_sync::ews::{EwsAuth, EwsClient, EwsConfig, EwsError};
use booking_sync::health;
use booking_sync::metrics as m;
use booking_sync::sim::auth::{AuthConfig, AuthMode, BasicAccount, ImpersonationScope};
use booking_sync::sim::limits::{LimitsConfig, RequestBudget};
use booking_sync::sim::{NewAppointment, SimConfig, Simulator, Workload, WorkloadMix};
use chrono::{Duration as Span, Utc};
use tokio::time::Instant;

use crate::support::app::{TestApp, TestOptions};
use crate::support::cut_proxy::CutProxy;

const BINARY: &str = env!("CARGO_BIN_EXE_booking-sync");
const ROOM: &str = "room-001@contoso.example";

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the HTTP listener answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_a_workload_passes_promtool_and_carries_every_metric() {
    let app = TestApp::spawn(TestOptions {
        rooms: 5,
        ..TestOptions::default()
    })
    .await;
    app.control
        .run_workload(Workload {
            changes: 300,
            rate_per_sec: 0.0,
            seed: 3,
            mix: WorkloadMix::default(),
            wait: true,
        })
        .await
        .expect("workload runs");
    let result = app.wait_converged(Duration::from_secs(60)).await;
    assert!(result.converged(), "{result:?}");

    let service = app.service.as_ref().expect("running");
    let (status, scrape) = get(&format!("http://{}/metrics", service.http_addr)).await;

    assert_eq!(status, 200);
    for name in m::ALL {
        assert!(
            scrape.contains(&format!("# HELP {name} ")),
            "{name} is not described"
        );
    }
    assert!(
        scrape.contains("booking_sync_ews_requests_total{operation=\"GetItem\",outcome=\"ok\"}")
    );
    assert!(
        !scrape.contains("@"),
        "a mailbox address is a label: {scrape}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("scrape.txt");
    std::fs::write(&file, &scrape).expect("scrape written");
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("scrape readable"))
        .output()
        .expect("promtool runs (Debian package prometheus; scripts/test installs it)");
    assert!(
        promtool.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_busy_inside_a_response_message_counts_as_a_throttled_request() {
    let metrics = booking_sync::app::metrics_handle();
    let sim = Simulator::start(SimConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        rooms: 1,
        users: 1,
        limits: LimitsConfig {
            request_budget: Some(RequestBudget {
                requests: 1,
                window: Duration::from_secs(600),
                backoff: Duration::from_millis(20),
                in_message_operations: vec!["FindItem".to_owned()],
            }),
            ..LimitsConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let client = EwsClient::new(EwsConfig {
        url: sim.ews_url(),
        auth: EwsAuth::None,
        impersonation: true,
        server_version: "Exchange2013_SP1".to_owned(),
        request_timeout: Duration::from_secs(10),
        max_concurrent_requests: 1,
        user_agent: "booking-sync/test".to_owned(),
    })
    .expect("client");
    let room = MailboxAddress::new(ROOM);
    let throttled = "booking_sync_ews_requests_total{operation=\"FindItem\",outcome=\"throttled\"}";
    let backoffs = format!("{}{{operation=\"FindItem\"}}", m::EWS_THROTTLED);
    let before = metric_value(&metrics.render(), throttled);
    let backoffs_before = metric_value(&metrics.render(), &backoffs);
    client
        .get_calendar_folder(&room)
        .await
        .expect("the budget allows one request");

    let result = client
        .find_calendar_view(&room, Utc::now(), Utc::now() + Span::days(1), 10)
        .await;

    assert!(
        matches!(result, Err(EwsError::Throttled { .. })),
        "{result:?}"
    );
    let scrape = metrics.render();
    assert!(metric_value(&scrape, throttled) >= before + 1.0, "{scrape}");
    assert!(metric_value(&scrape, &backoffs) >= backoffs_before + 1.0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_while_the_database_is_cut_off_and_200_when_it_is_back() {
    let mut app = TestApp::prepare(TestOptions::default()).await;
    let admin: tokio_postgres::Config = app.db.url.parse().expect("a database URL");
    let tokio_postgres::config::Host::Tcp(host) = &admin.get_hosts()[0] else {
        panic!("the test database is reached over TCP");
    };
    let target = format!("{host}:{}", admin.get_ports()[0])
        .parse()
        .expect("a socket address");
    let proxy = CutProxy::start(target).await;
    app.config.database.url = format!(
        "postgres://{}@{}/{}",
        admin.get_user().expect("a user"),
        proxy.addr,
        app.db.name
    );
    app.config.database.connect_timeout = Duration::from_secs(2);
    app.start().await;
    let url = format!(
        "http://{}/readyz",
        app.service.as_ref().expect("running").http_addr
    );
    assert_eq!(get(&url).await.0, 200);

    proxy.cut();
    let (status, body) = wait_for_status(&url, 503).await;
    assert_eq!(status, 503);
    assert_eq!(body.trim(), "database unreachable");

    proxy.restore();
    let (status, body) = wait_for_status(&url, 200).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("3 of 3"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_while_a_core_loop_task_makes_no_progress() {
    let mut app = TestApp::prepare(TestOptions::default()).await;
    app.config.pipeline.stall_timeout = Duration::from_secs(5);
    app.start().await;
    let service = app.service.as_ref().expect("running");
    let url = format!("http://{}/readyz", service.http_addr);
    assert_eq!(get(&url).await.0, 200);

    // A worker task that hangs: registered, never beating again.
    let stuck = service.health.heartbeats.register(health::LOOP_WORKERS);
    let (status, body) = wait_for_status(&url, 503).await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with("core loop workers made no progress"),
        "{body}"
    );

    drop(stuck);
    assert_eq!(wait_for_status(&url, 200).await.0, 200);
}

async fn wait_for_status(url: &str, wanted: u16) -> (u16, String) {
    let started = Instant::now();
    loop {
        let (status, body) = get(url).await;
        if status == wanted || started.elapsed() > Duration::from_secs(30) {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The binary under test, killed when dropped; its stderr lines are collected.
struct ServiceProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    fn spawn(config: &Path, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(BINARY);
        command
            .arg("--config")
            .arg(config)
            .args(["run", "--grace-seconds", "20"])
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected.lock().expect("lock").push(line);
            }
        });
        Self { child, lines }
    }

    /// The HTTP address from the JSON "Service started" line.
    async fn http_addr(&self) -> String {
        let started = Instant::now();
        loop {
            let found = self.lines().iter().find_map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).ok()?;
                (value["message"] == "Service started")
                    .then(|| value["http"].as_str().map(str::to_owned))
                    .flatten()
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no start line: {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "still running after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(app: &TestApp, dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("booking-sync.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{db}\"\npool_size = 4\n{extra_db}\n\
             [exchange]\nurl = \"{ews}\"\n{extra_ews}\n\
             [pipeline]\ncoalesce_window = \"100ms\"\n\n\
             [sync]\nroom_refresh_interval = \"500ms\"\n\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\n\
             [logging]\nformat = \"json\"\n{extra_logging}\n",
            db = app.db.url,
            ews = app.sim.ews_url(),
            extra_db = section(extra, "database"),
            extra_ews = section(extra, "exchange"),
            extra_logging = section(extra, "logging"),
        ),
    )
    .expect("config written");
    path
}

/// The lines of `extra` prefixed `name:` (a tiny way to add keys to one section).
fn section(extra: &str, name: &str) -> String {
    extra
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{name}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn booking(subject: String, index: i64) -> NewAppointment {
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(7, 0, 0)
        .expect("a valid time")
        .and_utc();
    let start = today + Span::days(3) + Span::minutes(index * 15);
    NewAppointment {
        subject,
        start,
        end: start + Span::minutes(15),
        is_all_day: false,
        organizer: "user-002@contoso.example".to_owned(),
        location: None,
        attendees: Vec::new(),
        time_zone: None,
        recurrence: None,
        uid: None,
    }
}

/// Records every datagram sent to a fake `NOTIFY_SOCKET`.
struct NotifySocket {
    path: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("notify socket binds");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let collected = messages.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(size) = socket.recv(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..size]);
                let mut messages = collected.lock().expect("lock");
                messages.extend(text.lines().map(str::to_owned));
            }
        });
        Self { path, messages }
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().expect("lock").clone()
    }

    async fn wait_for(&self, wanted: impl Fn(&[String]) -> bool) -> Vec<String> {
        let started = Instant::now();
        loop {
            let messages = self.messages();
            if wanted(&messages) {
                return messages;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "notify messages: {messages:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn position(messages: &[String], wanted: impl Fn(&str) -> bool) -> Option<usize> {
    messages.iter().position(|message| wanted(message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_it_reports_ready_status_watchdog_and_stopping_in_order() {
    let app = TestApp::prepare(TestOptions::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&app, dir.path(), "");
    let notify = NotifySocket::bind(dir.path());
    let mut service = ServiceProcess::spawn(
        &config,
        &[
            ("NOTIFY_SOCKET", notify.path.display().to_string()),
            ("WATCHDOG_USEC", "3000000".to_owned()),
        ],
    );

    let messages = notify
        .wait_for(|messages| {
            let Some(ready) = position(messages, |m| m == "READY=1") else {
                return false;
            };
            let after = &messages[ready..];
            position(after, |m| m == "WATCHDOG=1").is_some()
                && position(after, |m| m.starts_with("STATUS=subscriptions 3/3")).is_some()
        })
        .await;
    assert!(!messages.iter().any(|m| m == "STOPPING=1"), "{messages:?}");
    // The process's own gauges agree with what it told systemd.
    let metrics_url = format!("http://{}/metrics", service.http_addr().await);
    wait_for_metric(&metrics_url, m::READY, 1.0).await;
    wait_for_metric(&metrics_url, m::SUBSCRIPTIONS_ACTIVE, 3.0).await;
    wait_for_metric(
        &metrics_url,
        &format!("{}{{state=\"complete\"}}", m::ROOMS_BY_INITIAL_SYNC),
        3.0,
    )
    .await;
    service.terminate();
    let status = service.wait_exit(Duration::from_secs(30)).await;

    assert_eq!(status.code(), Some(0));
    let messages = notify.messages();
    let ready = position(&messages, |m| m == "READY=1").expect("READY");
    let status_line = position(&messages[ready..], |m| {
        m.starts_with("STATUS=subscriptions 3/3")
    })
    .map(|index| index + ready)
    .expect("STATUS after READY");
    let watchdog = position(&messages[ready..], |m| m == "WATCHDOG=1")
        .map(|index| index + ready)
        .expect("WATCHDOG after READY");
    let stopping = position(&messages, |m| m == "STOPPING=1").expect("STOPPING");
    assert!(
        status_line < stopping && watchdog < stopping,
        "{messages:?}"
    );
    assert_eq!(
        messages.iter().filter(|m| *m == "READY=1").count(),
        1,
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("lag ")),
        "the status line reports the lag: {messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_exits_zero_with_every_accepted_change_committed() {
    const ACCEPTED: i64 = 40;
    // Without duplicate events, one "created" event stands for one booking.
    let app = TestApp::prepare(TestOptions {
        duplicate_event_ratio: 0.0,
        ..TestOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&app, dir.path(), "");
    let mut service = ServiceProcess::spawn(&config, &[]);
    let metrics_url = format!("http://{}/metrics", service.http_addr().await);
    wait_for_metric(&metrics_url, m::SUBSCRIPTIONS_ACTIVE, 3.0).await;
    let before = metric_value(&get(&metrics_url).await.1, &created_events());

    // A burst: the first ACCEPTED bookings until the service has taken every one of
    // their events, then more bookings still arriving while SIGTERM lands.
    for index in 0..ACCEPTED {
        app.control
            .create_appointment(ROOM, booking(format!("Burst {index}"), index))
            .expect("created");
    }
    wait_for_metric(&metrics_url, &created_events(), before + ACCEPTED as f64).await;
    let control = app.control.clone();
    let more = tokio::spawn(async move {
        for index in ACCEPTED..ACCEPTED + 40 {
            let _ = control.create_appointment(ROOM, booking(format!("Late {index}"), index));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    service.terminate();
    let status = service.wait_exit(Duration::from_secs(30)).await;
    more.await.expect("the late bookings were made");

    assert_eq!(status.code(), Some(0), "{:?}", service.lines());
    let (client, connection) = tokio_postgres::connect(&app.db.url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    let subjects: HashSet<String> = client
        .query(
            "SELECT subject FROM meetings WHERE subject LIKE 'Burst %'",
            &[],
        )
        .await
        .expect("query runs")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let missing: Vec<i64> = (0..ACCEPTED)
        .filter(|index| !subjects.contains(&format!("Burst {index}")))
        .collect();
    assert!(
        missing.is_empty(),
        "accepted but not committed: {missing:?}"
    );
    let stopped = service
        .lines()
        .into_iter()
        .find(|line| line.contains("\"Stopped\""))
        .expect("a Stopped line");
    assert!(stopped.contains("\"drained\":true"), "{stopped}");
}

fn created_events() -> String {
    format!("{}{{type=\"created\"}}", m::EVENTS_RECEIVED)
}

/// The value of the series `series` (name and labels exactly as rendered), 0 when absent.
fn metric_value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn wait_for_metric(url: &str, series: &str, at_least: f64) {
    let started = Instant::now();
    loop {
        let value = metric_value(&get(url).await.1, series);
        if value >= at_least {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{series} is {value}, not {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_credential_files_shows_in_no_log_error_or_metric() {
    const SECRET: &str = "Pl4nted-S3cret-4a7c";
    const USERNAME: &str = "svc-booking@contoso.example";
    let app = TestApp::prepare(TestOptions {
        sim_auth: AuthConfig {
            mode: AuthMode::Basic,
            accounts: vec![BasicAccount {
                username: USERNAME.to_owned(),
                password: SECRET.to_owned(),
                impersonation: ImpersonationScope::Everyone,
            }],
            ..AuthConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials directory");
    for name in ["db-password", "exchange-password"] {
        let file = credentials.join(name);
        std::fs::write(&file, format!("{SECRET}\n")).expect("secret written");
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .expect("chmod");
    }
    let log_file = dir.path().join("log.txt");
    let config = write_config(
        &app,
        dir.path(),
        &format!(
            "database:password_file = \"${{CREDENTIALS_DIRECTORY}}/db-password\"\n\
             exchange:auth = \"basic\"\nexchange:username = \"{USERNAME}\"\n\
             exchange:password_file = \"${{CREDENTIALS_DIRECTORY}}/exchange-password\"\n\
             logging:file = {log_file:?}\nlogging:level = \"trace\"\n"
        ),
    );
    let credentials_env = ("CREDENTIALS_DIRECTORY", credentials.display().to_string());

    // A working run at the most verbose level, with traffic, a scrape and a stop.
    let mut service = ServiceProcess::spawn(&config, std::slice::from_ref(&credentials_env));
    let addr = service.http_addr().await;
    for index in 0..5 {
        app.control
            .create_appointment(ROOM, booking(format!("Secret test {index}"), index))
            .expect("created");
    }
    let result = app.wait_converged(Duration::from_secs(30)).await;
    assert!(result.converged(), "{result:?}");
    let scrape = get(&format!("http://{addr}/metrics")).await.1;
    let readiness = get(&format!("http://{addr}/readyz")).await.1;
    service.terminate();
    assert_eq!(
        service.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );

    // Failing runs: Exchange refuses every request, and the files are unprotected.
    app.control.set_ews_disabled(true);
    let mut refused = ServiceProcess::spawn(&config, std::slice::from_ref(&credentials_env));
    refused.http_addr().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    refused.terminate();
    refused.wait_exit(Duration::from_secs(30)).await;
    for name in ["db-password", "exchange-password"] {
        std::fs::set_permissions(
            credentials.join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .expect("chmod");
    }
    let check = Command::new(BINARY)
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .output()
        .expect("check-config runs");
    assert_eq!(check.status.code(), Some(78));

    let log_text = std::fs::read_to_string(&log_file).expect("the log file was written");
    assert!(
        log_text.lines().count() > 10,
        "the log file is nearly empty"
    );
    let outputs = [
        ("stderr of the working run", service.lines().join("\n")),
        ("stderr of the refused run", refused.lines().join("\n")),
        ("the log file", log_text),
        ("the metrics", scrape),
        ("the readiness answer", readiness),
        (
            "check-config's error",
            String::from_utf8_lossy(&check.stderr).into_owned(),
        ),
    ];
    for (what, text) in outputs {
        assert!(!text.contains(SECRET), "the secret shows in {what}");
    }
}
