//! Metric names, their descriptions, and the Prometheus exporter.
//!
//! Every metric the service emits is named here once, described at startup with its
//! unit and help text, and carries only labels from small fixed sets (never a mailbox,
//! item or user). [`describe`] also gives every metric and every label value that
//! alerts and dashboards rely on an initial value, so a series exists (at 0) before
//! its first event: an absent series cannot be told apart from a broken exporter.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Events the listener received, by event type.
pub const EVENTS_RECEIVED: &str = "booking_sync_events_received_total";
/// Events that repeat an earlier event of the same notification word for word.
pub const EVENTS_DUPLICATE: &str = "booking_sync_events_duplicate_total";
/// Mailbox entries put into the work queue.
pub const QUEUE_ENQUEUED: &str = "booking_sync_queue_enqueued_total";
/// Mailbox entries taken from the work queue by a worker.
pub const QUEUE_DEQUEUED: &str = "booking_sync_queue_dequeued_total";
/// Events merged into an entry already queued for the same mailbox.
pub const QUEUE_COALESCED: &str = "booking_sync_queue_coalesced_total";
/// Mailboxes waiting in the work queue.
pub const QUEUE_DEPTH: &str = "booking_sync_queue_depth";
/// Capacity of the work queue (distinct mailboxes).
pub const QUEUE_CAPACITY: &str = "booking_sync_queue_capacity";
/// Times the listener had to wait because the queue was full.
pub const QUEUE_FULL_WAITS: &str = "booking_sync_queue_full_waits_total";
/// EWS requests by operation and outcome.
pub const EWS_REQUESTS: &str = "booking_sync_ews_requests_total";
/// Duration of EWS requests by operation.
pub const EWS_REQUEST_DURATION: &str = "booking_sync_ews_request_duration_seconds";
/// Back-offs Exchange imposed (ErrorServerBusy, HTTP 503), by operation.
pub const EWS_THROTTLED: &str = "booking_sync_ews_throttled_total";
/// Items fetched with GetItem.
pub const ITEMS_FETCHED: &str = "booking_sync_items_fetched_total";
/// Meeting writes by result (inserted, updated, unchanged, stale_skipped, cancelled).
pub const MEETING_WRITES: &str = "booking_sync_meeting_writes_total";
/// Mailbox sync passes (SyncFolderItems to commit) by outcome.
pub const MAILBOX_SYNCS: &str = "booking_sync_mailbox_syncs_total";
/// Duration of one mailbox sync pass.
pub const MAILBOX_SYNC_DURATION: &str = "booking_sync_mailbox_sync_duration_seconds";
/// Streaming connections currently open.
pub const STREAMS_OPEN: &str = "booking_sync_streaming_connections_open";
/// Mailboxes kept in step by polling because no streaming connection slot was free.
pub const MAILBOXES_POLLED: &str = "booking_sync_mailboxes_polled";
/// Subscriptions currently active.
pub const SUBSCRIPTIONS_ACTIVE: &str = "booking_sync_subscriptions_active";
/// Streaming reconnects by reason.
pub const RECONNECTS: &str = "booking_sync_reconnects_total";
/// Resubscriptions by reason.
pub const RESUBSCRIPTIONS: &str = "booking_sync_resubscriptions_total";
/// Sync states Exchange rejected, after which a room was synced from scratch.
pub const SYNC_STATE_RESETS: &str = "booking_sync_sync_state_resets_total";
/// Rooms enabled for sync.
pub const ROOMS_ENABLED: &str = "booking_sync_rooms_enabled";
/// Enabled rooms by initial-sync state.
pub const ROOMS_BY_INITIAL_SYNC: &str = "booking_sync_rooms_initial_sync";
/// Age of the oldest queued change not yet committed.
pub const SYNC_LAG: &str = "booking_sync_lag_seconds";
/// Full resync runs by outcome.
pub const RESYNC_RUNS: &str = "booking_sync_resync_runs_total";
/// Rooms whose window roll or full reconciliation failed (tried again next run), by pass.
pub const RESYNC_ROOM_FAILURES: &str = "booking_sync_resync_room_failures_total";
/// Differences a resync found and repaired, by kind (missing, extra, stale).
pub const RESYNC_DRIFT: &str = "booking_sync_resync_drift_repaired_total";
/// When a full resync last succeeded.
pub const RESYNC_LAST_SUCCESS: &str = "booking_sync_resync_last_success_timestamp_seconds";
/// Database transactions retried, by error class.
pub const DB_RETRIES: &str = "booking_sync_db_retries_total";
/// Out-of-sync notifications sent to organizers.
pub const NOTIFICATIONS_SENT: &str = "booking_sync_notifications_sent_total";
/// Out-of-sync notifications not sent, by reason.
pub const NOTIFICATIONS_SUPPRESSED: &str = "booking_sync_notifications_suppressed_total";
/// 1 while `/readyz` answers 200, else 0.
pub const READY: &str = "booking_sync_ready";
/// Seconds since the stalest core loop last made progress, by loop.
pub const LOOP_PROGRESS_AGE: &str = "booking_sync_loop_progress_age_seconds";
/// Always 1; the version is a label.
pub const BUILD_INFO: &str = "booking_sync_build_info";

/// Every metric above, for checks that dashboards and alerts name only these.
pub const ALL: &[&str] = &[
    EVENTS_RECEIVED,
    EVENTS_DUPLICATE,
    QUEUE_ENQUEUED,
    QUEUE_DEQUEUED,
    QUEUE_COALESCED,
    QUEUE_DEPTH,
    QUEUE_CAPACITY,
    QUEUE_FULL_WAITS,
    EWS_REQUESTS,
    EWS_REQUEST_DURATION,
    EWS_THROTTLED,
    SYNC_STATE_RESETS,
    ITEMS_FETCHED,
    MEETING_WRITES,
    MAILBOX_SYNCS,
    MAILBOX_SYNC_DURATION,
    STREAMS_OPEN,
    MAILBOXES_POLLED,
    SUBSCRIPTIONS_ACTIVE,
    RECONNECTS,
    RESUBSCRIPTIONS,
    ROOMS_ENABLED,
    ROOMS_BY_INITIAL_SYNC,
    SYNC_LAG,
    RESYNC_RUNS,
    RESYNC_ROOM_FAILURES,
    RESYNC_DRIFT,
    RESYNC_LAST_SUCCESS,
    UNKNOWN_ORGANIZER_MEETINGS,
    DB_RETRIES,
    NOTIFICATIONS_SENT,
    NOTIFICATIONS_SUPPRESSED,
    READY,
    LOOP_PROGRESS_AGE,
    BUILD_INFO,
];

/// Values of the `outcome` label of [`EWS_REQUESTS`].
pub const EWS_OUTCOMES: &[&str] = &[
    "ok",
    "throttled",
    "timeout",
    "transport",
    "unauthorized",
    "http_error",
    "subscription_gone",
    "invalid_sync_state",
    "mailbox_error",
    "malformed",
    "error",
];
/// Values of the `state` label of [`ROOMS_BY_INITIAL_SYNC`].
pub const INITIAL_SYNC_STATES: &[&str] = &["pending", "running", "complete", "failed"];
/// Values of the `result` label of [`MEETING_WRITES`].
pub const WRITE_RESULTS: &[&str] = &[
    "inserted",
    "updated",
    "unchanged",
    "stale_skipped",
    "cancelled",
];
/// Values of the `kind` label of [`RESYNC_DRIFT`].
pub const DRIFT_KINDS: &[&str] = &["missing", "extra", "stale"];
/// Values of the `reason` label of [`RECONNECTS`].
pub const RECONNECT_REASONS: &[&str] = &[
    "silence",
    "error",
    "ended",
    "stream_error",
    "stream_taken",
    "open_failed",
    "subscriptions_gone",
    "connection_limit",
];
/// Values of the `reason` label of [`RESUBSCRIPTIONS`].
pub const RESUBSCRIBE_REASONS: &[&str] = &["gone", "dead", "missed"];
/// Values of the `outcome` label of [`MAILBOX_SYNCS`].
pub const SYNC_OUTCOMES: &[&str] = &[
    "ok",
    "throttled",
    "source_error",
    "checkpoint_moved",
    "store_error",
    "stale_read",
];
/// Values of the `class` label of [`DB_RETRIES`].
pub const DB_RETRY_CLASSES: &[&str] = &["connection", "serialization", "timeout", "other"];

/// Confirmed meetings whose organizer is not a known user.
pub const UNKNOWN_ORGANIZER_MEETINGS: &str = "booking_sync_unknown_organizer_meetings";

/// Histogram buckets for durations, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Describes every metric (help text and unit) to the installed recorder and creates
/// the series alerts depend on at their initial value.
pub fn describe() {
    describe_queue();
    describe_ews();
    describe_sync();
    describe_service();
    initial_values();
}

fn describe_queue() {
    describe_counter!(
        EVENTS_RECEIVED,
        Unit::Count,
        "Notification events received, by type"
    );
    describe_counter!(
        EVENTS_DUPLICATE,
        Unit::Count,
        "Notification events that repeat an earlier event of the same notification"
    );
    describe_counter!(
        QUEUE_ENQUEUED,
        Unit::Count,
        "Mailbox entries added to the work queue"
    );
    describe_counter!(
        QUEUE_DEQUEUED,
        Unit::Count,
        "Mailbox entries taken by workers"
    );
    describe_counter!(
        QUEUE_COALESCED,
        Unit::Count,
        "Events merged into an entry already queued for the same mailbox"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Mailboxes waiting in the work queue"
    );
    describe_gauge!(
        QUEUE_CAPACITY,
        Unit::Count,
        "Capacity of the work queue in mailboxes"
    );
    describe_counter!(
        QUEUE_FULL_WAITS,
        Unit::Count,
        "Times the listener waited because the work queue was full"
    );
}

fn describe_ews() {
    describe_counter!(
        EWS_REQUESTS,
        Unit::Count,
        "EWS requests, by operation and outcome"
    );
    describe_histogram!(
        EWS_REQUEST_DURATION,
        Unit::Seconds,
        "Time from sending an EWS request to having its whole answer parsed, by operation"
    );
    describe_counter!(
        EWS_THROTTLED,
        Unit::Count,
        "Back-offs Exchange imposed (ErrorServerBusy or HTTP 503), by operation"
    );
    describe_gauge!(STREAMS_OPEN, Unit::Count, "Streaming connections open");
    describe_gauge!(SUBSCRIPTIONS_ACTIVE, Unit::Count, "Subscriptions active");
    describe_gauge!(
        MAILBOXES_POLLED,
        Unit::Count,
        "Mailboxes polled because no streaming connection slot was free"
    );
    describe_counter!(RECONNECTS, Unit::Count, "Streaming reconnects, by reason");
    describe_counter!(RESUBSCRIPTIONS, Unit::Count, "Resubscriptions, by reason");
    describe_counter!(
        SYNC_STATE_RESETS,
        Unit::Count,
        "Sync states Exchange rejected, after which a room was synced from scratch"
    );
    describe_counter!(
        ITEMS_FETCHED,
        Unit::Count,
        "Calendar items fetched with GetItem"
    );
}

fn describe_sync() {
    describe_counter!(MEETING_WRITES, Unit::Count, "Meeting row writes, by result");
    describe_counter!(
        MAILBOX_SYNCS,
        Unit::Count,
        "Mailbox sync passes, by outcome"
    );
    describe_histogram!(
        MAILBOX_SYNC_DURATION,
        Unit::Seconds,
        "Time from taking a mailbox off the queue to committing its changes"
    );
    describe_gauge!(ROOMS_ENABLED, Unit::Count, "Rooms enabled for sync");
    describe_gauge!(
        ROOMS_BY_INITIAL_SYNC,
        Unit::Count,
        "Enabled rooms, by state of their initial sync"
    );
    describe_gauge!(
        SYNC_LAG,
        Unit::Seconds,
        "Age of the oldest queued change that is not committed yet"
    );
    describe_counter!(RESYNC_RUNS, Unit::Count, "Full resync runs, by outcome");
    describe_counter!(
        RESYNC_ROOM_FAILURES,
        Unit::Count,
        "Rooms whose window roll or full reconciliation failed and waits for the next run, by pass"
    );
    describe_counter!(
        RESYNC_DRIFT,
        Unit::Count,
        "Differences a full resync found and repaired, by kind; anything above 0 means the stream missed a change"
    );
    describe_gauge!(
        RESYNC_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful full resync (0: none yet)"
    );
    describe_counter!(
        DB_RETRIES,
        Unit::Count,
        "Database transactions retried after a transient failure, by error class"
    );
    describe_gauge!(
        UNKNOWN_ORGANIZER_MEETINGS,
        Unit::Count,
        "Confirmed meetings whose organizer is not a known user"
    );
    describe_counter!(
        NOTIFICATIONS_SENT,
        Unit::Count,
        "Out-of-sync notifications sent to organizers"
    );
    describe_counter!(
        NOTIFICATIONS_SUPPRESSED,
        Unit::Count,
        "Out-of-sync notifications not sent, by reason"
    );
}

fn describe_service() {
    describe_gauge!(
        READY,
        Unit::Count,
        "1 while the service is ready (as /readyz), else 0"
    );
    describe_gauge!(
        LOOP_PROGRESS_AGE,
        Unit::Seconds,
        "Seconds since the stalest task of a core loop last made progress, by loop"
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; the version label names the running build"
    );
}

fn initial_values() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for &result in WRITE_RESULTS {
        metrics::counter!(MEETING_WRITES, "result" => result).absolute(0);
    }
    for &state in INITIAL_SYNC_STATES {
        metrics::gauge!(ROOMS_BY_INITIAL_SYNC, "state" => state).set(0.0);
    }
    for &kind in DRIFT_KINDS {
        metrics::counter!(RESYNC_DRIFT, "kind" => kind).absolute(0);
    }
    for &reason in RECONNECT_REASONS {
        metrics::counter!(RECONNECTS, "reason" => reason).absolute(0);
    }
    for &reason in RESUBSCRIBE_REASONS {
        metrics::counter!(RESUBSCRIPTIONS, "reason" => reason).absolute(0);
    }
    for &outcome in SYNC_OUTCOMES {
        metrics::counter!(MAILBOX_SYNCS, "outcome" => outcome).absolute(0);
    }
    for &class in DB_RETRY_CLASSES {
        metrics::counter!(DB_RETRIES, "class" => class).absolute(0);
    }
    for counter in [
        EVENTS_DUPLICATE,
        QUEUE_ENQUEUED,
        QUEUE_DEQUEUED,
        QUEUE_COALESCED,
        QUEUE_FULL_WAITS,
        ITEMS_FETCHED,
        NOTIFICATIONS_SENT,
        SYNC_STATE_RESETS,
    ] {
        metrics::counter!(counter).absolute(0);
    }
    metrics::counter!(RESYNC_RUNS, "outcome" => "ok").absolute(0);
    metrics::counter!(RESYNC_RUNS, "outcome" => "failed").absolute(0);
    for pass in ["roll", "full"] {
        metrics::counter!(RESYNC_ROOM_FAILURES, "pass" => pass).absolute(0);
    }
    metrics::counter!(NOTIFICATIONS_SUPPRESSED, "reason" => "dry_run").absolute(0);
    for gauge in [
        QUEUE_DEPTH,
        STREAMS_OPEN,
        MAILBOXES_POLLED,
        SUBSCRIPTIONS_ACTIVE,
        ROOMS_ENABLED,
        SYNC_LAG,
        RESYNC_LAST_SUCCESS,
        UNKNOWN_ORGANIZER_MEETINGS,
        READY,
    ] {
        metrics::gauge!(gauge).set(0.0);
    }
}
