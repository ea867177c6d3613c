//! The dry run, the audit trail and the out-of-sync notifications at the scale an
//! installation switches sync on at: dozens of rooms, thousands of meetings the
//! booking system already holds, and the demo's workload.

use std::collections::BTreeMap;
use std::time::Duration;

use booking_sync::app::{build_notifier, ews_config, syncing_store};
use booking_sync::cli::resync::{self, ResyncOptions};
use booking_sync::config::Config;
use booking_sync::ews::EwsClient;
use booking_sync::sim::{NewAppointment, Workload, WorkloadMix};
use chrono::{DateTime, Duration as Span, Timelike, Utc};
use tokio_postgres::Client;

use crate::rules::sql;
use crate::support::app::{TestApp, TestOptions};

const ORGANIZER: &str = "user-001@contoso.example";
const GUEST: &str = "guest@partner.example";
const SENDER: &str = "user-005@contoso.example";
const FALLBACK: &str = "facilities@contoso.example";
const ADMIN: &str = "it-admin@contoso.example";

/// How a meeting the booking system holds stands against Exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// The room's calendar has it at the same time.
    InSync,
    /// The room's calendar has it an hour later.
    Moved,
    /// The room's calendar does not have it.
    Missing,
}

/// One issue as the administrator's report names it: rule, room, meeting UID.
type Expected = (String, String, String);

/// What the booking system holds before sync is switched on, and the issues that
/// must follow from it.
struct Installation {
    /// Meetings with services the booking system created.
    booked: usize,
    /// Issues the initial sync must find, sorted.
    issues: Vec<Expected>,
    /// Subjects of the meetings those issues are about.
    subjects: Vec<String>,
}

fn slot(day: i64, hour: u32) -> DateTime<Utc> {
    (Utc::now() + Span::days(day))
        .with_hour(hour)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .expect("a valid time")
}

fn appointment(subject: &str, start: DateTime<Utc>, organizer: &str) -> NewAppointment {
    NewAppointment {
        subject: subject.to_owned(),
        start,
        end: start + Span::hours(1),
        is_all_day: false,
        organizer: organizer.to_owned(),
        location: None,
        attendees: Vec::new(),
        time_zone: None,
        recurrence: None,
        uid: None,
    }
}

/// Fills every room with `per_room` meetings the booking system created (rows with
/// `source = 'booking'` and catering, some also a projector), as its application
/// would: through SQL, with the UID it gave the appointment in Exchange. Every
/// `moved_every`-th is an hour off Exchange and every `missing_every`-th is not in
/// Exchange at all. Every `stale_every`-th room also holds a meeting an earlier sync
/// wrote whose appointment is gone (its services are then cancelled in Exchange), and
/// every room one meeting by an organizer who is not a user, only in Exchange.
async fn install(
    app: &TestApp,
    client: &Client,
    per_room: usize,
    moved_every: usize,
    missing_every: usize,
    stale_every: usize,
) -> Installation {
    let rooms = app.store.enabled_rooms().await.expect("rooms");
    let mut columns: (Vec<i64>, Vec<String>, Vec<String>, Vec<DateTime<Utc>>) = Default::default();
    let mut stale: (Vec<i64>, Vec<String>, Vec<String>) = Default::default();
    let mut issues = Vec::new();
    let mut subjects = Vec::new();
    let mut serial = 0;
    for (index, room) in rooms.iter().enumerate() {
        let email = room.email.as_str();
        for number in 0..per_room {
            serial += 1;
            let standing = if serial % missing_every == 0 {
                Standing::Missing
            } else if serial % moved_every == 0 {
                Standing::Moved
            } else {
                Standing::InSync
            };
            let uid = format!("booking-{index:02}-{number:03}");
            let subject = format!("Booked {index:02}/{number:03}");
            let start = slot(1 + (number / 8) as i64, 8 + (number % 8) as u32);
            if standing != Standing::Missing {
                let mut exchange = appointment(&subject, start, ORGANIZER);
                exchange.uid = Some(uid.clone());
                if standing == Standing::Moved {
                    exchange.start += Span::hours(1);
                    exchange.end += Span::hours(1);
                }
                app.control
                    .create_appointment(email, exchange)
                    .expect("appointment created");
            }
            if standing != Standing::InSync {
                issues.push((
                    "booking_missing_in_exchange".to_owned(),
                    email.to_owned(),
                    uid.clone(),
                ));
                subjects.push(subject.clone());
            }
            columns.0.push(room.id.0);
            columns.1.push(uid);
            columns.2.push(subject);
            columns.3.push(start);
        }
        if index % stale_every == 0 {
            let uid = format!("stale-{index:02}");
            let subject = format!("Gone before the switch {index:02}");
            issues.push((
                "cancelled_with_services".to_owned(),
                email.to_owned(),
                uid.clone(),
            ));
            subjects.push(subject.clone());
            stale.0.push(room.id.0);
            stale.1.push(uid);
            stale.2.push(subject);
        }
        let subject = format!("Visitor {index:02}");
        let guest = app
            .control
            .create_appointment(email, appointment(&subject, slot(9, 12), GUEST))
            .expect("guest appointment");
        issues.push(("unknown_organizer".to_owned(), email.to_owned(), guest.uid));
        subjects.push(subject);
    }
    client
        .execute(
            "INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, \
                 organizer_email, source) \
             SELECT room_id, uid, subject, starts_at, starts_at + interval '1 hour', $5, \
                 'booking' \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) \
                 AS t(room_id, uid, subject, starts_at)",
            &[&columns.0, &columns.1, &columns.2, &columns.3, &ORGANIZER],
        )
        .await
        .expect("booked meetings");
    client
        .execute(
            "INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, \
                 organizer_email, source, exchange_item_id, exchange_change_key, \
                 exchange_last_modified, fetched_at) \
             SELECT room_id, uid, subject, now() + interval '3 days', \
                 now() + interval '3 days 1 hour', $4, 'exchange', 'item-' || uid, 'ck-1', \
                 now() - interval '2 days', now() - interval '2 days' \
             FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(room_id, uid, subject)",
            &[&stale.0, &stale.1, &stale.2, &ORGANIZER],
        )
        .await
        .expect("rows of an earlier sync");
    client
        .batch_execute(
            "INSERT INTO meeting_services (meeting_id, kind, description, deadline) \
             SELECT id, 'catering', 'Coffee for ' || (id % 12 + 2), starts_at - interval '1 day' \
             FROM meetings; \
             INSERT INTO meeting_services (meeting_id, kind, description, deadline) \
             SELECT id, 'equipment', 'Projector', starts_at - interval '2 hours' \
             FROM meetings WHERE id % 3 = 0",
        )
        .await
        .expect("services");
    issues.sort();
    Installation {
        booked: columns.0.len(),
        issues,
        subjects,
    }
}

/// Every queued issue as (rule, room, UID), with its recipient and audience.
async fn queued(client: &Client) -> Vec<(Expected, Option<String>, String)> {
    let mut issues: Vec<_> = client
        .query(
            "SELECT i.rule, r.email, i.details->>'uid', i.recipient, i.audience \
             FROM sync_issues i JOIN rooms r ON r.id = i.room_id",
            &[],
        )
        .await
        .expect("issues read")
        .iter()
        .map(|row| ((row.get(0), row.get(1), row.get(2)), row.get(3), row.get(4)))
        .collect();
    issues.sort();
    issues
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_on_fifty_rooms_over_two_thousand_booked_meetings_reports_only_to_the_administrator(
) {
    let mut app = TestApp::prepare(TestOptions {
        rooms: 50,
        users: 10,
        queue_capacity: 64,
        ..TestOptions::default()
    })
    .await;
    app.config.notifications.enabled = true;
    app.config.notifications.sender = Some(SENDER.to_owned());
    app.config.notifications.fallback_owner = Some(FALLBACK.to_owned());
    app.config.notifications.admin = Some(ADMIN.to_owned());
    app.config.notifications.initial_sync_to_users = false;
    let client = sql(&app).await;
    let installation = install(&app, &client, 40, 10, 25, 5).await;
    assert_eq!(installation.booked, 2000);

    app.start().await;
    let ews = EwsClient::new(ews_config(&app.config)).expect("client");
    let notifier = build_notifier(&app.config, &app.store, &ews).expect("notifications on");
    let interval = Span::from_std(app.config.notifications.digest_interval).expect("interval");
    let mut round = Utc::now() + Span::days(1);
    while notifier.send_due(round).await.expect("round runs") > 0 {
        round += interval;
    }
    app.stop().await;

    let issues = queued(&client).await;
    let reported: Vec<Expected> = issues.iter().map(|(issue, _, _)| issue.clone()).collect();
    assert_eq!(reported, installation.issues);
    assert!(issues.iter().all(
        |(_, recipient, audience)| recipient.as_deref() == Some(ADMIN) && audience == "admin"
    ));
    let messages = app.control.sent();
    assert!(!messages.is_empty());
    assert!(
        messages.iter().all(|message| message.to == [ADMIN]),
        "only the administrator is emailed: {:?}",
        messages.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    // The report lists every issue once.
    let listed: usize = messages
        .iter()
        .map(|message| message.body.matches("<li>").count())
        .sum();
    assert_eq!(listed, installation.issues.len());
    let bodies: String = messages
        .iter()
        .map(|message| message.body.as_str())
        .collect();
    let unlisted: Vec<&String> = installation
        .subjects
        .iter()
        .filter(|subject| !bodies.contains(subject.as_str()))
        .collect();
    assert!(unlisted.is_empty(), "not in the report: {unlisted:?}");
    // Only the cancelled meetings' services need attention; the booking system's
    // own meetings keep theirs.
    let flagged: i64 = client
        .query_one(
            "SELECT count(DISTINCT meeting_id) FROM meeting_services \
             WHERE status = 'needs_attention'",
            &[],
        )
        .await
        .expect("services read")
        .get(0);
    let cancelled = installation
        .issues
        .iter()
        .filter(|(rule, _, _)| rule == "cancelled_with_services")
        .count();
    assert_eq!(usize::try_from(flagged).unwrap(), cancelled);
}

/// Every table a dry run must leave alone, in full (row text in id order), hashed.
async fn booking_tables(client: &Client) -> Vec<(i64, String)> {
    let mut tables = Vec::new();
    for table in ["meetings", "meeting_services", "rooms", "users"] {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) \
                     FROM {table} t"
                ),
                &[],
            )
            .await
            .expect("table read");
        tables.push((row.get(0), row.get(1)));
    }
    tables
}

/// The demo's workload (`booking-sync demo` with its defaults).
fn demo_workload() -> Workload {
    Workload {
        changes: 2000,
        rate_per_sec: 0.0,
        seed: 1,
        mix: WorkloadMix::default(),
        wait: true,
    }
}

/// The demo's simulator (`booking-sync demo` with its defaults).
fn demo_options() -> TestOptions {
    TestOptions {
        rooms: 20,
        users: 50,
        queue_capacity: 64,
        seed: 1,
        ..TestOptions::default()
    }
}

/// What a plan or a live run did, in the plan's terms.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    inserts: u64,
    updates: u64,
    cancellations: u64,
    issues: BTreeMap<String, u64>,
    emails: Vec<(String, String, u64)>,
}

/// What the live run recorded: its audit trail and its outbox.
async fn live_counts(client: &Client) -> Counts {
    let mut counts = Counts::default();
    for row in client
        .query(
            "SELECT action, count(*) FROM meeting_audit GROUP BY action",
            &[],
        )
        .await
        .expect("audit read")
    {
        let count = u64::try_from(row.get::<_, i64>(1)).unwrap();
        match row.get::<_, &str>(0) {
            "insert" => counts.inserts += count,
            "cancel" => counts.cancellations += count,
            _ => counts.updates += count,
        }
    }
    for row in client
        .query("SELECT rule, count(*) FROM sync_issues GROUP BY rule", &[])
        .await
        .expect("issues read")
    {
        counts
            .issues
            .insert(row.get(0), u64::try_from(row.get::<_, i64>(1)).unwrap());
    }
    for row in client
        .query(
            "SELECT recipient, audience, count(*) FROM sync_issues WHERE recipient IS NOT NULL \
             GROUP BY recipient, audience ORDER BY audience, recipient",
            &[],
        )
        .await
        .expect("outbox read")
    {
        counts.emails.push((
            row.get(0),
            row.get(1),
            u64::try_from(row.get::<_, i64>(2)).unwrap(),
        ));
    }
    counts
}

/// Catches every room up once, as `booking-sync resync` does.
async fn catch_up(app: &TestApp, config: &Config) {
    let store = syncing_store(config, app.store.clone());
    let summary = resync::run(
        config,
        &store,
        &ResyncOptions {
            room: None,
            full: false,
        },
    )
    .await
    .expect("resync runs");
    assert_eq!(summary.failed, 0, "{summary:?}");
}

/// Sync switched on in a dry run over an installation, while the demo's workload
/// runs: the booking tables do not change, nothing is sent, and the plan is what the
/// live run then does, count for count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_over_the_demo_workload_plans_what_the_live_run_then_does() {
    let mut app = TestApp::prepare(demo_options()).await;
    app.config.notifications.enabled = true;
    app.config.notifications.sender = Some(SENDER.to_owned());
    app.config.notifications.fallback_owner = Some(FALLBACK.to_owned());
    app.config.notifications.admin = Some(ADMIN.to_owned());
    let client = sql(&app).await;
    install(&app, &client, 10, 4, 7, 3).await;
    let before = booking_tables(&client).await;

    app.config.dry_run = true;
    app.start().await;
    let report = app
        .control
        .run_workload(demo_workload())
        .await
        .expect("workload runs");
    app.stop().await;
    let dry = app.config.clone();
    catch_up(&app, &dry).await;

    assert_eq!(booking_tables(&client).await, before);
    assert!(app.control.sent().is_empty());
    let trail: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM meeting_audit) + (SELECT count(*) FROM sync_issues)",
            &[],
        )
        .await
        .expect("trail read")
        .get(0);
    assert_eq!(
        trail, 0,
        "a dry run leaves no audit trail and queues nothing"
    );
    let plan = app.store.plan_summary(None).await.expect("plan");
    let planned = Counts {
        inserts: plan.inserts,
        updates: plan.updates,
        cancellations: plan.cancellations,
        issues: plan.issues.clone(),
        emails: plan
            .emails
            .iter()
            .map(|email| {
                (
                    email.recipient.clone(),
                    email.audience.clone(),
                    email.issues,
                )
            })
            .collect(),
    };
    assert!(report.moved > 0 && report.hard_deleted > 0, "{report:?}");
    assert!(
        planned.inserts > 0 && planned.updates > 0 && planned.cancellations > 0,
        "{planned:?}"
    );

    app.config.dry_run = false;
    app.start().await;
    app.stop().await;
    let live = live_counts(&client).await;
    assert_eq!(planned, live);
    assert!(app.control.sent().is_empty());
}

/// The demo's workload, synced live: every meeting row has audit entries, and the
/// latest one holds exactly the row's fields, whichever path wrote it (stream,
/// reconciliation of a lost checkpoint, resync repair). The change key is a version
/// stamp, not a field: a new version of a series that leaves an occurrence as it was
/// moves only its stamp, and is not an audited change of that occurrence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_demo_workload_every_meeting_row_is_explained_by_its_audit_entries() {
    let mut app = TestApp::prepare(demo_options()).await;
    app.start().await;
    app.control
        .run_workload(demo_workload())
        .await
        .expect("workload runs");
    let converged = app.wait_converged(Duration::from_secs(120)).await;
    assert!(converged.converged(), "{converged:?}");
    let client = sql(&app).await;
    // Drift a full resync repairs, and a room whose checkpoint is lost.
    client
        .batch_execute(
            "UPDATE meetings SET subject = 'Tampered' WHERE id % 50 = 0 AND status = 'confirmed'; \
             UPDATE mailbox_sync SET sync_state = NULL \
             WHERE room_id = (SELECT min(id) FROM rooms)",
        )
        .await
        .expect("drift planted");
    let store = syncing_store(&app.config, app.store.clone());
    let summary = resync::run(
        &app.config,
        &store,
        &ResyncOptions {
            room: None,
            full: true,
        },
    )
    .await
    .expect("resync runs");
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert!(summary.drift > 0, "{summary:?}");
    app.stop().await;

    let unexplained: Vec<(i64, String)> = client
        .query(
            "SELECT m.id, m.exchange_uid FROM meetings m LEFT JOIN LATERAL ( \
                 SELECT a.after FROM meeting_audit a WHERE a.meeting_id = m.id \
                 ORDER BY a.id DESC LIMIT 1) last ON true \
             WHERE last.after IS NULL \
                OR last.after->>'subject' IS DISTINCT FROM m.subject \
                OR (last.after->>'starts_at')::timestamptz <> m.starts_at \
                OR (last.after->>'ends_at')::timestamptz <> m.ends_at \
                OR (last.after->>'is_all_day')::boolean <> m.is_all_day \
                OR last.after->>'organizer_email' IS DISTINCT FROM m.organizer_email \
                OR last.after->>'status' <> m.status \
                OR last.after->>'source' <> m.source \
                OR last.after->>'exchange_item_id' IS DISTINCT FROM m.exchange_item_id \
             ORDER BY m.id",
            &[],
        )
        .await
        .expect("audit compared")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let origins: Vec<String> = client
        .query("SELECT DISTINCT origin FROM meeting_audit ORDER BY 1", &[])
        .await
        .expect("origins")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM meetings", &[])
        .await
        .expect("count")
        .get(0);

    assert!(rows > 1000, "{rows} rows");
    assert!(unexplained.is_empty(), "{unexplained:?}");
    assert_eq!(origins, ["resync", "stream"]);
}
