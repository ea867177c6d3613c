//! Metric names, their descriptions, and the Prometheus exporter.
//!
//! Every metric the service emits is named here once, described at startup with its
//! unit and help text, and carries only labels from small fixed sets (never a mailbox,
//! item or user).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Events the listener received, by event type.
pub const EVENTS_RECEIVED: &str = "booking_sync_events_received_total";
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
/// Subscriptions currently active.
pub const SUBSCRIPTIONS_ACTIVE: &str = "booking_sync_subscriptions_active";
/// Streaming reconnects by reason.
pub const RECONNECTS: &str = "booking_sync_reconnects_total";
/// Resubscriptions by reason.
pub const RESUBSCRIPTIONS: &str = "booking_sync_resubscriptions_total";
/// Times Exchange throttled the account (ErrorServerBusy or 503).
pub const EWS_THROTTLED: &str = "booking_sync_ews_throttled_total";
/// Sync states Exchange rejected, after which a room was synced from scratch.
pub const SYNC_STATE_RESETS: &str = "booking_sync_sync_state_resets_total";
/// Rooms enabled for sync.
pub const ROOMS_ENABLED: &str = "booking_sync_rooms_enabled";
/// Age of the oldest queued change not yet committed.
pub const SYNC_LAG: &str = "booking_sync_lag_seconds";

/// Histogram buckets for durations, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Describes every metric (help text and unit) to the installed recorder.
pub fn describe() {
    describe_counter!(
        EVENTS_RECEIVED,
        Unit::Count,
        "Notification events received, by type"
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
    describe_counter!(
        EWS_REQUESTS,
        Unit::Count,
        "EWS requests, by operation and outcome"
    );
    describe_counter!(
        ITEMS_FETCHED,
        Unit::Count,
        "Calendar items fetched with GetItem"
    );
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
    describe_gauge!(STREAMS_OPEN, Unit::Count, "Streaming connections open");
    describe_gauge!(SUBSCRIPTIONS_ACTIVE, Unit::Count, "Subscriptions active");
    describe_counter!(RECONNECTS, Unit::Count, "Streaming reconnects, by reason");
    describe_counter!(RESUBSCRIPTIONS, Unit::Count, "Resubscriptions, by reason");
    describe_counter!(
        EWS_THROTTLED,
        Unit::Count,
        "Times Exchange throttled the account and requests paused"
    );
    describe_counter!(
        SYNC_STATE_RESETS,
        Unit::Count,
        "Sync states rejected by Exchange, each followed by a full resync of the room"
    );
    describe_gauge!(ROOMS_ENABLED, Unit::Count, "Rooms enabled for sync");
    describe_gauge!(
        SYNC_LAG,
        Unit::Seconds,
        "Age of the oldest queued change that is not committed yet"
    );
}
