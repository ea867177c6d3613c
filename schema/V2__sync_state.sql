-- Sync state, kept apart from the booking tables.

-- Per room mailbox: the SyncFolderItems checkpoint and the health of its feed.
CREATE TABLE mailbox_sync (
    room_id         bigint PRIMARY KEY REFERENCES rooms (id) ON DELETE CASCADE,
    sync_state      text,
    subscription_id text,
    last_event_at   timestamptz,
    last_sync_at    timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Items that left a room's calendar: a late fetch of one must not bring it back.
CREATE TABLE deleted_items (
    room_id          bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    exchange_item_id text NOT NULL,
    deleted_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, exchange_item_id)
);

CREATE INDEX deleted_items_deleted_at_idx ON deleted_items (deleted_at);
