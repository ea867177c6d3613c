//! Bad input rows of the fault matrix (reliability.md section 2): a bad configuration
//! (41), entity bombs and external entities (46), deep, truncated and malformed XML
//! (47), hostile meeting content (48), and a seeded random-input loop over every XML
//! reader that `cargo test` runs each time (the cargo-fuzz targets in `fuzz/` run the
//! same readers for longer).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use booking_sync::ews::responses as parse;
use booking_sync::ews::{EwsError, StreamDecoder};
use booking_sync::sim::NewAppointment;
use chrono::{Duration as Span, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::support::app::{TestApp, TestOptions};

const BINARY: &str = env!("CARGO_BIN_EXE_booking-sync");

const FIXTURES: &[&str] = &[
    include_str!("../fixtures/ews/find_item_calendar_view.xml"),
    include_str!("../fixtures/ews/get_folder_calendar.xml"),
    include_str!("../fixtures/ews/get_item_recurring_masters.xml"),
    include_str!("../fixtures/ews/get_item_single_and_missing.xml"),
    include_str!("../fixtures/ews/get_item_server_busy.xml"),
    include_str!("../fixtures/ews/streaming_events.xml"),
    include_str!("../fixtures/ews/subscribe_success.xml"),
    include_str!("../fixtures/ews/sync_folder_items_page.xml"),
    include_str!("../fixtures/ews/sync_folder_items_invalid_state.xml"),
];

/// Every reader of Exchange's answers; none may panic, whatever the input.
fn parse_everything(body: &[u8]) -> Vec<Result<(), EwsError>> {
    vec![
        parse::parse_sync_folder_items(body).map(drop),
        parse::parse_get_item(body).map(drop),
        parse::parse_find_calendar_view(body).map(drop),
        parse::parse_get_folder(body).map(drop),
        parse::parse_subscribe(body).map(drop),
        stream_messages(body, 7).map(drop),
    ]
}

/// Feeds `body` to a notification stream decoder in `piece`-byte chunks and reads
/// every message; the first error ends it.
fn stream_messages(body: &[u8], piece: usize) -> Result<usize, EwsError> {
    let mut decoder = StreamDecoder::new();
    let mut messages = 0;
    for chunk in body.chunks(piece.max(1)) {
        decoder.push(chunk);
        while decoder.next_message()?.is_some() {
            messages += 1;
        }
    }
    decoder.finish()?;
    Ok(messages)
}

fn envelope(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>{inner}</s:Body></s:Envelope>"#
    )
}

#[test]
fn row41_a_bad_configuration_exits_78_without_starting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("password");
    std::fs::write(&secret, "s3cret").expect("secret written");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cases = [
        ("invalid url", "[database]\nurl = \"postgres://x/y\"\n\n[exchange]\nurl = \"not a url\"\n".to_owned(), "exchange.url"),
        ("unknown key", "[database]\nurl = \"postgres://x/y\"\n\n[exchange]\nurl = \"https://mail.example/EWS/Exchange.asmx\"\ncolour = 1\n".to_owned(), "colour"),
        ("missing credential", "[database]\nurl = \"postgres://x/y\"\n\n[exchange]\nurl = \"https://mail.example/EWS/Exchange.asmx\"\nauth = \"basic\"\nusername = \"svc\"\npassword_file = \"/nonexistent/password\"\n".to_owned(), "password_file"),
        ("world-readable secret", format!("[database]\nurl = \"postgres://x/y\"\n\n[exchange]\nurl = \"https://mail.example/EWS/Exchange.asmx\"\nauth = \"basic\"\nusername = \"svc\"\npassword_file = {secret:?}\n"), "password_file"),
    ];

    for (case, text, named) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).expect("config written");
        let output = Command::new(BINARY)
            .arg("--config")
            .arg(&path)
            .arg("run")
            .output()
            .expect("runs");

        assert_eq!(output.status.code(), Some(78), "{case}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{case}: {stderr}");
    }
}

#[test]
fn row46_entity_bombs_and_external_entities_are_refused_and_nothing_is_fetched() {
    let canary = std::net::TcpListener::bind("127.0.0.1:0").expect("canary binds");
    canary.set_nonblocking(true).expect("non-blocking");
    let port = canary.local_addr().expect("canary address").port();
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">{}]><lolz>&lol9;</lolz>"#,
        (1..10)
            .map(|level| format!(
                "<!ENTITY lol{level} \"{}\">",
                format!(
                    "&lol{};",
                    if level == 1 {
                        String::new()
                    } else {
                        (level - 1).to_string()
                    }
                )
                .repeat(10)
            ))
            .collect::<String>()
    );
    let external = format!(
        r#"<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/canary">]>{}"#,
        envelope("<m:SyncFolderItemsResponse>&x;</m:SyncFolderItemsResponse>")
    );

    for document in [laughs, external] {
        for (reader, result) in parse_everything(document.as_bytes())
            .into_iter()
            .enumerate()
        {
            assert!(
                matches!(result, Err(EwsError::Malformed(_))),
                "reader {reader}: {result:?}"
            );
        }
    }

    assert!(canary.accept().is_err(), "nothing connected to the canary");
}

#[test]
fn row47_deep_truncated_and_malformed_xml_is_a_classified_error_never_a_panic() {
    let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    let sync_page = FIXTURES[7];
    let truncated = &sync_page[..sync_page.len() / 2];
    let mut invalid_utf8 = sync_page.as_bytes().to_vec();
    let middle = invalid_utf8.len() / 2;
    invalid_utf8[middle..middle + 3].copy_from_slice(&[0xff, 0xfe, 0xc0]);
    let wrong_namespace = sync_page.replace(
        "http://schemas.microsoft.com/exchange/services/2006/messages",
        "urn:not-exchange",
    );
    let huge_attribute = envelope(&format!(
        r#"<m:SyncFolderItemsResponse x="{}"/>"#,
        "a".repeat(2 << 20)
    ));

    for (case, body) in [
        ("deep", deep.as_bytes()),
        ("truncated", truncated.as_bytes()),
        ("invalid utf-8", invalid_utf8.as_slice()),
        ("wrong namespace", wrong_namespace.as_bytes()),
        ("huge attribute", huge_attribute.as_bytes()),
    ] {
        for (reader, result) in parse_everything(body).into_iter().enumerate() {
            let err = result.expect_err(case);
            assert!(
                err.is_transient() || matches!(err, EwsError::Response { .. }),
                "{case}, reader {reader}: {err:?} must be retried or resynced"
            );
        }
    }
}

#[test]
fn random_and_mutated_input_never_panics_any_reader() {
    let mut rng = SmallRng::seed_from_u64(47);
    for round in 0..3_000 {
        let body: Vec<u8> = if round % 3 == 0 {
            (0..rng.gen_range(0..512)).map(|_| rng.gen()).collect()
        } else {
            let mut body = FIXTURES[rng.gen_range(0..FIXTURES.len())]
                .as_bytes()
                .to_vec();
            for _ in 0..rng.gen_range(1..8) {
                let at = rng.gen_range(0..body.len());
                match rng.gen_range(0..3) {
                    0 => body[at] = rng.gen(),
                    1 => body.truncate(at),
                    _ => {
                        let end = rng.gen_range(at..body.len().min(at + 64));
                        let copy = body[at..end].to_vec();
                        body.splice(at..at, copy);
                    }
                }
                if body.is_empty() {
                    break;
                }
            }
            body
        };

        let _ = parse_everything(&body);
        let _ = stream_messages(&body, rng.gen_range(1..64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row48_hostile_meeting_content_is_stored_verbatim_except_nul() {
    let app = TestApp::spawn(TestOptions::default()).await;
    let room = "room-001@contoso.example";
    let start = (Utc::now() + Span::days(3))
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .expect("a time")
        .and_utc();
    let subjects = [
        "Robert'); DROP TABLE meetings;-- \"quoted\"".to_owned(),
        "Planning 🗓️ für Ärzte ✔".to_owned(),
        "Line one\r\nLine two".to_owned(),
        "Before\0after".to_owned(),
        format!("Long {}", "x".repeat(240)),
    ];
    for (index, subject) in subjects.iter().enumerate() {
        let begins = start + Span::hours(index as i64);
        app.control
            .create_appointment(
                room,
                NewAppointment {
                    subject: subject.clone(),
                    start: begins,
                    end: begins + Span::minutes(30),
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
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut stored: Vec<String> = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let rooms = app.store.enabled_rooms().await.expect("rooms");
        let id = rooms
            .iter()
            .find(|candidate| candidate.email.as_str() == room)
            .expect("room")
            .id;
        stored = app
            .store
            .meetings(id)
            .await
            .expect("meetings")
            .into_iter()
            .map(|row| row.subject)
            .collect();
        if stored.len() >= subjects.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for subject in &subjects {
        let expected = subject.replace('\0', "");
        assert!(
            stored.contains(&expected),
            "{:?} stored verbatim (NUL dropped)",
            expected.chars().take(40).collect::<String>()
        );
    }
}
