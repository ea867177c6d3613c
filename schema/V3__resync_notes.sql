-- Periodic resync notes per room mailbox: when the last incremental and full
-- resyncs succeeded, and how many differences full reconciliations repaired.

ALTER TABLE mailbox_sync
    ADD COLUMN last_resync_at      timestamptz,
    ADD COLUMN last_full_resync_at timestamptz,
    ADD COLUMN drift_repaired      bigint NOT NULL DEFAULT 0;
