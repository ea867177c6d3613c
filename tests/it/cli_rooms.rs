//! The administrator's commands: `rooms`, `status` and `resync`, through the library
//! and through the binary.

use std::io::Write;
use std::process::{Command, Output};

use booking_sync::cli::rooms;
use booking_sync::domain::MailboxAddress;
use booking_sync::sim::{MailboxKind, NewAppointment, NewMailbox};
use booking_sync::store::InitialSync;
use chrono::{Duration as Span, Utc};

use crate::support::app::{TestApp, TestOptions};

const BINARY: &str = env!("CARGO_BIN_EXE_booking-sync");
const ROOM: &str = "room-001@contoso.example";

fn options() -> TestOptions {
    TestOptions {
        rooms: 2,
        users: 2,
        queue_capacity: 16,
        ..TestOptions::default()
    }
}

fn write_config(app: &TestApp, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("booking-sync.toml");
    let mut file = std::fs::File::create(&path).expect("config file");
    write!(
        file,
        "[database]\nurl = \"{}\"\npool_size = 4\n\n[exchange]\nurl = \"{}\"\nauth = \"none\"\n",
        app.db.url,
        app.sim.ews_url()
    )
    .expect("config written");
    path
}

fn run(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coexistence_is_refused_before_the_initial_sync_is_complete_and_accepted_after() {
    let mut app = TestApp::prepare(options()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&app, &dir);

    let pending = rooms::set_coexistence(&app.store, ROOM, true).await;
    let refused = run(&config, &["rooms", "coexistence", ROOM, "on"]);
    let room_id = app
        .store
        .enabled_rooms()
        .await
        .expect("rooms")
        .into_iter()
        .find(|room| room.email == MailboxAddress::new(ROOM))
        .expect("room")
        .id;
    app.store
        .set_initial_sync(
            room_id,
            InitialSync::Failed,
            Some("the mailbox cannot be read"),
        )
        .await
        .expect("state set");
    let failed = rooms::set_coexistence(&app.store, ROOM, true).await;

    let message = format!("{:#}", pending.expect_err("refused while pending"));
    assert!(
        message.contains(
            "coexistence for room-001@contoso.example stays off: its initial sync is pending"
        ),
        "{message}"
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr)
            .contains("may only coexist with Exchange once its initial sync is complete"),
        "{}",
        text(&refused.stderr)
    );
    let message = format!("{:#}", failed.expect_err("refused after a failure"));
    assert!(
        message.contains("is failed (it failed: the mailbox cannot be read)"),
        "{message}"
    );

    app.store
        .set_initial_sync(room_id, InitialSync::Pending, None)
        .await
        .expect("state reset");
    app.start().await;
    rooms::set_coexistence(&app.store, ROOM, true)
        .await
        .expect("accepted once complete");
    let accepted = run(
        &config,
        &["rooms", "coexistence", "room-002@contoso.example", "on"],
    );
    let off = run(&config, &["rooms", "coexistence", ROOM, "off"]);

    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    assert!(off.status.success(), "{}", text(&off.stderr));
    let statuses = app.store.room_statuses().await.expect("statuses");
    let mut switches: Vec<(String, bool)> = statuses
        .iter()
        .map(|s| (s.room.email.as_str().to_owned(), s.coexistence_enabled))
        .collect();
    switches.sort();
    assert_eq!(
        switches,
        vec![
            (ROOM.to_owned(), false),
            ("room-002@contoso.example".to_owned(), true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_import_adds_directory_rooms_with_sync_off_and_enable_switches_them_on() {
    let app = TestApp::prepare(options()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&app, &dir);
    let new_room = "room-annex@contoso.example";
    app.control
        .add_mailbox(NewMailbox {
            email: new_room.to_owned(),
            display_name: "Annex".to_owned(),
            kind: MailboxKind::Room,
            aliases: Vec::new(),
        })
        .expect("mailbox added");

    let imported = run(&config, &["rooms", "import"]);
    let again = run(&config, &["rooms", "import"]);
    let listed = run(&config, &["rooms", "list"]);
    let enabled = run(&config, &["rooms", "enable", new_room]);
    let unknown = run(&config, &["rooms", "disable", "nowhere@contoso.example"]);

    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(
        text(&imported.stdout).contains("3 rooms, 1 new"),
        "{}",
        text(&imported.stdout)
    );
    assert!(
        text(&again.stdout).contains("3 rooms, 0 new"),
        "{}",
        text(&again.stdout)
    );
    let annex_line = text(&listed.stdout)
        .lines()
        .find(|line| line.starts_with(new_room))
        .map(str::to_owned)
        .expect("the new room is listed");
    assert!(annex_line.contains("Annex"), "{annex_line}");
    assert!(
        annex_line.contains(" off "),
        "imported with sync off: {annex_line}"
    );
    assert!(enabled.status.success(), "{}", text(&enabled.stderr));
    assert!(app
        .store
        .enabled_rooms()
        .await
        .expect("rooms")
        .iter()
        .any(|room| room.email == MailboxAddress::new(new_room)));
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no room has the address nowhere@contoso.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_resync_report_every_room() {
    let app = TestApp::spawn(options()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&app, &dir);
    let start =
        chrono::DateTime::from_timestamp((Utc::now() + Span::days(2)).timestamp() / 60 * 60, 0)
            .expect("a valid time");
    app.control
        .create_appointment(
            ROOM,
            NewAppointment {
                subject: "Reviewed".to_owned(),
                start,
                end: start + Span::hours(1),
                is_all_day: false,
                organizer: "user-001@contoso.example".to_owned(),
                location: None,
                attendees: Vec::new(),
                time_zone: None,
                recurrence: None,
                uid: None,
            },
        )
        .expect("created");
    assert!(app
        .wait_converged(std::time::Duration::from_secs(30))
        .await
        .converged());

    let incremental = run(&config, &["resync", "--room", ROOM]);
    let full = run(&config, &["resync", "--full"]);
    let status = run(&config, &["status", "--json"]);
    let table = run(&config, &["status"]);

    assert!(
        incremental.status.success(),
        "{}",
        text(&incremental.stderr)
    );
    assert!(
        text(&incremental.stderr).contains(&format!("resync: 1/1 {ROOM} 0 changes")),
        "plain progress lines off a terminal: {}",
        text(&incremental.stderr)
    );
    assert!(text(&incremental.stdout).starts_with("1 rooms resynced"));
    assert!(full.status.success(), "{}", text(&full.stderr));
    assert!(
        text(&full.stdout).contains("0 failed, 0 changes, drift 0"),
        "{}",
        text(&full.stdout)
    );
    assert!(
        text(&full.stderr).contains("full resync: 2/2"),
        "{}",
        text(&full.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(report["summary"]["complete"], 2, "{report}");
    assert_eq!(report["summary"]["drift_repaired"], 0);
    let room = report["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|room| room["email"] == ROOM)
        .expect("room")
        .clone();
    assert_eq!(room["initial_sync"], "complete");
    assert_eq!(room["meetings"], 1);
    assert!(room["last_full_resync_at"].is_string(), "{room}");
    assert!(
        text(&table.stdout).contains("2 rooms, 2 enabled: 2 complete"),
        "{}",
        text(&table.stdout)
    );
}
