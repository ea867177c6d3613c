-- Booking tables: the contract the booking system's application reads.
-- Addresses are stored lower-case by booking-sync; uniqueness is case-insensitive
-- whoever writes them.

CREATE TABLE rooms (
    id                        bigserial PRIMARY KEY,
    email                     text NOT NULL,
    name                      text NOT NULL,
    sync_enabled              boolean NOT NULL DEFAULT true,
    coexistence_enabled       boolean NOT NULL DEFAULT false,
    initial_sync              text NOT NULL DEFAULT 'pending'
        CONSTRAINT rooms_initial_sync_check
        CHECK (initial_sync IN ('pending', 'running', 'complete', 'failed')),
    initial_sync_completed_at timestamptz,
    initial_sync_error        text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX rooms_email_key ON rooms (lower(email));

CREATE TABLE users (
    id           bigserial PRIMARY KEY,
    email        text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- One row per room per meeting occurrence. occurrence_start is null for a single
-- meeting and the original start of an occurrence of a series.
CREATE TABLE meetings (
    id                     bigserial PRIMARY KEY,
    room_id                bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    exchange_uid           text NOT NULL,
    occurrence_start       timestamptz,
    subject                text NOT NULL DEFAULT '',
    starts_at              timestamptz NOT NULL,
    ends_at                timestamptz NOT NULL,
    is_all_day             boolean NOT NULL DEFAULT false,
    organizer_email        text,
    organizer_user_id      bigint REFERENCES users (id) ON DELETE SET NULL,
    status                 text NOT NULL DEFAULT 'confirmed'
        CONSTRAINT meetings_status_check CHECK (status IN ('confirmed', 'cancelled')),
    source                 text NOT NULL DEFAULT 'exchange'
        CONSTRAINT meetings_source_check CHECK (source IN ('exchange', 'booking')),
    exchange_item_id       text,
    exchange_change_key    text,
    exchange_last_modified timestamptz,
    fetched_at             timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meetings_occurrence_key
        UNIQUE NULLS NOT DISTINCT (room_id, exchange_uid, occurrence_start)
);

CREATE INDEX meetings_room_item_idx ON meetings (room_id, exchange_item_id);
CREATE INDEX meetings_room_starts_idx ON meetings (room_id, starts_at);
CREATE INDEX meetings_organizer_user_idx ON meetings (organizer_user_id);
-- Lets a newly known user be linked to the meetings they already organise.
CREATE INDEX meetings_unlinked_organizer_idx ON meetings (lower(organizer_email))
    WHERE organizer_user_id IS NULL AND organizer_email IS NOT NULL;
