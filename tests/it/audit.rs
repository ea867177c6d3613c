//! The audit trail explains every meeting row, and the CLI-facing reader filters it.

use std::time::Duration;

use booking_sync::sim::{Workload, WorkloadMix};
use booking_sync::store::AuditFilter;

use crate::rules::sql;
use crate::support::app::{TestApp, TestOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_workload_every_meeting_row_is_explained_by_its_audit_entries() {
    let app = TestApp::spawn(TestOptions::default()).await;
    app.control
        .run_workload(Workload {
            changes: 300,
            rate_per_sec: 0.0,
            seed: 9,
            mix: WorkloadMix::default(),
            wait: true,
        })
        .await
        .expect("workload runs");
    let converged = app.wait_converged(Duration::from_secs(60)).await;
    assert!(converged.converged(), "{converged:?}");
    let client = sql(&app).await;

    let unexplained: i64 = client
        .query_one(
            "SELECT count(*) FROM meetings m LEFT JOIN LATERAL ( \
                 SELECT a.after FROM meeting_audit a WHERE a.meeting_id = m.id \
                 ORDER BY a.id DESC LIMIT 1) last ON true \
             WHERE last.after IS NULL \
                OR last.after->>'subject' IS DISTINCT FROM m.subject \
                OR (last.after->>'starts_at')::timestamptz <> m.starts_at \
                OR (last.after->>'ends_at')::timestamptz <> m.ends_at \
                OR last.after->>'status' <> m.status \
                OR last.after->>'organizer_email' IS DISTINCT FROM m.organizer_email",
            &[],
        )
        .await
        .expect("audit compared")
        .get(0);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM meetings", &[])
        .await
        .expect("count")
        .get(0);
    let first_uid: String = client
        .query_one("SELECT exchange_uid FROM meetings ORDER BY id LIMIT 1", &[])
        .await
        .expect("a meeting")
        .get(0);
    let entries = app
        .store
        .audit_entries(&AuditFilter {
            uid: Some(first_uid.clone()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .expect("entries");

    assert!(rows > 0);
    assert_eq!(unexplained, 0);
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|entry| entry.exchange_uid == first_uid));
    assert_eq!(
        entries.last().map(|entry| entry.action.as_str()),
        Some("insert")
    );
}
